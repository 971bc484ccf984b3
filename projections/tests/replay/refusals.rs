//! A stored event the live apply code refuses stops a rebuild at that event, with the same
//! report whether the rebuild folds set-based or applies event by event: refusals the fold
//! finds itself, and those only PostgreSQL finds (a text with a NUL character).

use projections::Projection;
use projections::replay::source::EventStore;
use projections::replay::{self, Fold, RebuildOptions, RebuildProgress, ReplayError};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{ExtraDatabase, append_directly};

fn eur(amount_minor: i64) -> Value {
    json!({"amount_minor": amount_minor, "currency": "EUR"})
}

fn authorized(payment: Uuid, order: Uuid, amount: i64) -> Value {
    json!({"PaymentAuthorized": {
        "payment_id": payment, "order_id": order, "amount": eur(amount),
        "authorization_code": "auth"}})
}

/// Rebuilds `projection` from the start with `fold`; it must be refused. Returns the
/// report, the refused aggregate id and its sequence.
async fn refused(pool: &PgPool, projection: Projection, fold: Fold) -> (String, String, i64) {
    let options = RebuildOptions {
        batch_size: 50,
        workers: 2,
        keep_old: false,
        restart: true,
        fold,
    };
    let (progress, _updates) = watch::channel(RebuildProgress::default());
    let outcome = replay::rebuild_from_store(
        projection,
        pool,
        &EventStore::new(pool.clone()),
        &options,
        &CancellationToken::new(),
        &progress,
    )
    .await;
    match outcome {
        Err(error @ ReplayError::Refused { .. }) => {
            let ReplayError::Refused {
                ref aggregate_id,
                sequence,
                ..
            } = error
            else {
                unreachable!()
            };
            (aggregate_id.clone(), error.to_string(), sequence)
        }
        other => panic!("{projection} {fold:?}: expected a refusal, got {other:?}"),
    }
}

/// Writes the events `write` appends into a fresh store, then rebuilds `projection` both
/// ways: each is refused at `aggregate_id` #`sequence`, with the same report.
async fn assert_refused_alike(
    projection: Projection,
    aggregate_id: &str,
    sequence: i64,
    events: Vec<(&str, String, i64, Value)>,
) {
    let database = ExtraDatabase::create().await;
    event_store::migrate(&database.pool)
        .await
        .expect("event-store migrations");
    for (aggregate_type, id, at, payload) in events {
        append_directly(&database.pool, aggregate_type, &id, at, payload).await;
    }
    let folded = refused(&database.pool, projection, Fold::SetBased).await;
    let per_event = refused(&database.pool, projection, Fold::PerEvent).await;
    assert_eq!(
        (folded.0.as_str(), folded.2),
        (aggregate_id, sequence),
        "{}",
        folded.1
    );
    assert_eq!(folded, per_event);
    database.drop_database().await;
}

#[tokio::test]
async fn a_refund_above_the_capture_is_refused_alike() {
    let (first, second, order) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let refund = json!({"PaymentRefunded": {
        "refund_id": Uuid::new_v4(), "amount": eur(200), "reason": "r",
        "gateway_reference": "g"}});
    let captured = json!({"PaymentCaptured": {"amount": eur(100), "gateway_reference": "g"}});
    assert_refused_alike(
        Projection::Payments,
        &first.to_string(),
        3,
        vec![
            (
                "payment",
                first.to_string(),
                1,
                authorized(first, order, 500),
            ),
            (
                "payment",
                second.to_string(),
                1,
                authorized(second, order, 500),
            ),
            ("payment", first.to_string(), 2, captured),
            ("payment", first.to_string(), 3, refund),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_text_postgresql_cannot_store_is_refused_alike() {
    let (payment, order) = (Uuid::new_v4(), Uuid::new_v4());
    let void = json!({"PaymentVoided": {"reason": "bad\u{0}reason", "gateway_reference": "g"}});
    assert_refused_alike(
        Projection::Payments,
        &payment.to_string(),
        2,
        vec![
            (
                "payment",
                payment.to_string(),
                1,
                authorized(payment, order, 500),
            ),
            ("payment", payment.to_string(), 2, void),
        ],
    )
    .await;

    let customer = Uuid::new_v4();
    let created = json!({"OrderCreated": {"customer_id": customer, "currency": "EUR"}});
    let cancelled = json!({"OrderCancelled": {"reason": "bad\u{0}reason"}});
    assert_refused_alike(
        Projection::Orders,
        &order.to_string(),
        2,
        vec![
            ("order", order.to_string(), 1, created),
            (
                "payment",
                payment.to_string(),
                1,
                authorized(payment, order, 500),
            ),
            ("order", order.to_string(), 2, cancelled),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_change_of_a_line_the_order_lacks_is_refused_alike() {
    let (order, other, customer) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let created = json!({"OrderCreated": {"customer_id": customer, "currency": "EUR"}});
    let line = json!({"OrderLineAdded": {"line": {
        "sku": "SKU-A", "quantity": 1, "unit_price": eur(100)}}});
    let change = json!({"OrderLineQuantityChanged": {"sku": "SKU-B", "quantity": 2}});
    assert_refused_alike(
        Projection::Orders,
        &order.to_string(),
        3,
        vec![
            ("order", order.to_string(), 1, created.clone()),
            ("order", other.to_string(), 1, created),
            ("order", order.to_string(), 2, line),
            (
                "inventory",
                "SKU-A".to_owned(),
                1,
                json!({"StockAdded": {"quantity": 5}}),
            ),
            ("order", order.to_string(), 3, change),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_reservation_of_a_sku_never_stocked_is_refused_alike() {
    let order = Uuid::new_v4();
    assert_refused_alike(
        Projection::Stock,
        "SKU-B",
        1,
        vec![
            (
                "inventory",
                "SKU-A".to_owned(),
                1,
                json!({"StockAdded": {"quantity": 5}}),
            ),
            (
                "inventory",
                "SKU-B".to_owned(),
                1,
                json!({"StockReserved": {"order_id": order, "quantity": 1}}),
            ),
        ],
    )
    .await;
}
