//! A projector process killed with SIGKILL under load and started again under the same
//! instance name (static group membership) takes its partitions back at once: the read
//! model catches up long before the dead member's session would have expired, where a
//! dynamic member's replacement would wait out that session first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use projections::Projection;

use crate::support::{
    Harness, assert_checkpoints_match_event_store, eventually, spawn_projector, stock,
    stock_events_applied,
};

/// Far longer than a static member's rejoin takes.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
const SKUS: usize = 8;
const COMMANDS: usize = 240;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_under_load_takes_its_partitions_back_at_once_when_restarted() {
    let harness = Harness::start(2).await;
    let pool = harness.read_model.clone();
    let group_prefix = test_support::unique_name("proj-crash");
    let instance = test_support::unique_name("instance");
    let session = SESSION_TIMEOUT.as_millis().to_string();
    let env = [("KEEL_KAFKA_SESSION_TIMEOUT_MS", session.as_str())];
    let mut process = spawn_projector(&harness, &group_prefix, Some(&instance), &env);

    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let load = async {
        for n in 0..COMMANDS {
            let sku = format!("SKU-{}", n % SKUS);
            harness.add_stock(&sku, 1).await;
            *expected.entry(sku).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    };
    let crash = async {
        eventually("the projector process applies the first events", || async {
            stock_events_applied(&pool).await >= 40
        })
        .await;
        process.kill();
        let restarted = spawn_projector(&harness, &group_prefix, Some(&instance), &env);
        (restarted, Instant::now())
    };
    let ((), (restarted, restarted_at)) = tokio::join!(load, crash);

    eventually("every event applied after the restart", || async {
        let mut all = true;
        for (sku, on_hand) in &expected {
            all &= stock(&pool, sku).await.map(|(n, _)| n) == Some(*on_hand);
        }
        all
    })
    .await;
    let caught_up = restarted_at.elapsed();
    assert!(
        caught_up < SESSION_TIMEOUT,
        "caught up {caught_up:?} after the restart: the restarted instance waited for the \
         dead member's session ({SESSION_TIMEOUT:?}) instead of taking its partitions back"
    );
    assert_checkpoints_match_event_store(&harness, Projection::Stock).await;
    drop(restarted);
    harness.finish().await;
}
