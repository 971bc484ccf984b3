//! The saga's intake against a real PostgreSQL (a scratch database with the saga's
//! migrations): batches of events pass their aggregates' checkpoints exactly as single
//! events would, start and move sagas, and leave nothing behind when redelivered.

// Tests draw fresh ids; `clippy.toml` bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use aggregates::inventory::InventoryEvent;
use aggregates::order::{OrderEvent, OrderLine};
use aggregates::{Currency, Money, Sku};
use chrono::{DateTime, TimeZone, Utc};
use saga::intake::{self, Outcome, Received};
use saga::store::{self, Checkpoint, Position};
use saga::{SagaStatus, decode::DomainEvent};
use schemas::EventMetadata;
use sqlx::PgPool;
use test_support::ScratchDatabase;
use uuid::Uuid;

const STEP_TIMEOUT: Duration = Duration::from_secs(30);

struct Scratch {
    database: ScratchDatabase,
    pool: PgPool,
}

impl Scratch {
    async fn new() -> Self {
        let database = ScratchDatabase::create("keel_saga_test")
            .await
            .expect("a scratch database");
        let pool = database.pool(4).await.expect("a pool on it");
        saga::migrate(&pool).await.expect("saga migrations");
        Self { database, pool }
    }

    async fn finish(self) {
        self.pool.close().await;
        self.database.drop_database().await;
    }

    /// Admits `positions` in a transaction of their own, committed.
    async fn admit(&self, positions: &[Position<'_>]) -> Vec<Checkpoint> {
        let mut tx = self
            .pool
            .begin()
            .await
            .expect("the scratch database answers");
        let verdicts = store::admit(&mut tx, positions)
            .await
            .expect("the scratch database answers");
        tx.commit().await.expect("the scratch database answers");
        verdicts
    }

    /// Applies `events` in a transaction of their own, committed.
    async fn apply(&self, events: Vec<Received>) -> Outcome {
        let mut tx = self
            .pool
            .begin()
            .await
            .expect("the scratch database answers");
        let outcome = intake::apply(&mut tx, events, now(), STEP_TIMEOUT)
            .await
            .expect("the scratch database answers");
        tx.commit().await.expect("the scratch database answers");
        outcome
    }

    async fn checkpoint(&self, aggregate_type: &str, aggregate_id: &str) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT last_sequence FROM saga_checkpoints \
             WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .expect("the scratch database answers")
    }

    /// The kinds of the saga's queued commands, in queue order.
    async fn commands(&self, order_id: Uuid) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT command->>'kind' FROM saga_commands WHERE order_id = $1 ORDER BY id",
        )
        .bind(order_id)
        .fetch_all(&self.pool)
        .await
        .expect("the scratch database answers")
    }

    async fn processed(&self, order_id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM saga_processed_events WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&self.pool)
            .await
            .expect("the scratch database answers")
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0)
        .single()
        .expect("a valid instant")
}

fn at<'a>(aggregate_type: &'a str, aggregate_id: &'a str, sequence: i64) -> Position<'a> {
    Position {
        aggregate_type,
        aggregate_id,
        sequence,
    }
}

fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: Currency::new("EUR").expect("EUR is a currency"),
    }
}

fn received(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: u64,
    event: DomainEvent,
) -> Received {
    Received {
        metadata: EventMetadata {
            event_id: Uuid::new_v4(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            actor: "test".to_owned(),
            occurred_at: now(),
            idempotency_key: None,
            traceparent: None,
        },
        event,
    }
}

fn order_event(order_id: Uuid, sequence: u64, event: OrderEvent) -> Received {
    received(
        "order",
        &order_id.to_string(),
        sequence,
        DomainEvent::Order(event),
    )
}

fn placed(order_id: Uuid, sequence: u64, sku: &Sku, quantity: u32) -> Received {
    order_event(
        order_id,
        sequence,
        OrderEvent::OrderPlaced {
            customer_id: Uuid::new_v4(),
            lines: vec![OrderLine {
                sku: sku.clone(),
                quantity,
                unit_price: eur(250),
            }],
            total: eur(250 * i64::from(quantity)),
            payment_method: Some("tok_visa".to_owned()),
        },
    )
}

fn reserved(sku: &Sku, sequence: u64, order_id: Uuid, quantity: u32) -> Received {
    received(
        "inventory",
        sku.as_str(),
        sequence,
        DomainEvent::Inventory(InventoryEvent::StockReserved { order_id, quantity }),
    )
}

fn stock_added(sku: &Sku, sequence: u64) -> Received {
    received(
        "inventory",
        sku.as_str(),
        sequence,
        DomainEvent::Inventory(InventoryEvent::StockAdded { quantity: 10 }),
    )
}

#[tokio::test]
async fn a_batch_gets_the_verdicts_of_its_events_one_at_a_time() {
    let scratch = Scratch::new().await;
    // a: seen before, at 2. b: never seen, first shows 7 (a saga deployed onto history).
    assert_eq!(
        scratch
            .admit(&[at("order", "a", 1), at("order", "a", 2)])
            .await,
        vec![Checkpoint::Apply, Checkpoint::Apply]
    );
    let verdicts = scratch
        .admit(&[
            at("order", "a", 2),
            at("order", "b", 7),
            at("order", "a", 3),
            at("order", "a", 3),
            at("order", "a", 5),
            at("order", "b", 8),
            at("order", "a", 4),
            at("inventory", "a", 1),
        ])
        .await;
    assert_eq!(
        verdicts,
        vec![
            Checkpoint::Duplicate,
            Checkpoint::Apply,
            Checkpoint::Apply,
            Checkpoint::Duplicate,
            Checkpoint::Gap { last: 3 },
            Checkpoint::Apply,
            Checkpoint::Apply,
            // Same id, another aggregate type: a checkpoint of its own.
            Checkpoint::Apply,
        ]
    );
    assert_eq!(scratch.checkpoint("order", "a").await, Some(4));
    assert_eq!(scratch.checkpoint("order", "b").await, Some(8));
    assert_eq!(scratch.checkpoint("inventory", "a").await, Some(1));
    // The event skipped at the gap comes again after the missing one did.
    assert_eq!(
        scratch
            .admit(&[at("order", "a", 5), at("order", "b", 7)])
            .await,
        vec![Checkpoint::Apply, Checkpoint::Duplicate]
    );
    assert_eq!(scratch.checkpoint("order", "a").await, Some(5));
    scratch.finish().await;
}

#[tokio::test]
async fn a_rolled_back_batch_leaves_no_checkpoint() {
    let scratch = Scratch::new().await;
    let mut tx = scratch.pool.begin().await.unwrap();
    store::admit(&mut tx, &[at("order", "a", 1), at("order", "b", 1)])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(scratch.checkpoint("order", "a").await, None);
    assert_eq!(
        scratch.admit(&[at("order", "a", 1)]).await,
        vec![Checkpoint::Apply]
    );
    scratch.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_admitting_a_new_aggregate_at_once_act_on_its_event_once() {
    let scratch = Scratch::new().await;
    // The first instance creates the checkpoint and holds it, uncommitted.
    let mut first = scratch.pool.begin().await.unwrap();
    assert_eq!(
        store::admit(&mut first, &[at("order", "x", 1), at("order", "y", 1)])
            .await
            .unwrap(),
        vec![Checkpoint::Apply, Checkpoint::Apply]
    );
    // The second, with the same events (a rebalance redelivered them) and one of an
    // aggregate nobody saw yet, must wait.
    let pool = scratch.pool.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let verdicts = store::admit(
            &mut tx,
            &[
                at("order", "y", 1),
                at("order", "z", 4),
                at("order", "x", 1),
                at("order", "x", 2),
                at("order", "z", 5),
            ],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        verdicts
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second batch went ahead of a checkpoint another transaction holds"
    );
    first.commit().await.unwrap();
    assert_eq!(
        second.await.unwrap(),
        vec![
            Checkpoint::Duplicate,
            Checkpoint::Apply,
            Checkpoint::Duplicate,
            Checkpoint::Apply,
            Checkpoint::Apply,
        ]
    );
    assert_eq!(scratch.checkpoint("order", "x").await, Some(2));
    assert_eq!(scratch.checkpoint("order", "y").await, Some(1));
    assert_eq!(scratch.checkpoint("order", "z").await, Some(5));
    scratch.finish().await;
}

#[tokio::test]
async fn one_batch_starts_a_saga_and_moves_it_and_its_redelivery_changes_nothing() {
    let scratch = Scratch::new().await;
    let order_id = Uuid::new_v4();
    let sku = Sku::new(format!("SKU-{}", Uuid::new_v4().simple())).unwrap();
    let other = Uuid::new_v4();
    let batch = || {
        vec![
            // Of no interest to the saga, but its checkpoint advances all the same.
            stock_added(&sku, 1),
            order_event(
                order_id,
                1,
                OrderEvent::OrderCreated {
                    customer_id: Uuid::new_v4(),
                    currency: Currency::new("EUR").unwrap(),
                    customer_details: None,
                },
            ),
            placed(order_id, 2, &sku, 2),
            placed(other, 1, &sku, 1),
            reserved(&sku, 2, order_id, 2),
        ]
    };
    let events = batch();
    let ids: Vec<Uuid> = events.iter().map(|e| e.metadata.event_id).collect();
    let outcome = scratch.apply(events).await;
    assert_eq!(
        outcome,
        Outcome {
            applied: 5,
            duplicates: 0,
            gaps: 0,
            queued: true
        }
    );
    let saga = store::read_saga(&scratch.pool, order_id)
        .await
        .unwrap()
        .expect("the saga started");
    assert_eq!(saga.status, SagaStatus::Authorizing);
    assert_eq!(
        scratch.commands(order_id).await,
        vec!["reserve_stock", "authorize_payment"]
    );
    assert_eq!(scratch.processed(order_id).await, 2);
    let untouched = store::read_saga(&scratch.pool, other)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.status, SagaStatus::Reserving);
    assert_eq!(scratch.checkpoint("inventory", sku.as_str()).await, Some(2));
    assert_eq!(
        scratch.checkpoint("order", &order_id.to_string()).await,
        Some(2)
    );

    // Redelivered with the same event ids, the batch is skipped whole.
    let mut again = batch();
    for (event, id) in again.iter_mut().zip(&ids) {
        event.metadata.event_id = *id;
    }
    let outcome = scratch.apply(again).await;
    assert_eq!(
        outcome,
        Outcome {
            applied: 0,
            duplicates: 5,
            gaps: 0,
            queued: false
        }
    );
    assert_eq!(
        store::read_saga(&scratch.pool, order_id)
            .await
            .unwrap()
            .unwrap(),
        saga
    );
    assert_eq!(
        scratch.commands(order_id).await,
        vec!["reserve_stock", "authorize_payment"]
    );
    assert_eq!(scratch.processed(order_id).await, 2);
    scratch.finish().await;
}
