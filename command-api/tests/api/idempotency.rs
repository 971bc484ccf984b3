//! `Idempotency-Key`: retries get the original answer and write nothing; a reused key with
//! another request is 422; concurrent retries of a create make one aggregate.

use std::sync::Arc;

use futures::future::join_all;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{RaceGate, TestOptions, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_and_body_returns_the_original_response() {
    let app = spawn_app().await;
    let body = json!({"customer_id": Uuid::new_v4(), "currency": "EUR"});
    let key = [("Idempotency-Key", "create-order-1")];

    let first = app.post_with("/orders", body.clone(), &key).await;
    first.assert_accepted(201, 1);
    assert_eq!(first.header("idempotent-replayed"), None);

    // Whitespace and key order do not make it a different request.
    let reordered = format!(
        "{{ \"currency\": \"EUR\",\n \"customer_id\": \"{}\" }}",
        body["customer_id"].as_str().unwrap()
    );
    let retry = app
        .inner()
        .post(app.url("/orders"))
        .header("content-type", "application/json")
        .header("Idempotency-Key", "create-order-1")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["etag"], "\"1\"");
    assert_eq!(
        retry.headers()["location"],
        first.header("location").unwrap()
    );
    let retry_body: Value = retry.json().await.unwrap();
    assert_eq!(retry_body, first.body, "byte-for-byte the same answer");

    assert_eq!(app.event_count().await, 1, "the retry wrote nothing");
    let stored: (String, String, i64, i32) = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, version, event_count FROM idempotency_keys
          WHERE actor = 'anonymous' AND idempotency_key = 'create-order-1'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        stored,
        (
            "order".to_owned(),
            first.body["aggregate_id"].as_str().unwrap().to_owned(),
            1,
            1
        )
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_a_different_request_is_422_and_writes_nothing() {
    let app = spawn_app().await;
    let key = [("Idempotency-Key", "k-1")];
    app.post_with(
        "/orders",
        json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
        &key,
    )
    .await
    .assert_accepted(201, 1);

    let other_body = app
        .post_with(
            "/orders",
            json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
            &key,
        )
        .await;
    other_body.assert_problem(422, "idempotency.key_reused");
    let other_route = app
        .post_with("/inventory/SKU-1/stock", json!({"quantity": 1}), &key)
        .await;
    other_route.assert_problem(422, "idempotency.key_reused");

    assert_eq!(app.event_count().await, 1);
    assert_eq!(app.idempotency_key_count().await, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_by_actor() {
    let app = spawn_app().await;
    let body = json!({"quantity": 1});
    app.post_with(
        "/inventory/SKU-1/stock",
        body.clone(),
        &[("Idempotency-Key", "k"), ("X-Actor", "alice")],
    )
    .await
    .assert_accepted(200, 1);
    let bob = app
        .post_with(
            "/inventory/SKU-1/stock",
            body,
            &[("Idempotency-Key", "k"), ("X-Actor", "bob")],
        )
        .await;
    bob.assert_accepted(200, 2);
    assert_eq!(bob.header("idempotent-replayed"), None);
    assert_eq!(app.idempotency_key_count().await, 2);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_creates_with_one_key_make_one_order() {
    let gate = Arc::new(RaceGate::default());
    let app = spawn_app_with(TestOptions::racing(gate.clone())).await;
    let key = "one-order-please";
    // Without a client id the order id derives from the key, so both requests address the
    // same order; hold both at the append so they truly race.
    let order_id = command_api::store::idempotency::IdempotencyKey::new(key)
        .unwrap()
        .derive_id("order", "anonymous")
        .to_string();
    gate.arm(&order_id, 2);

    let body = json!({"customer_id": Uuid::new_v4(), "currency": "EUR"});
    let headers = [("Idempotency-Key", key)];
    let (a, b) = tokio::join!(
        app.post_with("/orders", body.clone(), &headers),
        app.post_with("/orders", body.clone(), &headers)
    );

    for response in [&a, &b] {
        response.assert_accepted(201, 1);
        assert_eq!(response.body["aggregate_id"], order_id.as_str());
    }
    assert_eq!(a.body, b.body);
    let replayed = [&a, &b]
        .into_iter()
        .filter(|r| r.header("idempotent-replayed") == Some("true"))
        .count();
    assert_eq!(replayed, 1, "exactly one answer is the replay");
    assert_eq!(app.event_count().await, 1, "one OrderCreated, not two");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_retries_with_one_key_creates_one_order() {
    let app = spawn_app().await;
    let body = json!({"customer_id": Uuid::new_v4(), "currency": "EUR"});
    let headers = [("Idempotency-Key", "burst")];
    let responses =
        join_all((0..10).map(|_| app.post_with("/orders", body.clone(), &headers))).await;

    let first = &responses[0];
    for response in &responses {
        response.assert_accepted(201, 1);
        assert_eq!(response.body, first.body);
    }
    assert_eq!(app.event_count().await, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_recorded_with_the_event_in_one_transaction() {
    let app = spawn_app().await;
    let order_id = app.create_order().await;
    let response = app
        .post_with(
            &format!("/orders/{order_id}/lines"),
            json!({"sku": "SKU-1", "quantity": 1, "unit_price": {"amount_minor": 5, "currency": "EUR"}}),
            &[("Idempotency-Key", "line-1"), ("X-Actor", "user:7")],
        )
        .await;
    response.assert_accepted(201, 2);

    let event = &app.events_of("order", &order_id).await[1];
    assert_eq!(event.metadata["idempotency_key"], "line-1");
    assert!(
        event.metadata.get("request_fingerprint").is_none(),
        "the fingerprint is not part of event metadata: {}",
        event.metadata
    );
    let (xid_event, xid_key): (String, String) = sqlx::query_as(
        "SELECT e.transaction_id::text, k.transaction_id::text
           FROM events e JOIN idempotency_keys k
             ON k.aggregate_type = e.aggregate_type AND k.aggregate_id = e.aggregate_id
            AND k.version = e.sequence
          WHERE k.actor = 'user:7' AND k.idempotency_key = 'line-1'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(xid_event, xid_key, "same transaction");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_command_does_not_use_up_its_key() {
    let app = spawn_app().await;
    let order_id = app.create_order().await;
    let key = [("Idempotency-Key", "place-1")];
    let place = format!("/orders/{order_id}/place");

    app.post_with(&place, Value::Null, &key)
        .await
        .assert_problem(409, "order.empty_order");
    assert_eq!(app.idempotency_key_count().await, 0);

    app.post(
        &format!("/orders/{order_id}/lines"),
        json!({"sku": "SKU-1", "quantity": 1, "unit_price": {"amount_minor": 5, "currency": "EUR"}}),
    )
    .await
    .assert_accepted(201, 2);
    app.post_with(&place, Value::Null, &key)
        .await
        .assert_accepted(200, 3);
    let replay = app.post_with(&place, json!({}), &key).await;
    replay.assert_accepted(200, 3);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.event_count().await, 3);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_command_records_its_key_too() {
    let app = spawn_app().await;
    app.add_stock("SKU-1", 5).await.assert_accepted(200, 1);
    let order_id = Uuid::new_v4();
    let reserve = json!({"order_id": order_id, "quantity": 2});
    app.post("/inventory/SKU-1/reservations", reserve.clone())
        .await
        .assert_accepted(201, 2);

    let key = [("Idempotency-Key", "noop")];
    let noop = app
        .post_with("/inventory/SKU-1/reservations", reserve.clone(), &key)
        .await;
    noop.assert_accepted(200, 2);
    assert_eq!(noop.body["events"], json!([]));

    let replay = app
        .post_with("/inventory/SKU-1/reservations", reserve, &key)
        .await;
    replay.assert_accepted(200, 2);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    app.post_with("/inventory/SKU-1/stock", json!({"quantity": 1}), &key)
        .await
        .assert_problem(422, "idempotency.key_reused");
    assert_eq!(app.event_count().await, 2);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_is_400() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    let response = app
        .post_with(
            "/inventory/SKU-1/stock",
            json!({"quantity": 1}),
            &[("Idempotency-Key", long.as_str())],
        )
        .await;
    response.assert_problem(400, "request.invalid_header");
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}
