//! `/audit/events`: the global log, filtered, in commit order, page by page.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Stack, spawn_stack};

fn instant(item: &Value) -> DateTime<Utc> {
    item["recorded_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .expect("recorded_at")
        .with_timezone(&Utc)
}

fn encode(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn event_ids(stack: &Stack, query: &str) -> Vec<String> {
    let (items, _) = stack.all_pages(&format!("/audit/events?{query}")).await;
    items
        .iter()
        .map(|item| item["event_id"].as_str().expect("event id").to_owned())
        .collect()
}

/// Two business flows: alice's order (3 events, one correlation id) and bob's stock
/// (2 events, another), interleaved.
struct Flows {
    alice_order: Vec<String>,
    bob_stock: Vec<String>,
    all: Vec<Value>,
    alice_correlation: String,
}

async fn two_flows(stack: &Stack) -> Flows {
    let alice_correlation = Uuid::new_v4().to_string();
    let bob_correlation = Uuid::new_v4().to_string();
    let alice = [
        ("X-Correlation-Id", alice_correlation.as_str()),
        ("X-Actor", "alice"),
    ];
    let bob = [
        ("X-Correlation-Id", bob_correlation.as_str()),
        ("X-Actor", "bob"),
    ];
    let order_id = stack.create_order(&alice).await;
    stack
        .post_ok("/inventory/SKU-LOG/stock", json!({"quantity": 5}), &bob)
        .await;
    let line = json!({"sku": "SKU-LOG", "quantity": 1, "unit_price": {"amount_minor": 100, "currency": "EUR"}});
    stack
        .post_ok(&format!("/orders/{order_id}/lines"), line, &alice)
        .await;
    stack
        .post_ok(
            "/inventory/SKU-LOG/adjustments",
            json!({"delta": -1, "reason": "damaged"}),
            &bob,
        )
        .await;
    stack
        .post_ok(&format!("/orders/{order_id}/place"), Value::Null, &alice)
        .await;
    stack.wait_for_log(5).await;

    let all = stack.get("/audit/events").await.assert_ok()["items"]
        .as_array()
        .expect("items")
        .clone();
    let ids_of = |aggregate_type: &str| -> Vec<String> {
        all.iter()
            .filter(|item| item["aggregate_type"] == aggregate_type)
            .map(|item| item["event_id"].as_str().expect("event id").to_owned())
            .collect()
    };
    Flows {
        alice_order: ids_of("order"),
        bob_stock: ids_of("inventory"),
        alice_correlation,
        all,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_log_filters_by_correlation_type_aggregate_actor_and_time() {
    let stack = spawn_stack().await;
    let flows = two_flows(&stack).await;
    assert_eq!(flows.alice_order.len(), 3);
    assert_eq!(flows.bob_stock.len(), 2);
    let types: Vec<&str> = flows
        .all
        .iter()
        .map(|item| item["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "OrderCreated",
            "StockAdded",
            "OrderLineAdded",
            "StockAdjusted",
            "OrderPlaced"
        ],
        "commit order"
    );

    assert_eq!(
        event_ids(
            &stack,
            &format!("correlation_id={}", flows.alice_correlation)
        )
        .await,
        flows.alice_order
    );
    assert_eq!(event_ids(&stack, "actor=bob").await, flows.bob_stock);
    assert_eq!(
        event_ids(&stack, "aggregate_type=inventory").await,
        flows.bob_stock
    );
    assert_eq!(
        event_ids(&stack, "event_type=OrderLineAdded").await,
        [flows.alice_order[1].clone()]
    );
    assert_eq!(
        event_ids(&stack, "actor=alice&event_type=StockAdded").await,
        Vec::<String>::new(),
        "filters combine"
    );
    assert!(
        event_ids(&stack, &format!("correlation_id={}", Uuid::new_v4()))
            .await
            .is_empty()
    );

    // `from` is inclusive, `to` exclusive.
    let second = instant(&flows.all[1]);
    let fourth = instant(&flows.all[3]);
    let window = event_ids(
        &stack,
        &format!("from={}&to={}", encode(second), encode(fourth)),
    )
    .await;
    let expected: Vec<String> = flows.all[1..3]
        .iter()
        .map(|item| item["event_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(window, expected);
    let from_second = event_ids(&stack, &format!("from={}", encode(second))).await;
    assert_eq!(from_second.len(), 4);
    let before_second = event_ids(&stack, &format!("to={}", encode(second))).await;
    assert_eq!(before_second.len(), 1);
    // An offset other than Z, with `+` percent-encoded, and with `+` left as is (a space).
    let in_paris = (second + Duration::zero())
        .with_timezone(&chrono::FixedOffset::east_opt(7200).expect("offset"))
        .to_rfc3339_opts(SecondsFormat::Micros, false);
    assert_eq!(
        event_ids(&stack, &format!("from={}", in_paris.replace('+', "%2B"))).await,
        from_second
    );
    assert_eq!(
        event_ids(&stack, &format!("from={in_paris}")).await,
        from_second
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_log_pages_in_commit_order_without_gaps_or_repeats() {
    let stack = spawn_stack().await;
    let flows = two_flows(&stack).await;
    for quantity in 1..=4 {
        stack
            .post_ok(
                "/inventory/SKU-PAGE/stock",
                json!({"quantity": quantity}),
                &[],
            )
            .await;
    }
    stack.wait_for_log(9).await;

    let (items, pages) = stack.all_pages("/audit/events?limit=2").await;

    assert_eq!(pages, 5);
    assert_eq!(items.len(), 9);
    let positions: Vec<(i64, i64)> = items
        .iter()
        .map(|item| {
            (
                item["transaction_id"].as_i64().expect("transaction"),
                item["global_position"].as_i64().expect("position"),
            )
        })
        .collect();
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(positions, sorted, "strictly increasing commit order");
    assert_eq!(&items[..5], flows.all.as_slice());

    // Filters hold across pages.
    let (bob, pages) = stack.all_pages("/audit/events?actor=bob&limit=1").await;
    assert_eq!(pages, 2);
    assert_eq!(bob.len(), 2);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_resumes_after_the_last_page_and_reads_only_what_was_appended_since() {
    let stack = spawn_stack().await;
    let empty = stack.get("/audit/events").await;
    assert_eq!(
        empty.assert_ok()["resume_cursor"],
        Value::Null,
        "an empty log"
    );
    for quantity in 1..=2 {
        stack
            .post_ok(
                "/inventory/SKU-TAIL/stock",
                json!({"quantity": quantity}),
                &[],
            )
            .await;
    }
    stack.wait_for_log(2).await;

    let last_page = stack.get("/audit/events?actor=anonymous").await;
    let body = last_page.assert_ok();
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["next_cursor"], Value::Null);
    let resume = body["resume_cursor"]
        .as_str()
        .expect("resume cursor")
        .to_owned();

    // Nothing new: an empty page that hands the same place back.
    let idle = stack
        .get(&format!("/audit/events?actor=anonymous&cursor={resume}"))
        .await;
    assert_eq!(idle.assert_ok()["items"], json!([]));
    assert_eq!(idle.body["resume_cursor"], resume.as_str());

    stack
        .post_ok("/inventory/SKU-TAIL/stock", json!({"quantity": 3}), &[])
        .await;
    stack.wait_for_log(3).await;
    let tail = stack
        .get(&format!("/audit/events?actor=anonymous&cursor={resume}"))
        .await;
    let items = tail.assert_ok()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 1, "only the event appended since: {items:?}");
    assert_eq!(items[0]["sequence"], 3);
    assert_ne!(tail.body["resume_cursor"], resume.as_str());
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_log_parameters_are_named() {
    let stack = spawn_stack().await;
    for (query, parameter) in [
        ("from=yesterday", "from"),
        ("to=2024-05-01", "to"),
        ("from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "to"),
        ("cursor=abc", "cursor"),
        ("limit=201", "limit"),
        ("actor=", "actor"),
        ("actor=a&actor=b", "actor"),
        ("sequence=1", "sequence"),
    ] {
        let response = stack.get(&format!("/audit/events?{query}")).await;
        let body = response.assert_bad_parameter("request.invalid_parameter", parameter);
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("{parameter}: "))),
            "{query}: {body}"
        );
    }
    stack.finish().await;
}
