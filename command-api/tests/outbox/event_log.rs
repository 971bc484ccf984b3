//! Reading the store in global order never skips an event whose transaction commits late,
//! where following the identity column alone does.

use std::collections::BTreeSet;
use std::time::Duration;

use command_api::event_log::{LogPosition, read_after};
use sqlx::{PgPool, Postgres, Transaction};

use crate::helpers::spawn_app;

async fn append(transaction: &mut Transaction<'_, Postgres>, aggregate_id: &str, sequence: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('order', $1, $2, 'OrderCreated', '1', '{}', '{}')",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .execute(&mut **transaction)
    .await
    .expect("append");
}

async fn positions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT global_position FROM events ORDER BY global_position")
        .fetch_all(pool)
        .await
        .expect("positions")
}

#[tokio::test]
async fn an_event_that_commits_late_is_read_in_its_commit_order_not_skipped() {
    let app = spawn_app().await;

    let mut slow = app.db.begin().await.expect("begin");
    append(&mut slow, "late", 1).await;
    let mut fast = app.db.begin().await.expect("begin");
    append(&mut fast, "early", 1).await;
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
    let app = spawn_app().await;

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let pool = app.db.clone();
            tokio::spawn(async move {
                for sequence in 1..=EVENTS_PER_WRITER {
                    let mut transaction = pool.begin().await.expect("begin");
                    append(&mut transaction, &format!("w{writer}"), sequence).await;
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
