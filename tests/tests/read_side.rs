//! End to end: commands over HTTP → event store → outbox relay → Kafka (Avro through the
//! registry) → projectors → read models → query API over HTTP, with read-your-writes.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::Platform;
use tests::platform::Answer;
use uuid::Uuid;

/// Polls `path` until `ready` holds for its answer; panics with the last answer after 20 s.
async fn eventually(platform: &Platform, path: &str, ready: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = platform.query(path).await;
        if ready(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn eur(amount_minor: i64) -> Value {
    json!({"amount_minor": amount_minor, "currency": "EUR"})
}

#[tokio::test]
async fn an_order_with_stock_and_payment_is_readable_through_the_query_api() {
    let platform = Platform::start().await;
    let sku = format!("E2E-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let customer_id = Uuid::new_v4();

    let stocked = platform
        .command(&format!("/inventory/{sku}/stock"), json!({"quantity": 10}))
        .await
        .expect_status(200);
    assert_eq!(stocked.version(), 1);
    let created = platform
        .command(
            "/orders",
            json!({"customer_id": customer_id, "currency": "EUR"}),
        )
        .await
        .expect_status(201);
    let order_id = created.aggregate_id();
    platform
        .command(
            &format!("/orders/{order_id}/lines"),
            json!({"sku": sku, "quantity": 2, "unit_price": eur(1250)}),
        )
        .await
        .expect_status(201);
    let placed = platform
        .command(&format!("/orders/{order_id}/place"), Value::Null)
        .await
        .expect_status(200);
    assert_eq!(placed.version(), 3);
    let reserved = platform
        .command(
            &format!("/inventory/{sku}/reservations"),
            json!({"order_id": order_id, "quantity": 2}),
        )
        .await
        .expect_status(201);
    let authorized = platform
        .command(
            "/payments",
            json!({"order_id": order_id, "amount": eur(2500), "payment_method": "tok_visa"}),
        )
        .await
        .expect_status(201);
    let payment_id = authorized.aggregate_id();
    let captured = platform
        .command(
            &format!("/payments/{payment_id}/capture"),
            json!({"amount": eur(2500)}),
        )
        .await
        .expect_status(200);

    // Read-your-writes: each query waits until its read model has the command's version.
    let order = platform
        .query(&format!(
            "/orders/{order_id}?min_version={}",
            placed.version()
        ))
        .await
        .expect_status(200);
    assert_eq!(order.body["status"], "placed");
    assert_eq!(order.body["customer_id"], customer_id.to_string());
    assert_eq!(order.body["total"], eur(2500));
    assert_eq!(order.body["line_count"], 1);
    assert_eq!(order.body["lines"][0]["sku"], sku.as_str());
    assert_eq!(order.body["lines"][0]["line_total"], eur(2500));
    assert_eq!(order.body["version"], 3);

    let stock = platform
        .query(&format!("/stock/{sku}?min_version={}", reserved.version()))
        .await
        .expect_status(200);
    assert_eq!(
        (
            &stock.body["on_hand"],
            &stock.body["reserved"],
            &stock.body["available"]
        ),
        (&json!(10), &json!(2), &json!(8))
    );

    let payment = platform
        .query(&format!(
            "/payments/{payment_id}?min_version={}",
            captured.version()
        ))
        .await
        .expect_status(200);
    assert_eq!(payment.body["status"], "captured");
    assert_eq!(payment.body["captured"], eur(2500));
    assert_eq!(payment.body["order_id"], order_id.as_str());

    // The order view also gathers the order's reservation and payment from the other
    // topics; those arrive independently of the order's own version.
    let order = eventually(&platform, &format!("/orders/{order_id}"), |a| {
        a.body["reservations"]
            .as_array()
            .is_some_and(|r| r.len() == 1)
            && a.body["payments"][0]["status"] == "captured"
    })
    .await;
    assert_eq!(order.body["reservations"][0]["status"], "reserved");
    assert_eq!(order.body["reservations"][0]["quantity"], 2);
    assert_eq!(order.body["payments"][0]["payment_id"], payment_id.as_str());

    let listing = platform
        .query(&format!("/customers/{customer_id}/orders?status=placed"))
        .await
        .expect_status(200);
    let listed: Vec<&Value> = listing.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of orders: {listing:?}"))
        .iter()
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["order_id"], order_id.as_str());

    platform.stop().await;
}

#[tokio::test]
async fn a_version_the_read_model_never_reaches_is_a_clear_not_yet_and_unknown_ids_are_404() {
    let platform = Platform::start().await;
    let created = platform
        .command(
            "/orders",
            json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
        )
        .await
        .expect_status(201);
    let order_id = created.aggregate_id();

    // Version 1 arrives; version 2 was never written.
    platform
        .query(&format!("/orders/{order_id}?min_version=1"))
        .await
        .expect_status(200);
    let not_yet = platform
        .query(&format!("/orders/{order_id}?min_version=2"))
        .await
        .expect_status(503);
    assert!(not_yet.headers.contains_key("retry-after"));
    assert_eq!(not_yet.body["code"], "not_yet_consistent");
    assert_eq!(not_yet.body["current_version"], 1);

    let unknown = platform
        .query(&format!("/orders/{}", Uuid::new_v4()))
        .await
        .expect_status(404);
    assert_eq!(unknown.headers["content-type"], "application/problem+json");

    // Nothing was written by the queries.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&platform.db)
        .await
        .expect("count events");
    assert_eq!(events, 1);

    platform.stop().await;
}
