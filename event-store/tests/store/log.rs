//! Reading the store in global order never skips an event whose transaction commits late,
//! where following the identity column alone does.

use std::collections::BTreeSet;
use std::time::Duration;

use event_store::log::{self, LogFilter, LogPosition, RecordedEvent};
use sqlx::{PgPool, Postgres, Transaction};

use crate::support::{TestStore, append};

async fn append_order(
    transaction: &mut Transaction<'_, Postgres>,
    aggregate_id: &str,
    sequence: i64,
) {
    append(&mut **transaction, "order", aggregate_id, sequence, "{}").await;
}

async fn read_after(
    db: &PgPool,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    log::read_after(db, after, &LogFilter::default(), limit).await
}

async fn positions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT global_position FROM events ORDER BY global_position")
        .fetch_all(pool)
        .await
        .expect("positions")
}

#[tokio::test]
async fn an_event_that_commits_late_is_read_in_its_commit_order_not_skipped() {
    let app = TestStore::new().await;

    let mut slow = app.db.begin().await.expect("begin");
    append_order(&mut slow, "late", 1).await;
    let mut fast = app.db.begin().await.expect("begin");
    append_order(&mut fast, "early", 1).await;
    fast.commit().await.expect("commit");

    // A follower of the identity column sees position 2 first and would move past 1.
    let visible = positions(&app.db).await;
    assert_eq!(visible.len(), 1);
    assert!(
        visible[0] > 1,
        "the fast transaction got the later position"
    );

    // The reader waits while an older transaction is still open.
    let read = read_after(&app.db, LogPosition::START, 100)
        .await
        .expect("read");
    assert!(
        read.is_empty(),
        "nothing is handed out past an open transaction: {read:?}"
    );

    slow.commit().await.expect("commit");
    // The horizon is server-wide: a transaction of a test running beside this one may hold
    // it back for a moment, so wait (bounded) for both events.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let read = loop {
        let read = read_after(&app.db, LogPosition::START, 100)
            .await
            .expect("read");
        if read.len() >= 2 || std::time::Instant::now() >= deadline {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ids: Vec<&str> = read.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["late", "early"], "both, in transaction order");
    let last = read.last().expect("events").position;
    assert!(read[0].position < last);
    assert!(
        read_after(&app.db, last, 100)
            .await
            .expect("read")
            .is_empty()
    );

    app.finish().await;
}

#[tokio::test]
async fn a_follower_reads_every_event_once_while_transactions_commit_out_of_order() {
    const WRITERS: usize = 12;
    const EVENTS_PER_WRITER: i64 = 25;
    let app = TestStore::new().await;

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let pool = app.db.clone();
            tokio::spawn(async move {
                for sequence in 1..=EVENTS_PER_WRITER {
                    let mut transaction = pool.begin().await.expect("begin");
                    append_order(&mut transaction, &format!("w{writer}"), sequence).await;
                    // Hold some transactions open so that later ones commit first.
                    let pause = (writer as u64 * 7 + sequence as u64 * 3) % 11;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    transaction.commit().await.expect("commit");
                }
            })
        })
        .collect();

    let total = WRITERS * usize::try_from(EVENTS_PER_WRITER).expect("small");
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut cursor = LogPosition::START;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(
            std::time::Instant::now() < deadline,
            "follower stalled at {}",
            seen.len()
        );
        for event in read_after(&app.db, cursor, 7).await.expect("read") {
            assert!(event.position > cursor, "positions only grow");
            cursor = event.position;
            seen.push((event.aggregate_id, event.sequence));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    assert!(
        read_after(&app.db, cursor, 100)
            .await
            .expect("read")
            .is_empty()
    );

    let distinct: BTreeSet<&(String, i64)> = seen.iter().collect();
    assert_eq!(distinct.len(), total, "every event exactly once");
    // Each aggregate's events arrive in sequence order.
    for writer in 0..WRITERS {
        let id = format!("w{writer}");
        let sequences: Vec<i64> = seen
            .iter()
            .filter(|(a, _)| *a == id)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(sequences, (1..=EVENTS_PER_WRITER).collect::<Vec<_>>());
    }

    app.finish().await;
}

#[tokio::test]
async fn a_filtered_read_returns_only_matching_events_in_commit_order_and_count_agrees() {
    let store = TestStore::new().await;
    append(&store.db, "order", "o1", 1, "{}").await;
    append(&store.db, "payment", "p1", 1, "{}").await;
    append(&store.db, "order", "o1", 2, "{}").await;
    append(&store.db, "inventory", "sku-1", 1, "{}").await;

    let orders_and_stock = LogFilter::aggregate_types(["order", "inventory"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let read = loop {
        let read = log::read_after(&store.db, LogPosition::START, &orders_and_stock, 100)
            .await
            .expect("read");
        if read.len() >= 3 || std::time::Instant::now() >= deadline {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let streams: Vec<(&str, i64)> = read
        .iter()
        .map(|e| (e.aggregate_id.as_str(), e.sequence))
        .collect();
    assert_eq!(streams, [("o1", 1), ("o1", 2), ("sku-1", 1)]);
    assert_eq!(
        log::count(&store.db, &orders_and_stock)
            .await
            .expect("count"),
        3
    );

    let by_actor = LogFilter {
        actor: Some("tester".into()),
        ..LogFilter::aggregate_types(["payment"])
    };
    let payments = log::read_after(&store.db, LogPosition::START, &by_actor, 100)
        .await
        .expect("read");
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].aggregate_id, "p1");
    let nobody = LogFilter {
        actor: Some("someone-else".into()),
        ..LogFilter::default()
    };
    assert_eq!(log::count(&store.db, &nobody).await.expect("count"), 0);

    store.finish().await;
}
