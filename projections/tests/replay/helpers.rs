//! What the rebuild tests add to the projector tests' harness: a second database for the
//! reference read model, a steady writer, waits and full dumps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use projections::Projection;
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::ScratchDatabase;
use test_support::personal::Person;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{Harness, RunningProjector, WAIT, id_of};

/// A database of its own with the read-model migrations applied, dropped by
/// [`ExtraDatabase::drop_database`].
pub struct ExtraDatabase {
    scratch: ScratchDatabase,
    /// URL of the database (for the CLI).
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
}

impl ExtraDatabase {
    /// Creates it and applies the read-model migrations.
    pub async fn create() -> Self {
        let scratch = ScratchDatabase::create("keel_replay_test")
            .await
            .expect("scratch database");
        let pool = scratch.pool(4).await.expect("connect");
        read_model::migrate(&pool)
            .await
            .expect("read-model migrations");
        Self {
            url: scratch.url().to_owned(),
            scratch,
            pool,
        }
    }

    /// Best effort.
    pub async fn drop_database(self) {
        self.pool.close().await;
        self.scratch.drop_database().await;
    }
}

/// One business round through the command API: an order with two lines (placed every other
/// round), stock received and reserved for it, a payment authorized and captured.
pub async fn write_round(harness: &Harness, round: u32) {
    let customer_id = Uuid::new_v4();
    let sku = format!("SKU-R{}", round % 4);
    let order_id = harness.create_order(customer_id).await;
    harness.add_line(order_id, &sku, 1 + round % 3, 1_000).await;
    harness.add_line(order_id, "SKU-X", 1, 250).await;
    if round.is_multiple_of(2) {
        harness.place_order(order_id).await;
    }
    harness.add_stock(&sku, 5).await;
    harness.reserve_stock(&sku, order_id, 1).await;
    let amount = 1_000 * i64::from(1 + round % 3) + 250;
    let payment_id = harness.authorize_payment(order_id, amount).await;
    harness.capture_payment(payment_id, amount).await;
}

/// One business round that makes every event kind the `orders` and `payments` projections
/// fold: an order (with sealed customer details every other round) that is delivered,
/// cancelled, shipped without tracking, or left a draft whose lines change; stock added,
/// adjusted, reserved for it, then released or committed; payments captured and refunded
/// (partly, then in full), voided, only captured, and declined; and every fourth round
/// the customer forgotten. Line quantity changes and removals have no POST route the
/// harness can send: they go into the store directly (its triggers feed the outbox, so
/// the relay publishes them like any other event).
pub async fn write_varied_round(harness: &Harness, round: u32) {
    let customer_id = Uuid::new_v4();
    let sku = format!("SKU-V{}", round % 3);
    let mut create = json!({"customer_id": customer_id, "currency": "EUR"});
    if round.is_multiple_of(2) {
        create["customer_details"] = Person::new().details();
    }
    let order_id = id_of(&harness.post("/orders", create, 201).await);
    harness.add_line(order_id, &sku, 1 + round % 3, 1_000).await;
    harness.add_line(order_id, "SKU-Y", 2, 250).await;
    harness.add_line(order_id, "SKU-Z", 1, 99).await;
    let order = format!("/orders/{order_id}");
    match round % 4 {
        0 => {
            harness.place_order(order_id).await;
            harness.confirm_order(order_id).await;
            let ship = json!({"tracking_reference": format!("TRACK-{round}")});
            harness.post(&format!("{order}/ship"), ship, 200).await;
            harness
                .post(&format!("{order}/deliver"), Value::Null, 200)
                .await;
        }
        1 => {
            harness.place_order(order_id).await;
            let cancel = json!({"reason": format!("changed their mind ({round})")});
            harness.post(&format!("{order}/cancel"), cancel, 200).await;
        }
        2 => {
            harness.place_order(order_id).await;
            harness.confirm_order(order_id).await;
            harness.post(&format!("{order}/ship"), json!({}), 200).await;
        }
        _ => {
            // A draft: SKU-Z's quantity changes, SKU-Y (position 2) goes, and the next
            // line takes position 4, after the highest.
            let changes = [
                json!({"OrderLineQuantityChanged": {"sku": "SKU-Z", "quantity": 4}}),
                json!({"OrderLineRemoved": {"sku": "SKU-Y"}}),
                json!({"OrderLineAdded": {"line": {
                    "sku": "SKU-W", "quantity": 3,
                    "unit_price": {"amount_minor": 10, "currency": "EUR"}}}}),
            ];
            for (sequence, payload) in (5_i64..).zip(changes) {
                append_directly(
                    &harness.event_store,
                    "order",
                    &order_id.to_string(),
                    sequence,
                    payload,
                )
                .await;
            }
        }
    }

    harness.add_stock(&sku, 10).await;
    if round % 3 == 1 {
        let adjust = json!({"delta": -1, "reason": format!("stock take {round}")});
        harness
            .post(&format!("/inventory/{sku}/adjustments"), adjust, 200)
            .await;
    }
    harness.reserve_stock(&sku, order_id, 2).await;
    let reservation = format!("/inventory/{sku}/reservations/{order_id}");
    match round % 3 {
        0 => {
            harness
                .post(&format!("{reservation}/commit"), Value::Null, 200)
                .await;
        }
        1 => {
            harness
                .post(&format!("{reservation}/release"), Value::Null, 200)
                .await;
        }
        _ => {}
    }

    let amount = 1_000 * i64::from(1 + round % 3) + 250;
    let payment_id = harness.authorize_payment(order_id, amount).await;
    let payment = format!("/payments/{payment_id}");
    match round % 3 {
        0 => {
            harness.capture_payment(payment_id, amount).await;
            for refund in [100, amount - 100] {
                let body = json!({
                    "amount": {"amount_minor": refund, "currency": "EUR"},
                    "reason": format!("returned ({round})"),
                });
                harness.post(&format!("{payment}/refunds"), body, 201).await;
            }
        }
        1 => {
            let void = json!({"reason": format!("order cancelled ({round})")});
            harness.post(&format!("{payment}/void"), void, 200).await;
        }
        _ => harness.capture_payment(payment_id, amount).await,
    }
    let declined = json!({
        "order_id": order_id,
        "amount": {"amount_minor": amount, "currency": "EUR"},
        "payment_method": "tok_decline",
    });
    harness.post("/payments", declined, 201).await;

    if round % 4 == 2 {
        harness
            .post(&format!("/customers/{customer_id}/forget"), json!({}), 200)
            .await;
    }
}

/// Appends `payload` (an externally tagged event) straight into the store as event
/// `sequence` of the aggregate, through the store's triggers (see [`write_varied_round`]).
pub async fn append_directly(
    pool: &PgPool,
    aggregate_type: &str,
    id: &str,
    sequence: i64,
    payload: Value,
) {
    let event_type = payload
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .expect("an externally tagged event");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                             event_version, payload, metadata) \
         VALUES ($1, $2, $3, $4, '1', $5::json, \
                 json_build_object('actor', 'replay-test', \
                                   'correlation_id', gen_random_uuid(), \
                                   'occurred_at', '2024-05-01T12:00:01.5Z'))",
    )
    .bind(aggregate_type)
    .bind(id)
    .bind(sequence)
    .bind(&event_type)
    .bind(payload.to_string())
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("append {event_type} to {aggregate_type} {id}: {e}"));
}

/// The event types of `projection`'s sources in the store.
pub async fn stored_event_types(harness: &Harness, projection: Projection) -> BTreeSet<String> {
    let types: Vec<&str> = projection
        .sources()
        .iter()
        .map(|kind| kind.aggregate_type())
        .collect();
    let found: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT event_type FROM events WHERE aggregate_type = ANY($1)")
            .bind(&types)
            .fetch_all(&harness.event_store)
            .await
            .expect("event types");
    found.into_iter().collect()
}

/// Writes rounds from `first` on until `stop` is cancelled (at least `min_rounds`);
/// returns the next round number.
pub async fn write_until(
    harness: &Harness,
    first: u32,
    min_rounds: u32,
    stop: &CancellationToken,
) -> u32 {
    let mut round = first;
    while round < first + min_rounds || !stop.is_cancelled() {
        write_round(harness, round).await;
        round += 1;
    }
    round
}

/// Events of `projection`'s sources in the store, and what the checkpoints of `pool` say
/// is applied.
async fn applied_and_stored(
    harness: &Harness,
    pool: &PgPool,
    projection: Projection,
) -> (i64, i64) {
    let types: Vec<&str> = projection
        .sources()
        .iter()
        .map(|kind| kind.aggregate_type())
        .collect();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = ANY($1)")
            .bind(&types)
            .fetch_one(&harness.event_store)
            .await
            .expect("count events");
    let applied: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(last_sequence), 0)::bigint FROM read_model.checkpoints \
         WHERE projection = $1",
    )
    .bind(projection.name())
    .fetch_one(pool)
    .await
    .expect("sum checkpoints");
    (applied, stored)
}

/// Waits until the read model in `pool` holds every stored event of `projection`.
pub async fn wait_until_caught_up(harness: &Harness, pool: &PgPool, projection: Projection) {
    harness.wait_for_empty_outbox().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (applied, stored) = applied_and_stored(harness, pool, projection).await;
        if applied == stored {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{projection}: {applied} of {stored} events applied within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A reference read model of `projection`, built by a fresh projector in a database of its
/// own, once it holds every stored event.
pub async fn reference(harness: &Harness, projection: Projection) -> BTreeMap<String, String> {
    let database = ExtraDatabase::create().await;
    let settings = harness.projector_settings(50);
    let projector =
        RunningProjector::start(projection, database.pool.clone(), &harness.kafka, &settings).await;
    wait_until_caught_up(harness, &database.pool, projection).await;
    projector.stop().await;
    let dump = dump(&database.pool, projection).await;
    database.drop_database().await;
    dump
}

/// Every row of `projection`'s tables and checkpoints, as JSON text in a canonical order.
pub async fn dump(pool: &PgPool, projection: Projection) -> BTreeMap<String, String> {
    let mut dump = BTreeMap::new();
    for table in projection.tables() {
        let rows: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(json_agg(t ORDER BY t::text), '[]'::json)::text \
             FROM read_model.\"{table}\" t"
        ))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("dump read_model.{table}: {e}"));
        dump.insert((*table).to_owned(), rows);
    }
    let checkpoints: String = sqlx::query_scalar(
        "SELECT coalesce(json_agg(t ORDER BY t::text), '[]'::json)::text FROM ( \
             SELECT aggregate_type, aggregate_id, last_sequence, parked_by \
             FROM read_model.checkpoints WHERE projection = $1) t",
    )
    .bind(projection.name())
    .fetch_one(pool)
    .await
    .expect("dump checkpoints");
    dump.insert("checkpoints".to_owned(), checkpoints);
    dump
}

/// Asserts two dumps are equal, naming the first table that differs.
pub fn assert_same(actual: &BTreeMap<String, String>, reference: &BTreeMap<String, String>) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    for (table, rows) in reference {
        assert_eq!(
            &actual[table], rows,
            "table {table} differs from the reference read model"
        );
    }
}

/// Rows in `table` of the live read model.
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM read_model.\"{table}\""))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("count read_model.{table}: {e}"))
}
