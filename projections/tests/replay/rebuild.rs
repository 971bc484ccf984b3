//! Rebuilds from the event store while the live projector runs and writers continue.

use std::collections::BTreeMap;

use projections::Projection;
use projections::replay::shadow::{self, shadow_schema};
use projections::replay::source::EventStore;
use projections::replay::status::projection_status;
use projections::replay::{self, Fold, Phase, RebuildOptions, RebuildProgress};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    assert_same, count, dump, reference, stored_event_types, wait_until_caught_up, write_round,
    write_until, write_varied_round,
};
use crate::support::{Harness, test_keyring};

fn options(batch_size: usize) -> RebuildOptions {
    RebuildOptions {
        batch_size,
        workers: 2,
        keep_old: false,
        restart: false,
        fold: Fold::SetBased,
    }
}

#[tokio::test]
async fn a_rebuild_during_writes_ends_identical_to_a_live_build() {
    let harness = Harness::start(2).await;
    let settings = harness.projector_settings(20);
    let live = harness.start_projector(Projection::Orders, &settings).await;
    for round in 0..12 {
        write_round(&harness, round).await;
    }

    let store = EventStore::new(harness.event_store.clone());
    let writers_stop = CancellationToken::new();
    let (progress, updates) = watch::channel(RebuildProgress::default());
    let options = RebuildOptions {
        keep_old: true,
        ..options(4)
    };
    let (next_round, report) = tokio::join!(write_until(&harness, 12, 3, &writers_stop), async {
        let report = replay::rebuild_from_store(
            Projection::Orders,
            &harness.read_model,
            &store,
            &options,
            &CancellationToken::new(),
            &progress,
        )
        .await;
        writers_stop.cancel();
        report
    });
    let report = report.expect("rebuild succeeds");
    assert!(report.swapped, "{report:?}");
    assert!(!report.resumed);
    assert!(report.events_read > 0);
    assert_eq!(updates.borrow().phase, Phase::Done);
    let old = report.old_schema.clone().expect("old tables kept");
    assert!(
        !shadow::exists(&harness.read_model, Projection::Orders)
            .await
            .unwrap(),
        "the shadow schema is gone after the swap"
    );
    let kept: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{old}\".order_view"))
        .fetch_one(&harness.read_model)
        .await
        .expect("old tables are kept");
    assert!(kept > 0);

    // Writers go on after the swap; the live projector takes over from Kafka.
    for round in next_round..next_round + 3 {
        write_round(&harness, round).await;
    }
    wait_until_caught_up(&harness, &harness.read_model, Projection::Orders).await;
    let rebuilt = dump(&harness.read_model, Projection::Orders).await;
    assert_same(&rebuilt, &reference(&harness, Projection::Orders).await);
    assert!(count(&harness.read_model, "order_view").await >= 15);
    live.stop().await;
    harness.finish().await;
}

#[tokio::test]
async fn an_interrupted_rebuild_resumes_and_ends_identical() {
    let harness = Harness::start(2).await;
    let settings = harness.projector_settings(20);
    let live = harness.start_projector(Projection::Stock, &settings).await;
    let payments = harness
        .start_projector(Projection::Payments, &settings)
        .await;
    for round in 0..10 {
        write_round(&harness, round).await;
    }
    let store = EventStore::new(harness.event_store.clone());

    // Stop after a few batches.
    let stop = CancellationToken::new();
    let (progress, mut updates) = watch::channel(RebuildProgress::default());
    let small_batches = options(3);
    let interrupted = tokio::join!(
        replay::rebuild_from_store(
            Projection::Payments,
            &harness.read_model,
            &store,
            &small_batches,
            &stop,
            &progress,
        ),
        async {
            updates
                .wait_for(|p| p.events_read >= 9)
                .await
                .expect("progress reported");
            stop.cancel();
        }
    )
    .0
    .expect("interrupted rebuild ends cleanly");
    assert!(!interrupted.swapped, "{interrupted:?}");
    assert!(interrupted.events_read >= 9);
    assert_eq!(updates.borrow().phase, Phase::Interrupted);
    let status = projection_status(&harness.read_model, &store, Projection::Payments)
        .await
        .expect("status");
    let unfinished = status.rebuild.expect("the unfinished rebuild shows");
    assert_eq!(unfinished.schema, shadow_schema(Projection::Payments));
    assert!(!unfinished.running);
    assert_eq!(unfinished.events_read, interrupted.events_read);
    assert_eq!(unfinished.position, interrupted.position);

    // More writes, then the same command again: it resumes where it stopped.
    for round in 10..14 {
        write_round(&harness, round).await;
    }
    // With the live model current, every stored event is read or taken by sequence.
    wait_until_caught_up(&harness, &harness.read_model, Projection::Payments).await;
    let (progress, _updates) = watch::channel(RebuildProgress::default());
    let resumed = replay::rebuild_from_store(
        Projection::Payments,
        &harness.read_model,
        &store,
        &options(3),
        &CancellationToken::new(),
        &progress,
    )
    .await
    .expect("resumed rebuild succeeds");
    assert!(resumed.resumed && resumed.swapped, "{resumed:?}");
    let stored = store.count(Projection::Payments).await.expect("count");
    // Events of transactions still running when the swap began are read later, by
    // sequence, if the live model already holds them (else Kafka brings them).
    assert!(interrupted.events_read + resumed.events_read <= stored);
    assert_eq!(
        interrupted.events_applied + resumed.events_applied,
        stored,
        "each stored event is applied once over the two runs"
    );
    assert_eq!(resumed.old_schema, None);

    wait_until_caught_up(&harness, &harness.read_model, Projection::Payments).await;
    let rebuilt = dump(&harness.read_model, Projection::Payments).await;
    assert_same(&rebuilt, &reference(&harness, Projection::Payments).await);
    // The other projections were not touched.
    wait_until_caught_up(&harness, &harness.read_model, Projection::Stock).await;
    assert_same(
        &dump(&harness.read_model, Projection::Stock).await,
        &reference(&harness, Projection::Stock).await,
    );
    live.stop().await;
    payments.stop().await;
    harness.finish().await;
}

/// Events that commit while an older transaction is still open are above the store's read
/// horizon: the rebuild cannot read them in commit order yet, but the live projector has
/// already applied them from Kafka. The swap must take them by sequence, or Kafka (whose
/// offsets are past them) would never bring them again.
#[tokio::test]
async fn the_swap_hands_over_without_losing_or_doubling_an_event() {
    let harness = Harness::start(2).await;
    let settings = harness.projector_settings(20);
    let mut live = harness.start_projector(Projection::Stock, &settings).await;
    for round in 0..6 {
        write_round(&harness, round).await;
    }
    wait_until_caught_up(&harness, &harness.read_model, Projection::Stock).await;

    // Hold the horizon back, then write more: those commits stay invisible to commit-order
    // readers until the holder ends.
    let mut holder = PgConnection::connect_with(&harness.event_store.connect_options())
        .await
        .expect("connect");
    holder.execute("BEGIN").await.expect("begin");
    holder
        .execute("SELECT pg_current_xact_id()")
        .await
        .expect("take a transaction id");
    for round in 6..10 {
        write_round(&harness, round).await;
    }
    wait_until_caught_up(&harness, &harness.read_model, Projection::Stock).await;
    let applied_before = live.progress().applied;

    let store = EventStore::new(harness.event_store.clone());
    let (progress, _updates) = watch::channel(RebuildProgress::default());
    let report = replay::rebuild_from_store(
        Projection::Stock,
        &harness.read_model,
        &store,
        &options(5),
        &CancellationToken::new(),
        &progress,
    )
    .await
    .expect("rebuild succeeds");
    assert!(report.swapped);
    assert_eq!(
        report.advanced_at_swap, 0,
        "the live model was current: the new tables hold exactly as much"
    );
    assert_same(
        &dump(&harness.read_model, Projection::Stock).await,
        &reference(&harness, Projection::Stock).await,
    );

    // Writers continue after the swap; Kafka brings the new events to the new tables.
    for round in 10..14 {
        write_round(&harness, round).await;
    }
    holder.execute("ROLLBACK").await.expect("rollback");
    holder.close().await.ok();
    wait_until_caught_up(&harness, &harness.read_model, Projection::Stock).await;
    let after = live
        .wait_for("events after the swap applied", |p| {
            p.applied > applied_before
        })
        .await;
    assert_eq!(after.gaps, 0, "no event was applied across a gap");
    assert_same(
        &dump(&harness.read_model, Projection::Stock).await,
        &reference(&harness, Projection::Stock).await,
    );
    live.stop().await;
    harness.finish().await;
}

#[tokio::test]
async fn a_rebuild_from_kafka_resets_the_group_and_ends_identical() {
    let harness = Harness::start(2).await;
    let settings = harness.projector_settings(20);
    let live = harness.start_projector(Projection::Stock, &settings).await;
    for round in 0..6 {
        write_round(&harness, round).await;
    }
    wait_until_caught_up(&harness, &harness.read_model, Projection::Stock).await;
    let store = EventStore::new(harness.event_store.clone());
    let stored = store.count(Projection::Stock).await.expect("count");
    live.stop().await;

    let report = projections::replay::kafka::rebuild_from_kafka(
        Projection::Stock,
        &harness.read_model,
        &harness.kafka,
        &settings,
        &CancellationToken::new(),
    )
    .await
    .expect("rebuild from Kafka succeeds");
    assert!(report.finished && !report.resumed, "{report}");
    assert_eq!(report.applied, stored, "{report}");
    assert!(
        !shadow::exists(&harness.read_model, Projection::Stock)
            .await
            .unwrap()
    );
    assert_same(
        &dump(&harness.read_model, Projection::Stock).await,
        &reference(&harness, Projection::Stock).await,
    );
    harness.finish().await;
}

/// A projection's set-based fold must end exactly where the live apply code
/// ends, for every event kind they fold: interrupted halfway and resumed, against the live
/// projector's build of the same events, and the same again event by event. Returns the
/// rebuilt tables.
async fn assert_folded_rebuild_ends_identical(
    projection: Projection,
    expected_types: &[&str],
) -> BTreeMap<String, String> {
    let harness = Harness::start(2).await;
    let settings = harness.projector_settings(20);
    let live = harness.start_projector(projection, &settings).await;
    for round in 0..12 {
        write_varied_round(&harness, round).await;
    }
    let types = stored_event_types(&harness, projection).await;
    for expected in expected_types {
        assert!(
            types.contains(*expected),
            "the writer made no {expected}: {types:?}"
        );
    }
    wait_until_caught_up(&harness, &harness.read_model, projection).await;
    // Nothing is written from here on: the live build is the reference. (A reference built
    // in a database of its own could not open personal data: the keys live here.)
    let live_build = dump(&harness.read_model, projection).await;
    let store = EventStore::new(harness.event_store.clone()).with_keyring(Some(test_keyring()));

    let stop = CancellationToken::new();
    let (progress, mut updates) = watch::channel(RebuildProgress::default());
    let small_batches = options(4);
    let interrupted = tokio::join!(
        replay::rebuild_from_store(
            projection,
            &harness.read_model,
            &store,
            &small_batches,
            &stop,
            &progress,
        ),
        async {
            updates
                .wait_for(|p| p.events_read >= 8)
                .await
                .expect("progress reported");
            stop.cancel();
        }
    )
    .0
    .expect("interrupted rebuild ends cleanly");
    assert!(!interrupted.swapped, "{interrupted:?}");
    let (progress, _updates) = watch::channel(RebuildProgress::default());
    let folded = replay::rebuild_from_store(
        projection,
        &harness.read_model,
        &store,
        &options(4),
        &CancellationToken::new(),
        &progress,
    )
    .await
    .expect("resumed rebuild succeeds");
    assert!(folded.resumed && folded.swapped, "{folded:?}");
    assert_eq!(
        interrupted.events_applied + folded.events_applied,
        store.count(projection).await.expect("count"),
        "each stored event is applied once over the two runs"
    );
    let after_fold = dump(&harness.read_model, projection).await;
    assert_same(&after_fold, &live_build);

    let per_event = RebuildOptions {
        fold: Fold::PerEvent,
        ..options(4)
    };
    let (progress, _updates) = watch::channel(RebuildProgress::default());
    let report = replay::rebuild_from_store(
        projection,
        &harness.read_model,
        &store,
        &per_event,
        &CancellationToken::new(),
        &progress,
    )
    .await
    .expect("per-event rebuild succeeds");
    assert!(report.swapped);
    assert_same(&dump(&harness.read_model, projection).await, &after_fold);
    live.stop().await;
    harness.finish().await;
    after_fold
}

/// Stock rows continue across batches and workers: received, adjusted, reserved, then
/// released or committed.
#[tokio::test]
async fn a_folded_stock_rebuild_ends_identical_to_one_applied_event_by_event() {
    let rebuilt = assert_folded_rebuild_ends_identical(
        Projection::Stock,
        &[
            "StockAdded",
            "StockAdjusted",
            "StockReserved",
            "ReservationReleased",
            "ReservationCommitted",
        ],
    )
    .await;
    assert!(rebuilt["stock_levels"].contains("SKU-V"), "{rebuilt:?}");
}

#[tokio::test]
async fn a_folded_payments_rebuild_ends_identical_to_one_applied_event_by_event() {
    let rebuilt = assert_folded_rebuild_ends_identical(
        Projection::Payments,
        &[
            "PaymentAuthorized",
            "PaymentDeclined",
            "PaymentCaptured",
            "PaymentVoided",
            "PaymentRefunded",
        ],
    )
    .await;
    // Two refunds of one payment, in order (with batches of 4, those of round 9 land in
    // different slices: the second is appended to the stored array).
    assert!(
        rebuilt["payments"].contains(r#""refunds":[{"#) && rebuilt["payments"].contains("}, {"),
        "{}",
        rebuilt["payments"]
    );
}

#[tokio::test]
async fn a_folded_orders_rebuild_ends_identical_to_one_applied_event_by_event() {
    let rebuilt = assert_folded_rebuild_ends_identical(
        Projection::Orders,
        &[
            "OrderCreated",
            "OrderLineAdded",
            "OrderLineQuantityChanged",
            "OrderLineRemoved",
            "OrderPlaced",
            "OrderConfirmed",
            "OrderCancelled",
            "OrderShipped",
            "OrderDelivered",
            "StockAdded",
            "StockAdjusted",
            "StockReserved",
            "ReservationReleased",
            "ReservationCommitted",
            "PaymentAuthorized",
            "PaymentDeclined",
            "PaymentCaptured",
            "PaymentVoided",
            "PaymentRefunded",
            "CustomerForgotten",
        ],
    )
    .await;
    // Opened details, and details of a forgotten customer.
    for state in ["present", "erased", "none"] {
        let shown = format!(r#""personal_data":"{state}""#);
        assert!(
            rebuilt["order_view"].contains(&shown),
            "no order shows {state}"
        );
    }
}
