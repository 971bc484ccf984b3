//! The outbox's doorbell: a ring reaches a listener on its channel as a `NOTIFY`, rings
//! that come while one is on its way fold into one more, and a silent doorbell sends none.

use std::time::Duration;

use event_store::doorbell::{CHANNEL, Doorbell};
use sqlx::postgres::PgListener;

use crate::support::TestStore;

async fn listener(store: &TestStore) -> PgListener {
    let mut listener = PgListener::connect_with(&store.db).await.expect("listener");
    listener.listen(CHANNEL).await.expect("LISTEN");
    listener
}

/// Waits up to `within` for one notification; `None` if none came.
async fn next(listener: &mut PgListener, within: Duration) -> Option<String> {
    tokio::time::timeout(within, listener.recv())
        .await
        .ok()
        .map(|received| received.expect("notification").channel().to_owned())
}

#[tokio::test]
async fn a_ring_reaches_listeners_and_a_burst_folds_into_few() {
    let store = TestStore::new().await;
    let mut listener = listener(&store).await;
    let spacing = Duration::from_millis(200);
    let doorbell = Doorbell::start(&store.db.connect_options(), spacing);

    doorbell.ring();
    assert_eq!(
        next(&mut listener, Duration::from_secs(10))
            .await
            .as_deref(),
        Some(CHANNEL)
    );

    // A burst: the first ring is sent, the rest fold into one more after the spacing.
    for _ in 0..50 {
        doorbell.ring();
    }
    let mut received = 0;
    while next(&mut listener, spacing * 5).await.is_some() {
        received += 1;
    }
    assert!(
        (1..=2).contains(&received),
        "50 rings in a burst gave {received} notifications"
    );

    drop(listener);
    store.finish().await;
}

/// Its connection is cut (a failover, an idle-connection reaper): a ring may be lost, and a
/// later one connects again and arrives.
#[tokio::test]
async fn a_doorbell_whose_connection_was_cut_connects_again() {
    let store = TestStore::new().await;
    let mut listener = listener(&store).await;
    let doorbell = Doorbell::start(&store.db.connect_options(), Duration::from_millis(10));
    doorbell.ring();
    assert!(next(&mut listener, Duration::from_secs(10)).await.is_some());

    // The doorbell's `application_name` (`event-store/src/doorbell.rs`).
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'keel-outbox-doorbell'",
    )
    .fetch_all(&store.db)
    .await
    .expect("terminate the doorbell's backend");
    assert_eq!(terminated, [true]);

    // The first ring finds the connection gone (and waits a second before connecting).
    let mut heard = false;
    for _ in 0..10 {
        doorbell.ring();
        if next(&mut listener, Duration::from_secs(2)).await.is_some() {
            heard = true;
            break;
        }
    }
    assert!(heard, "no ring arrived after the connection was cut");

    drop(listener);
    store.finish().await;
}

#[tokio::test]
async fn a_silent_doorbell_sends_nothing() {
    let store = TestStore::new().await;
    let mut listener = listener(&store).await;
    Doorbell::silent().ring();
    assert_eq!(next(&mut listener, Duration::from_secs(1)).await, None);
    drop(listener);
    store.finish().await;
}
