//! End to end: the order fulfilment saga on the real stack. Orders are placed over HTTP;
//! the saga (consuming Kafka, commanding over HTTP) drives them; the event store and the
//! query API show the outcome.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;
use saga::{DispatchHook, SAGA_ACTOR, SagaCommand, SagaStatus, payment_id_for};
use schemas::AggregateKind;
use std::future::Future;
use std::pin::Pin;

use serde_json::{Value, json};
use tests::Platform;
use tests::saga_harness::{
    RunningSaga, SagaOptions, StoredEvent, all_events, count, events_of_order, saga_reaches,
};
use tokio::sync::Notify;
use uuid::Uuid;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Lets every command through until the authorization, then signals and hangs: the saga
/// has reserved and queued the authorization but never sends it.
#[derive(Debug, Default)]
struct HaltBeforeAuthorize {
    reached: Notify,
}

impl DispatchHook for HaltBeforeAuthorize {
    fn before_dispatch<'a>(
        &'a self,
        _order_id: Uuid,
        command: &'a SagaCommand,
    ) -> BoxFuture<'a, ()> {
        let halt = matches!(command, SagaCommand::AuthorizePayment { .. });
        Box::pin(async move {
            if halt {
                self.reached.notify_one();
                std::future::pending::<()>().await;
            }
        })
    }
}

fn eur(amount_minor: i64) -> Value {
    json!({"amount_minor": amount_minor, "currency": "EUR"})
}

fn new_sku(tag: &str) -> String {
    format!("{tag}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

async fn stock(platform: &Platform, sku: &str, quantity: u32) {
    platform
        .command(
            &format!("/inventory/{sku}/stock"),
            json!({"quantity": quantity}),
        )
        .await
        .expect_status(200);
}

/// Creates an order with `lines` (sku, quantity, unit price) and places it with `payment`.
async fn place_order(platform: &Platform, lines: &[(&str, u32, i64)], payment: Value) -> Uuid {
    let order_id = create_order(platform).await;
    add_lines_and_place(platform, &order_id, lines, payment).await
}

/// Creates an empty order; returns its id.
async fn create_order(platform: &Platform) -> String {
    platform
        .command(
            "/orders",
            json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
        )
        .await
        .expect_status(201)
        .aggregate_id()
}

/// Adds `lines` (sku, quantity, unit price) to order `order_id` and places it with `payment`.
async fn add_lines_and_place(
    platform: &Platform,
    order_id: &str,
    lines: &[(&str, u32, i64)],
    payment: Value,
) -> Uuid {
    for (sku, quantity, price) in lines {
        platform
            .command(
                &format!("/orders/{order_id}/lines"),
                json!({"sku": sku, "quantity": quantity, "unit_price": eur(*price)}),
            )
            .await
            .expect_status(201);
    }
    platform
        .command(&format!("/orders/{order_id}/place"), payment)
        .await
        .expect_status(200);
    Uuid::parse_str(order_id).expect("order id is a UUID")
}

/// Polls the query API's stock of `sku` until `on_hand` and `reserved` are as expected.
async fn stock_becomes(platform: &Platform, sku: &str, on_hand: u64, reserved: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = platform.query(&format!("/stock/{sku}")).await;
        if answer.status == 200
            && answer.body["on_hand"] == json!(on_hand)
            && answer.body["reserved"] == json!(reserved)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stock of {sku} never became {on_hand} on hand / {reserved} reserved: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the query API's order view until its status is `status`.
async fn order_status_becomes(platform: &Platform, order_id: Uuid, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = platform.query(&format!("/orders/{order_id}")).await;
        if answer.status == 200 && answer.body["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "order {order_id} never became {status}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn types(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

fn cancel_reason(events: &[StoredEvent]) -> Option<String> {
    events
        .iter()
        .find(|e| e.event_type == "OrderCancelled")
        .and_then(|e| e.payload["OrderCancelled"]["reason"].as_str())
        .map(str::to_owned)
}

/// The saga's events carry the flow's correlation id, a causation id that is an earlier
/// event of the flow, and the saga as actor.
fn assert_audit_trail(events: &[StoredEvent]) {
    let placed = events
        .iter()
        .find(|e| e.event_type == "OrderPlaced")
        .expect("the order was placed");
    let correlation = placed.meta("correlation_id").expect("correlation id");
    let mut seen: HashSet<&str> = HashSet::new();
    for event in events {
        let event_id = event.meta("event_id").expect("event id");
        if event.meta("actor") == Some(SAGA_ACTOR) {
            assert_eq!(
                event.meta("correlation_id"),
                Some(correlation),
                "one correlation id for the flow: {event:?}"
            );
            let causation = event.meta("causation_id").expect("causation id");
            assert!(
                seen.contains(causation),
                "caused by an earlier event of the flow: {event:?}"
            );
            assert!(
                event
                    .meta("idempotency_key")
                    .is_some_and(|key| key.starts_with(&format!("saga:{causation}:"))),
                "keyed by the causing event: {event:?}"
            );
        }
        seen.insert(event_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_order_reaches_confirmed_by_itself() {
    let platform = Platform::start().await;
    let saga = RunningSaga::start(&platform, SagaOptions::default()).await;
    let (a, b) = (new_sku("A"), new_sku("B"));
    stock(&platform, &a, 10).await;
    stock(&platform, &b, 5).await;

    let order_id = place_order(
        &platform,
        &[(&a, 2, 1250), (&b, 1, 500)],
        json!({"payment_method": "tok_visa"}),
    )
    .await;

    let done = saga_reaches(&platform.db, order_id, SagaStatus::Completed).await;
    assert_eq!(done.payment_id, payment_id_for(order_id));
    let events = events_of_order(&platform.db, order_id).await;
    for sku in [&a, &b] {
        assert_eq!(count(&events, "StockReserved", Some(sku)), 1, "{sku}");
        assert_eq!(
            count(&events, "ReservationCommitted", Some(sku)),
            1,
            "{sku}"
        );
        assert_eq!(count(&events, "ReservationReleased", Some(sku)), 0, "{sku}");
    }
    assert_eq!(count(&events, "PaymentAuthorized", None), 1);
    assert_eq!(count(&events, "PaymentCaptured", None), 1);
    assert_eq!(count(&events, "OrderConfirmed", None), 1);
    let captured = events
        .iter()
        .find(|e| e.event_type == "PaymentCaptured")
        .expect("captured");
    assert_eq!(captured.payload["PaymentCaptured"]["amount"], eur(3000));
    assert_audit_trail(&events);

    order_status_becomes(&platform, order_id, "confirmed").await;
    stock_becomes(&platform, &a, 8, 0).await;
    stock_becomes(&platform, &b, 4, 0).await;

    saga.stop().await;
    platform.stop().await;
}

/// The trace id of a W3C `traceparent` (`version-traceid-spanid-flags`).
fn trace_id(traceparent: &str) -> Option<&str> {
    traceparent.split('-').nth(1)
}

/// The saga sends its commands later, from its dispatcher, not from the consumer that saw
/// the event: each command must still carry the causing event's trace context, so that
/// every event of the flow, down to the capture, stays in the caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_s_commands_continue_the_trace_of_the_event_that_caused_them() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let platform = Platform::start().await;
    let saga = RunningSaga::start(&platform, SagaOptions::default()).await;
    let sku = new_sku("T");
    stock(&platform, &sku, 3).await;
    let order_id = create_order(&platform).await;
    platform
        .command(
            &format!("/orders/{order_id}/lines"),
            json!({"sku": sku, "quantity": 1, "unit_price": eur(700)}),
        )
        .await
        .expect_status(201);
    platform
        .command_with_headers(
            &format!("/orders/{order_id}/place"),
            json!({"payment_method": "tok_visa"}),
            &[("traceparent", TRACEPARENT)],
        )
        .await
        .expect_status(200);
    let order_id = Uuid::parse_str(&order_id).expect("order id is a UUID");

    saga_reaches(&platform.db, order_id, SagaStatus::Completed).await;
    let events = events_of_order(&platform.db, order_id).await;
    let placed = events
        .iter()
        .find(|e| e.event_type == "OrderPlaced")
        .expect("placed");
    assert_eq!(placed.meta("traceparent"), Some(TRACEPARENT));
    let by_saga: Vec<_> = events
        .iter()
        .filter(|e| e.meta("actor") == Some(SAGA_ACTOR))
        .collect();
    // Reserve, authorize, then confirm, capture and commit: each step caused by an event
    // that a saga command produced in turn.
    assert_eq!(
        by_saga.len(),
        5,
        "every step of the flow: {:?}",
        types(&events)
    );
    for event in by_saga {
        assert_eq!(
            event.meta("traceparent").and_then(trace_id),
            trace_id(TRACEPARENT),
            "{} continues the caller's trace: {event:?}",
            event.event_type
        );
    }

    saga.stop().await;
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_out_of_stock_releases_the_others_and_cancels_the_order() {
    let platform = Platform::start().await;
    let saga = RunningSaga::start(&platform, SagaOptions::default()).await;
    let (a, b) = (new_sku("A"), new_sku("B"));
    stock(&platform, &a, 10).await;
    stock(&platform, &b, 1).await;

    let order_id = place_order(
        &platform,
        &[(&a, 2, 100), (&b, 3, 100)],
        json!({"payment_method": "tok_visa"}),
    )
    .await;

    let done = saga_reaches(&platform.db, order_id, SagaStatus::Cancelled).await;
    let reason = format!("out of stock: {b}");
    assert_eq!(done.reason.as_deref(), Some(reason.as_str()));
    let events = events_of_order(&platform.db, order_id).await;
    assert_eq!(cancel_reason(&events).as_deref(), Some(reason.as_str()));
    assert_eq!(count(&events, "StockReserved", Some(&b)), 0);
    assert_eq!(
        count(&events, "StockReserved", Some(&a)),
        count(&events, "ReservationReleased", Some(&a)),
        "whatever was reserved is released: {:?}",
        types(&events)
    );
    assert_eq!(
        count(&events, "PaymentAuthorized", None),
        0,
        "never charged"
    );
    assert_audit_trail(&events);
    stock_becomes(&platform, &a, 10, 0).await;
    stock_becomes(&platform, &b, 1, 0).await;

    saga.stop().await;
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_cancels_the_order_and_releases_its_stock() {
    let platform = Platform::start().await;
    let saga = RunningSaga::start(&platform, SagaOptions::default()).await;
    let (a, b) = (new_sku("A"), new_sku("B"));
    stock(&platform, &a, 10).await;
    stock(&platform, &b, 10).await;

    let order_id = place_order(
        &platform,
        &[(&a, 2, 100), (&b, 1, 100)],
        json!({"payment_method": "tok_decline"}),
    )
    .await;

    saga_reaches(&platform.db, order_id, SagaStatus::Cancelled).await;
    let events = events_of_order(&platform.db, order_id).await;
    assert_eq!(
        cancel_reason(&events).as_deref(),
        Some("payment declined: card_declined")
    );
    assert_eq!(count(&events, "PaymentDeclined", None), 1);
    assert_eq!(count(&events, "PaymentCaptured", None), 0);
    for sku in [&a, &b] {
        assert_eq!(count(&events, "StockReserved", Some(sku)), 1, "{sku}");
        assert_eq!(count(&events, "ReservationReleased", Some(sku)), 1, "{sku}");
    }
    assert_eq!(count(&events, "OrderConfirmed", None), 0);
    assert_audit_trail(&events);
    order_status_becomes(&platform, order_id, "cancelled").await;
    stock_becomes(&platform, &a, 10, 0).await;
    stock_becomes(&platform, &b, 10, 0).await;

    saga.stop().await;
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_without_payment_method_is_cancelled_without_reserving() {
    let platform = Platform::start().await;
    let saga = RunningSaga::start(&platform, SagaOptions::default()).await;
    let a = new_sku("A");
    stock(&platform, &a, 10).await;

    let order_id = place_order(&platform, &[(&a, 1, 100)], Value::Null).await;

    saga_reaches(&platform.db, order_id, SagaStatus::Cancelled).await;
    let events = events_of_order(&platform.db, order_id).await;
    assert_eq!(cancel_reason(&events).as_deref(), Some("no payment method"));
    assert_eq!(count(&events, "StockReserved", None), 0);

    saga.stop().await;
    platform.stop().await;
}

/// The gateway never answers (`tok_timeout`): the command API's guard retries and answers
/// 503; the saga keeps retrying until the step's deadline, then compensates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_without_answer_is_compensated_at_the_step_deadline() {
    let platform = Platform::start().await;
    let options = SagaOptions {
        step_timeout: Duration::from_secs(4),
        ..SagaOptions::default()
    };
    let saga = RunningSaga::start(&platform, options).await;
    let a = new_sku("A");
    stock(&platform, &a, 10).await;

    let order_id = place_order(
        &platform,
        &[(&a, 3, 100)],
        json!({"payment_method": "tok_timeout"}),
    )
    .await;

    saga_reaches(&platform.db, order_id, SagaStatus::Cancelled).await;
    let events = events_of_order(&platform.db, order_id).await;
    // After a few timed-out calls the guard's circuit opens and the last answer is the
    // fail-fast "unavailable"; either way the step timed out.
    let reason = cancel_reason(&events).unwrap_or_default();
    assert!(
        [
            "payment authorization timed out (payment.gateway_timeout)",
            "payment authorization timed out (payment.gateway_unavailable)"
        ]
        .contains(&reason.as_str()),
        "{reason}"
    );
    assert_eq!(count(&events, "StockReserved", Some(&a)), 1);
    assert_eq!(count(&events, "ReservationReleased", Some(&a)), 1);
    assert_eq!(count(&events, "PaymentAuthorized", None), 0);
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM saga_commands WHERE order_id = $1 AND command->>'kind' = 'authorize_payment'",
    )
    .bind(order_id)
    .fetch_one(&platform.db)
    .await
    .expect("the authorization was queued");
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    stock_becomes(&platform, &a, 10, 0).await;

    saga.stop().await;
    platform.stop().await;
}

/// The gateway is down (`tok_unavailable`): the guard's circuit opens and fails fast; the
/// saga waits for the step's deadline, then compensates. The next order with a working card
/// still completes once the circuit lets a trial call through — or is compensated in turn;
/// either way nothing stays reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_outage_fails_fast_and_is_compensated() {
    let platform = Platform::start().await;
    let options = SagaOptions {
        step_timeout: Duration::from_secs(4),
        ..SagaOptions::default()
    };
    let saga = RunningSaga::start(&platform, options).await;
    let a = new_sku("A");
    stock(&platform, &a, 10).await;

    let order_id = place_order(
        &platform,
        &[(&a, 2, 100)],
        json!({"payment_method": "tok_unavailable"}),
    )
    .await;

    saga_reaches(&platform.db, order_id, SagaStatus::Cancelled).await;
    let events = events_of_order(&platform.db, order_id).await;
    assert_eq!(
        cancel_reason(&events).as_deref(),
        Some("payment authorization timed out (payment.gateway_unavailable)")
    );
    assert_eq!(count(&events, "ReservationReleased", Some(&a)), 1);

    // The circuit is open now: a direct authorization fails at once with 503.
    let started = Instant::now();
    let answer = platform
        .command(
            "/payments",
            json!({"order_id": Uuid::new_v4(), "amount": eur(100), "payment_method": "tok_visa"}),
        )
        .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "failed fast: {:?}",
        started.elapsed()
    );
    stock_becomes(&platform, &a, 10, 0).await;

    saga.stop().await;
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_order_cancelled_later_is_refunded_and_its_stock_returned() {
    let platform = Platform::start().await;
    let saga = RunningSaga::start(&platform, SagaOptions::default()).await;
    let (a, b) = (new_sku("A"), new_sku("B"));
    stock(&platform, &a, 10).await;
    stock(&platform, &b, 3).await;
    let order_id = place_order(
        &platform,
        &[(&a, 2, 700), (&b, 3, 100)],
        json!({"payment_method": "tok_visa"}),
    )
    .await;
    saga_reaches(&platform.db, order_id, SagaStatus::Completed).await;
    stock_becomes(&platform, &b, 0, 0).await;

    platform
        .command(
            &format!("/orders/{order_id}/cancel"),
            json!({"reason": "customer changed their mind"}),
        )
        .await
        .expect_status(200);

    let done = saga_reaches(&platform.db, order_id, SagaStatus::Refunded).await;
    assert_eq!(done.reason.as_deref(), Some("customer changed their mind"));
    let events = events_of_order(&platform.db, order_id).await;
    assert_eq!(count(&events, "PaymentRefunded", None), 1);
    let refunded = events
        .iter()
        .find(|e| e.event_type == "PaymentRefunded")
        .expect("refunded");
    assert_eq!(refunded.payload["PaymentRefunded"]["amount"], eur(1700));
    assert_audit_trail(&events);
    let returns: Vec<StoredEvent> = all_events(&platform.db)
        .await
        .into_iter()
        .filter(|e| e.event_type == "StockAdjusted" && e.meta("actor") == Some(SAGA_ACTOR))
        .collect();
    assert_eq!(returns.len(), 2, "one return per line: {returns:?}");
    stock_becomes(&platform, &a, 10, 0).await;
    stock_becomes(&platform, &b, 3, 0).await;

    saga.stop().await;
    platform.stop().await;
}

/// The saga dies after reserving, with the authorization decided but not sent; a new
/// instance in the same group takes over. The flow completes exactly once: redelivered
/// events do not reserve again, the authorization and the capture happen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_killed_between_two_steps_completes_exactly_once_after_restart() {
    let platform = Platform::start().await;
    let group_id = tests::unique_name("e2e-saga-restart");
    let halt = Arc::new(HaltBeforeAuthorize::default());
    let first = RunningSaga::start(
        &platform,
        SagaOptions {
            group_id: group_id.clone(),
            hook: Some(halt.clone()),
            ..SagaOptions::default()
        },
    )
    .await;
    let (a, b) = (new_sku("A"), new_sku("B"));
    stock(&platform, &a, 10).await;
    stock(&platform, &b, 10).await;
    let order_id = place_order(
        &platform,
        &[(&a, 1, 1000), (&b, 4, 250)],
        json!({"payment_method": "tok_visa"}),
    )
    .await;

    tokio::time::timeout(Duration::from_secs(45), halt.reached.notified())
        .await
        .expect("the saga reserved and got to the authorization");
    first.kill().await;
    let events = events_of_order(&platform.db, order_id).await;
    assert_eq!(
        count(&events, "StockReserved", None),
        2,
        "{:?}",
        types(&events)
    );
    assert_eq!(
        count(&events, "PaymentAuthorized", None),
        0,
        "killed before"
    );

    let second = RunningSaga::start(
        &platform,
        SagaOptions {
            group_id,
            ..SagaOptions::default()
        },
    )
    .await;
    saga_reaches(&platform.db, order_id, SagaStatus::Completed).await;
    // Let any redelivery of the first instance's uncommitted offsets play out.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let events = events_of_order(&platform.db, order_id).await;
    for sku in [&a, &b] {
        assert_eq!(count(&events, "StockReserved", Some(sku)), 1, "{sku}");
        assert_eq!(
            count(&events, "ReservationCommitted", Some(sku)),
            1,
            "{sku}"
        );
    }
    assert_eq!(count(&events, "PaymentAuthorized", None), 1);
    assert_eq!(count(&events, "PaymentCaptured", None), 1);
    assert_eq!(count(&events, "OrderConfirmed", None), 1);
    assert_audit_trail(&events);
    stock_becomes(&platform, &a, 9, 0).await;
    stock_becomes(&platform, &b, 6, 0).await;

    second.stop().await;
    platform.stop().await;
}

/// Fulfilment needs no personal data (ADR 0009): an order whose customer is forgotten
/// between creating and placing it is reserved, paid and confirmed like any other, and the
/// order view shows its personal data as erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_customer_s_open_order_is_still_fulfilled() {
    let platform = Platform::start().await;
    let saga = RunningSaga::start(&platform, SagaOptions::default()).await;
    let sku = new_sku("P");
    stock(&platform, &sku, 3).await;
    let customer = Uuid::new_v4();
    let created = platform
        .command(
            "/orders",
            json!({
                "customer_id": customer,
                "currency": "EUR",
                "customer_details": {
                    "name": "Grace Hopper",
                    "email": "grace@example.com",
                    "shipping_address": {"line1": "1 Navy Yard", "city": "Arlington", "postal_code": "22202", "country": "US"}
                }
            }),
        )
        .await
        .expect_status(201);
    let order_id = created.aggregate_id();
    platform
        .command(
            &format!("/orders/{order_id}/lines"),
            json!({"sku": sku, "quantity": 1, "unit_price": eur(900)}),
        )
        .await
        .expect_status(201);
    platform
        .command(&format!("/customers/{customer}/forget"), json!({}))
        .await
        .expect_status(200);
    platform
        .command(
            &format!("/orders/{order_id}/place"),
            json!({"payment_method": "tok_visa"}),
        )
        .await
        .expect_status(200);

    let order_id = Uuid::parse_str(&order_id).expect("order id");
    saga_reaches(&platform.db, order_id, SagaStatus::Completed).await;
    order_status_becomes(&platform, order_id, "confirmed").await;
    let view = platform.query(&format!("/orders/{order_id}")).await;
    assert_eq!(view.body["customer_details"], json!({"status": "erased"}));
    assert!(!view.body.to_string().contains("Grace"), "{:?}", view.body);

    saga.stop().await;
    platform.stop().await;
}

/// A record on the order topic that is no event at all (not even a Confluent frame), in
/// both partitions, between the events of an order: the saga logs it, skips it and applies
/// the events around it, in its batch or the next. Invariant: a poison event does not stop
/// other aggregates, nor its neighbours in a saga batch.
#[tokio::test]
async fn a_record_that_is_no_event_is_skipped_and_the_flows_around_it_complete() {
    let platform = Platform::start().await;
    let saga = RunningSaga::start(&platform, SagaOptions::default()).await;
    let sku = new_sku("P");
    stock(&platform, &sku, 10).await;
    // A first flow, so the topics exist with their partitions before anything else writes.
    let first = place_order(
        &platform,
        &[(&sku, 1, 700)],
        json!({"payment_method": "tok_visa"}),
    )
    .await;
    saga_reaches(&platform.db, first, SagaStatus::Completed).await;

    let order_id = create_order(&platform).await;
    let producer = tests::producer(&tests::Stack::from_env().kafka_brokers).expect("producer");
    let topic = AggregateKind::Order.topic(&platform.topic_prefix);
    let poison_key = Uuid::new_v4().to_string();
    for partition in 0..2 {
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(partition)
                    .key(&poison_key)
                    .payload("not an event"),
                Duration::from_secs(10),
            )
            .await
            .expect("poison record produced");
    }
    let order_id = add_lines_and_place(
        &platform,
        &order_id,
        &[(&sku, 2, 1250)],
        json!({"payment_method": "tok_visa"}),
    )
    .await;
    let behind = place_order(
        &platform,
        &[(&sku, 1, 700)],
        json!({"payment_method": "tok_visa"}),
    )
    .await;

    for id in [order_id, behind] {
        saga_reaches(&platform.db, id, SagaStatus::Completed).await;
        let events = events_of_order(&platform.db, id).await;
        assert_eq!(count(&events, "OrderConfirmed", None), 1, "{id}");
        assert_eq!(count(&events, "PaymentCaptured", None), 1, "{id}");
    }
    stock_becomes(&platform, &sku, 6, 0).await;

    saga.stop().await;
    platform.stop().await;
}
