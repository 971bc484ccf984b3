//! Outbox shard leases across a relay crash. The dead relay's advisory locks go with its
//! session, but its heartbeat row stays and counts as live for the liveness window (10 s):
//! an instance with a new id takes only its fair share meanwhile. Restarted under its name
//! (`KEEL_RELAY_INSTANCE_ID`), a relay heartbeats in its own row and takes every shard back
//! at once.

use std::time::{Duration, Instant};

use outbox_relay::{OUTBOX_SHARDS, ShardLeases, relay_id_for};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

/// Well inside the liveness window: what a restart gets within it is what it gets at once.
const WITHIN: Duration = Duration::from_secs(4);

async fn session(app: &TestApp) -> PgConnection {
    app.db.acquire().await.expect("a database session").detach()
}

/// Rebalances on `connection` until `leases` holds `wanted` shards or [`WITHIN`] has
/// passed (a dead session's locks may take a moment to go); returns how many it holds.
async fn settle(leases: &mut ShardLeases, connection: &mut PgConnection, wanted: usize) -> usize {
    let deadline = Instant::now() + WITHIN;
    loop {
        leases.rebalance(connection).await.expect("rebalance");
        let held = leases.held().len();
        if held >= wanted || Instant::now() >= deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_relay_restarted_under_its_name_takes_every_shard_back_at_once() {
    let app = spawn_app().await;
    let all = usize::try_from(OUTBOX_SHARDS).expect("shard count");
    let name = format!("relay-{}", Uuid::new_v4().simple());

    let mut first = session(&app).await;
    let mut leases = ShardLeases::new(relay_id_for(&name));
    assert_eq!(settle(&mut leases, &mut first, all).await, all);
    // A crash: the session ends, the heartbeat row stays.
    first.close().await.expect("session closed");

    let mut second = session(&app).await;
    let mut restarted = ShardLeases::new(relay_id_for(&name));
    assert_eq!(restarted.relay_id(), leases.relay_id());
    assert_eq!(
        settle(&mut restarted, &mut second, all).await,
        all,
        "under its name the restarted relay takes every shard at once"
    );
    second.close().await.expect("session closed");

    // Without the name, the dead instance still counts: half the shards until its
    // heartbeat ages out.
    let mut third = session(&app).await;
    let mut unnamed = ShardLeases::new(Uuid::new_v4());
    assert_eq!(settle(&mut unnamed, &mut third, all).await, all / 2);
}
