//! The global log's horizon waits for transactions that append events, and only for them: a
//! long transaction that appends nothing, in this database or another, does not stall a
//! reader; an open append does, until it ends.

use std::time::{Duration, Instant};

use event_store::append::{NewEvent, StreamAppend, append_batch};
use event_store::log::{self, LogFilter, LogPosition, RecordedEvent};
use sqlx::{PgExecutor, PgPool};
use test_support::ScratchDatabase;

use crate::support::{TestStore, append};

/// Reads from the start until `expected` events are there. A read may come back short for a
/// moment when some transaction on the server ends while it runs (the horizon then counts it
/// like an appender), so this retries; the deadline only turns a stall into a failure.
async fn read_until(db: &PgPool, expected: usize) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = log::read_after(db, LogPosition::START, &LogFilter::default(), 100)
            .await
            .expect("read");
        if read.len() >= expected || Instant::now() >= deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_all(db: &PgPool) -> Vec<RecordedEvent> {
    log::read_after(db, LogPosition::START, &LogFilter::default(), 100)
        .await
        .expect("read")
}

async fn xid<'e>(executor: impl PgExecutor<'e>) -> i64 {
    sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(executor)
        .await
        .expect("xid")
}

/// A write that has nothing to do with events (it takes an xid, as any write does).
async fn unrelated_write<'e>(executor: impl PgExecutor<'e>) {
    sqlx::query(
        "INSERT INTO outbox_relays (relay_id, last_seen) VALUES (gen_random_uuid(), now())",
    )
    .execute(executor)
    .await
    .expect("unrelated write");
}

#[tokio::test]
async fn long_transactions_that_append_nothing_here_do_not_stall_readers() {
    let store = TestStore::new().await;
    let elsewhere = ScratchDatabase::create("keel_store_other")
        .await
        .expect("scratch database");
    let other_db = elsewhere.pool(2).await.expect("pool");
    event_store::migrate(&other_db).await.expect("migrations");

    // Another database: one transaction that only writes, one that appends to that
    // database's own store. Both stay open for the whole test.
    let mut other_writer = other_db.begin().await.expect("begin");
    unrelated_write(&mut *other_writer).await;
    let other_writer_xid = xid(&mut *other_writer).await;
    let mut other_appender = other_db.begin().await.expect("begin");
    append(&mut *other_appender, "order", "elsewhere", 1, "{}").await;
    // This database: a transaction that writes, but not events.
    let mut local_writer = store.db.begin().await.expect("begin");
    unrelated_write(&mut *local_writer).await;
    let local_writer_xid = xid(&mut *local_writer).await;

    append(&store.db, "order", "o1", 1, "{}").await;

    // The oldest running transaction is one of them: a reader bounded by it (the previous
    // horizon, `pg_snapshot_xmin`) would return nothing until they end.
    let xmin: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&store.db)
            .await
            .expect("xmin");
    assert!(xmin <= other_writer_xid.min(local_writer_xid));

    let read = read_until(&store.db, 1).await;
    let streams: Vec<(&str, i64)> = read
        .iter()
        .map(|e| (e.aggregate_id.as_str(), e.sequence))
        .collect();
    assert_eq!(streams, [("o1", 1)], "read while the others are still open");
    assert!(read[0].position.transaction_id > other_writer_xid.max(local_writer_xid));

    other_writer.rollback().await.expect("rollback");
    other_appender.rollback().await.expect("rollback");
    local_writer.rollback().await.expect("rollback");
    other_db.close().await;
    elsewhere.drop_database().await;
    store.finish().await;
}

#[tokio::test]
async fn an_open_append_holds_readers_back_until_it_ends() {
    let store = TestStore::new().await;
    let mut slow = store.db.begin().await.expect("begin");
    append(&mut *slow, "order", "slow", 1, "{}").await;
    let slow_xid = xid(&mut *slow).await;
    append(&store.db, "order", "fast", 1, "{}").await;

    // Deterministic: the open append is a running appender at every read's snapshot.
    let read = read_all(&store.db).await;
    assert!(
        read.is_empty(),
        "nothing is handed out past an open append: {read:?}"
    );

    slow.commit().await.expect("commit");
    let read = read_until(&store.db, 2).await;
    let ids: Vec<&str> = read.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["slow", "fast"], "both, in transaction order");
    assert_eq!(read[0].position.transaction_id, slow_xid);

    store.finish().await;
}

/// A batch append is an appender like any other: open, it holds readers back, also when one
/// of its commands rolled back to its savepoint.
#[tokio::test]
async fn an_open_batch_holds_readers_back_until_it_commits() {
    let store = TestStore::new().await;
    append(&store.db, "order", "taken", 1, "{}").await;
    let cursor = read_until(&store.db, 1).await[0].position;

    let event = || NewEvent {
        event_type: "Happened".to_owned(),
        event_version: "1".to_owned(),
        payload: serde_json::json!({}),
        metadata: serde_json::json!({"actor": "tester"}),
    };
    let command = |aggregate_id: &str| StreamAppend {
        aggregate_type: "order".to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        after_sequence: 0,
        events: vec![event()],
    };
    let mut batch = store.db.begin().await.expect("begin");
    let outcomes = append_batch(&mut *batch, &[command("taken"), command("batched")])
        .await
        .expect("batch");
    assert!(outcomes[0].is_err() && outcomes[1].is_ok(), "{outcomes:?}");
    append(&store.db, "order", "fast", 1, "{}").await;

    let after = log::read_after(&store.db, cursor, &LogFilter::default(), 100)
        .await
        .expect("read");
    assert!(
        after.is_empty(),
        "nothing is handed out past an open batch: {after:?}"
    );

    batch.commit().await.expect("commit");
    let read = read_until(&store.db, 3).await;
    let ids: Vec<&str> = read.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["taken", "batched", "fast"], "in transaction order");

    store.finish().await;
}

/// A transaction that wrote before it appended had an xid before it was marked as an
/// appender: a reader may have read past that xid meanwhile, so the store refuses the
/// append once a later transaction's events have committed, and otherwise accepts it and
/// holds readers back from then on.
#[tokio::test]
async fn a_transaction_that_wrote_first_appends_only_if_no_later_events_committed() {
    let store = TestStore::new().await;

    let mut late = store.db.begin().await.expect("begin");
    unrelated_write(&mut *late).await;
    append(&store.db, "order", "committed-later", 1, "{}").await;
    let refused = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('order', 'late', 1, 'Happened', '1', '{}', '{}')",
    )
    .execute(&mut *late)
    .await
    .expect_err("the append is refused");
    let code = refused
        .as_database_error()
        .and_then(|error| error.code())
        .map(|code| code.into_owned());
    assert_eq!(code.as_deref(), Some("55000"), "{refused}");
    late.rollback().await.expect("rollback");

    let mut first = store.db.begin().await.expect("begin");
    unrelated_write(&mut *first).await;
    append(&mut *first, "order", "wrote-first", 1, "{}").await;
    append(&store.db, "order", "after", 1, "{}").await;
    let read = read_until(&store.db, 1).await;
    let ids: Vec<&str> = read.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["committed-later"], "held back at the open append");

    first.commit().await.expect("commit");
    let read = read_until(&store.db, 3).await;
    let ids: Vec<&str> = read.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["committed-later", "wrote-first", "after"]);

    store.finish().await;
}
