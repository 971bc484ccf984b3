//! An event that fails for a reason that may pass (here: its read-model row is locked past
//! the projector's lock timeout) holds its aggregate only; the other aggregates flow on, and
//! the held events are applied in order once the failure clears. When the attempts run out
//! the event is dead-lettered, and an operator's retry or skip brings the aggregate back.

use std::time::Duration;

use projections::Projection;
use projections::config::ProjectorSettings;
use rdkafka::producer::FutureRecord;
use read_model::dead_letters::{self as operator, OperatorError};
use schemas::AggregateKind;
use sqlx::{PgPool, Postgres, Transaction};

use crate::support::{
    Harness, RunningProjector, eventually, held_events, letters, producer, spawn_projector, stock,
};

/// The projector process's settings for held aggregates (as [`settings`]).
const QUICK_RETRIES: &[(&str, &str)] = &[
    ("KEEL_PROJECTOR_LOCK_TIMEOUT_MS", "100"),
    ("KEEL_PROJECTOR_MAX_ATTEMPTS", "1000"),
    ("KEEL_PROJECTOR_RETRY_BACKOFF_MS", "20"),
    ("KEEL_PROJECTOR_RETRY_BACKOFF_MAX_MS", "100"),
    ("KEEL_KAFKA_SESSION_TIMEOUT_MS", "6000"),
];

/// Settings for held aggregates: a short lock timeout and quick retries.
fn settings(harness: &Harness, max_attempts: u32) -> ProjectorSettings {
    let mut settings = harness.projector_settings(100);
    settings.lock_timeout = Duration::from_millis(100);
    settings.retry.max_attempts = max_attempts;
    settings.retry.initial_backoff = Duration::from_millis(20);
    settings.retry.max_backoff = Duration::from_millis(100);
    settings
}

/// Locks `sku`'s stock row until the transaction ends.
async fn lock_row(pool: &PgPool, sku: &str) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.expect("begin");
    let locked: Option<i64> =
        sqlx::query_scalar("SELECT on_hand FROM read_model.stock_levels WHERE sku = $1 FOR UPDATE")
            .bind(sku)
            .fetch_optional(&mut *tx)
            .await
            .expect("lock the row");
    assert!(locked.is_some(), "{sku} has a row to lock");
    tx
}

/// `(retrying, attempts, parked_by)` of a stock checkpoint.
async fn retry_state(pool: &PgPool, sku: &str) -> (bool, i32, Option<i64>) {
    sqlx::query_as(
        "SELECT retry_at IS NOT NULL, retry_attempts, parked_by FROM read_model.checkpoints \
         WHERE projection = 'stock' AND aggregate_id = $1",
    )
    .bind(sku)
    .fetch_one(pool)
    .await
    .expect("read checkpoint")
}

async fn start_with_two_skus(harness: &Harness, settings: &ProjectorSettings) -> RunningProjector {
    harness.add_stock("SKU-HELD", 10).await;
    harness.add_stock("SKU-FREE", 1).await;
    let mut projector = harness.start_projector(Projection::Stock, settings).await;
    projector.wait_for_applied(2).await;
    projector
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_aggregate_is_held_while_the_others_flow_and_is_applied_in_order_once_free() {
    let harness = Harness::start(1).await;
    let pool = harness.read_model.clone();
    let projector = start_with_two_skus(&harness, &settings(&harness, 1_000)).await;

    let lock = lock_row(&pool, "SKU-HELD").await;
    for quantity in [5, 7] {
        harness.add_stock("SKU-HELD", quantity).await;
    }
    for quantity in [2, 3] {
        harness.add_stock("SKU-FREE", quantity).await;
    }
    // Same partition, after the held aggregate's events: it flows regardless.
    eventually("SKU-FREE applied past the locked SKU-HELD", || async {
        stock(&pool, "SKU-FREE").await == Some((6, 3))
    })
    .await;
    eventually("both of SKU-HELD's new events held", || async {
        held_events(&pool, Projection::Stock).await.get("SKU-HELD") == Some(&2)
    })
    .await;
    let (retrying, attempts, parked_by) = retry_state(&pool, "SKU-HELD").await;
    assert!(retrying && attempts >= 1 && parked_by.is_none());
    assert_eq!(stock(&pool, "SKU-HELD").await, Some((10, 1)));

    lock.rollback().await.expect("release the lock");
    eventually("SKU-HELD's held events applied", || async {
        stock(&pool, "SKU-HELD").await == Some((22, 3))
    })
    .await;
    eventually("SKU-HELD flows again", || async {
        retry_state(&pool, "SKU-HELD").await == (false, 0, None)
    })
    .await;
    assert!(held_events(&pool, Projection::Stock).await.is_empty());
    assert!(letters(&pool).await.is_empty(), "nothing dead-lettered");
    let progress = projector.stop().await;
    assert_eq!(progress.applied, 6, "{progress:?}");
    assert!(progress.held >= 2, "{progress:?}");
    crate::support::assert_checkpoints_match_event_store(&harness, Projection::Stock).await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_attempts_dead_letter_the_event_and_an_operator_retry_applies_it_and_its_followers() {
    let harness = Harness::start(1).await;
    let pool = harness.read_model.clone();
    let projector = start_with_two_skus(&harness, &settings(&harness, 3)).await;

    let lock = lock_row(&pool, "SKU-HELD").await;
    harness.add_stock("SKU-HELD", 5).await;
    harness.add_stock("SKU-HELD", 7).await;
    eventually(
        "the failing event and its follower dead-lettered",
        || async { letters(&pool).await.len() == 2 },
    )
    .await;
    let found = letters(&pool).await;
    let (poison, parked) = (&found[0], &found[1]);
    assert_eq!(
        (poison.reason.as_str(), poison.attempts, poison.sequence),
        ("poison", 3, Some(2)),
        "{poison:?}"
    );
    assert!(
        poison.error.starts_with("gave up after 3 attempts") && poison.error.contains("lock"),
        "{poison:?}"
    );
    assert_eq!(
        (parked.reason.as_str(), parked.sequence),
        ("parked", Some(3))
    );
    assert_eq!(
        retry_state(&pool, "SKU-HELD").await,
        (false, 0, Some(poison.id))
    );
    lock.rollback().await.expect("release the lock");

    // Only the letter that parks the aggregate is answered; bad answers change nothing.
    assert!(matches!(
        operator::retry(&pool, parked.id, "ops@example.com").await,
        Err(OperatorError::HeldBehind { parked_by, .. }) if parked_by == poison.id
    ));
    assert!(matches!(
        operator::retry(&pool, poison.id, "  ").await,
        Err(OperatorError::Invalid(_))
    ));
    assert!(matches!(
        operator::retry(&pool, i64::MAX, "ops@example.com").await,
        Err(OperatorError::NotFound(_))
    ));
    assert_eq!(stock(&pool, "SKU-HELD").await, Some((10, 1)));

    let resolved = operator::retry(&pool, poison.id, "ops@example.com")
        .await
        .expect("retry");
    assert_eq!(resolved.dead_letters, [poison.id, parked.id]);
    assert_eq!(resolved.requeued, 2);
    eventually("the retried events applied in order", || async {
        stock(&pool, "SKU-HELD").await == Some((22, 3))
    })
    .await;
    for letter in letters(&pool).await {
        assert_eq!(
            (letter.resolution.as_deref(), letter.resolved_by.as_deref()),
            (Some("retried"), Some("ops@example.com")),
            "{letter:?}"
        );
    }
    assert!(matches!(
        operator::retry(&pool, poison.id, "ops@example.com").await,
        Err(OperatorError::AlreadyResolved { .. })
    ));
    eventually("SKU-HELD flows again", || async {
        retry_state(&pool, "SKU-HELD").await == (false, 0, None)
    })
    .await;
    projector.stop().await;
    crate::support::assert_checkpoints_match_event_store(&harness, Projection::Stock).await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_an_undecodable_message_releases_the_events_parked_behind_it() {
    let harness = Harness::start(1).await;
    let pool = harness.read_model.clone();
    let projector = start_with_two_skus(&harness, &settings(&harness, 3)).await;
    harness.wait_for_empty_outbox().await;
    producer(&harness.kafka.brokers)
        .send(
            FutureRecord::to(&harness.topic(AggregateKind::Inventory))
                .key("SKU-HELD")
                .payload(b"not avro"),
            Duration::from_secs(15),
        )
        .await
        .map_err(|(error, _)| error)
        .expect("poison delivered");
    harness.wait_for_empty_outbox().await;
    harness.add_stock("SKU-HELD", 5).await;
    eventually(
        "the poison and the event behind it dead-lettered",
        || async { letters(&pool).await.len() == 2 },
    )
    .await;
    let found = letters(&pool).await;
    let (poison, parked) = (&found[0], &found[1]);
    assert_eq!((poison.reason.as_str(), poison.sequence), ("poison", None));
    assert_eq!(
        (parked.reason.as_str(), parked.sequence),
        ("parked", Some(2))
    );

    assert!(matches!(
        operator::skip(&pool, poison.id, "ops@example.com", " ").await,
        Err(OperatorError::Invalid(_))
    ));
    let resolved = operator::skip(
        &pool,
        poison.id,
        "ops@example.com",
        "garbage from a test producer",
    )
    .await
    .expect("skip");
    assert_eq!((resolved.dead_letters.len(), resolved.requeued), (2, 1));
    eventually(
        "the event parked behind the skipped message applied",
        || async { stock(&pool, "SKU-HELD").await == Some((15, 2)) },
    )
    .await;
    let found = letters(&pool).await;
    assert_eq!(
        (
            found[0].resolution.as_deref(),
            found[0].resolution_reason.as_deref()
        ),
        (Some("skipped"), Some("garbage from a test producer"))
    );
    assert_eq!(found[1].resolution.as_deref(), Some("retried"));
    projector.stop().await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_while_aggregates_are_held_loses_nothing_and_applies_nothing_twice() {
    let harness = Harness::start(1).await;
    let pool = harness.read_model.clone();
    harness.add_stock("SKU-HELD", 10).await;
    harness.add_stock("SKU-FREE", 1).await;
    let group_prefix = test_support::unique_name("proj-kill");
    let mut process = spawn_projector(&harness, &group_prefix, None, QUICK_RETRIES);
    eventually(
        "the first events applied by the projector process",
        || async {
            stock(&pool, "SKU-HELD").await.is_some() && stock(&pool, "SKU-FREE").await.is_some()
        },
    )
    .await;

    let lock = lock_row(&pool, "SKU-HELD").await;
    harness.add_stock("SKU-HELD", 5).await;
    harness.add_stock("SKU-HELD", 7).await;
    harness.add_stock("SKU-FREE", 2).await;
    eventually("SKU-HELD's events held while SKU-FREE flows", || async {
        held_events(&pool, Projection::Stock).await.get("SKU-HELD") == Some(&2)
            && stock(&pool, "SKU-FREE").await == Some((3, 2))
    })
    .await;
    process.kill();
    lock.rollback().await.expect("release the lock");

    harness.add_stock("SKU-HELD", 100).await;
    harness.add_stock("SKU-FREE", 4).await;
    let process = spawn_projector(&harness, &group_prefix, None, QUICK_RETRIES);
    eventually("every event applied once after the restart", || async {
        stock(&pool, "SKU-HELD").await == Some((122, 4))
            && stock(&pool, "SKU-FREE").await == Some((7, 3))
    })
    .await;
    assert!(held_events(&pool, Projection::Stock).await.is_empty());
    assert!(letters(&pool).await.is_empty());
    crate::support::assert_checkpoints_match_event_store(&harness, Projection::Stock).await;
    drop(process);
    harness.finish().await;
}
