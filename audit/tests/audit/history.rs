//! `/audit/streams/{aggregate_type}/{aggregate_id}/events`.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

use crate::helpers::spawn_stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_history_has_every_event_with_all_its_metadata() {
    let stack = spawn_stack().await;
    let correlation_id = Uuid::new_v4().to_string();
    let causation_id = Uuid::new_v4().to_string();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let created = stack
        .post_ok(
            "/orders",
            json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
            &[
                ("X-Correlation-Id", &correlation_id),
                ("X-Causation-Id", &causation_id),
                ("X-Actor", "clerk:7"),
                ("Idempotency-Key", "create-1"),
                ("traceparent", traceparent),
            ],
        )
        .await;
    let order_id = created["aggregate_id"]
        .as_str()
        .expect("order id")
        .to_owned();
    let added = stack.add_line(&order_id, "SKU-1", 2).await;

    let response = stack
        .get(&format!("/audit/streams/order/{order_id}/events"))
        .await;

    let body = response.assert_ok();
    assert_eq!(body["aggregate_type"], "order");
    assert_eq!(body["aggregate_id"], order_id);
    assert_eq!(body["version"], 2);
    assert_eq!(body["next_cursor"], Value::Null);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);

    let first = &items[0];
    assert_eq!(first["sequence"], 1);
    assert_eq!(first["event_type"], "OrderCreated");
    assert_eq!(first["event_version"], "1");
    assert_eq!(first["event_id"], created["events"][0]["event_id"]);
    assert_eq!(
        first["global_position"],
        created["events"][0]["global_position"]
    );
    assert_eq!(first["metadata"]["event_id"], first["event_id"]);
    assert_eq!(first["metadata"]["correlation_id"], correlation_id);
    assert_eq!(first["metadata"]["causation_id"], causation_id);
    assert_eq!(first["metadata"]["actor"], "clerk:7");
    assert_eq!(first["metadata"]["idempotency_key"], "create-1");
    assert_eq!(first["metadata"]["traceparent"], traceparent);
    assert!(first["metadata"]["occurred_at"].is_string(), "{first}");
    assert_eq!(first["payload"]["OrderCreated"]["currency"], "EUR");
    assert!(first["recorded_at"].is_string(), "{first}");
    assert!(first["transaction_id"].as_i64().is_some(), "{first}");

    let second = &items[1];
    assert_eq!(second["sequence"], 2);
    assert_eq!(second["event_type"], "OrderLineAdded");
    assert_eq!(second["event_id"], added["events"][0]["event_id"]);
    assert_eq!(second["metadata"]["actor"], "anonymous");
    assert_ne!(second["metadata"]["correlation_id"], correlation_id);
    assert!(
        second["metadata"].get("idempotency_key").is_none(),
        "{second}"
    );

    // The hash is the stored link, in hex.
    let stored: Vec<String> = sqlx::query(
        "SELECT encode(hash, 'hex') AS hash FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&order_id)
    .fetch_all(&stack.db)
    .await
    .expect("stored hashes")
    .iter()
    .map(|row| row.get("hash"))
    .collect();
    for (item, hash) in items.iter().zip(&stored) {
        assert_eq!(item["hash"], hash.as_str());
        assert_eq!(hash.len(), 64);
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_pages_by_sequence() {
    let stack = spawn_stack().await;
    let order_id = stack.create_order(&[]).await;
    for (i, sku) in ["SKU-A", "SKU-B", "SKU-C", "SKU-D"].iter().enumerate() {
        stack.add_line(&order_id, sku, i as u32 + 1).await;
    }
    stack
        .commands
        .send(
            Method::DELETE,
            &format!("/orders/{order_id}/lines/SKU-B"),
            Value::Null,
            &[],
        )
        .await
        .assert_success();

    let path = format!("/audit/streams/order/{order_id}/events?limit=2");
    let (items, pages) = stack.all_pages(&path).await;

    assert_eq!(pages, 3);
    let sequences: Vec<i64> = items
        .iter()
        .map(|item| item["sequence"].as_i64().expect("sequence"))
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    let whole = stack
        .get(&format!("/audit/streams/order/{order_id}/events"))
        .await;
    assert_eq!(whole.assert_ok()["items"], Value::Array(items));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_streams_and_bad_parameters_are_problems() {
    let stack = spawn_stack().await;
    let order_id = stack.create_order(&[]).await;

    stack
        .get(&format!("/audit/streams/order/{}/events", Uuid::new_v4()))
        .await
        .assert_problem(404, "audit.stream_not_found");
    stack
        .get(&format!("/audit/streams/payment/{order_id}/events"))
        .await
        .assert_problem(404, "audit.stream_not_found");
    let events = format!("/audit/streams/order/{order_id}/events");
    stack
        .get(&format!("{events}?cursor=nonsense"))
        .await
        .assert_bad_parameter("request.invalid_parameter", "cursor");
    stack
        .get(&format!("{events}?limit=0"))
        .await
        .assert_bad_parameter("request.invalid_parameter", "limit");
    stack
        .get(&format!("{events}?limti=2"))
        .await
        .assert_bad_parameter("request.invalid_parameter", "limti");
    stack.finish().await;
}
