//! The broker goes away mid-stream: commands keep succeeding, the backlog is kept, and it
//! drains once the broker is back.

use std::collections::BTreeMap;
use std::time::Duration;

use test_support::TestBroker;

use crate::helpers::spawn_app;
use crate::support::{
    RunningRelay, by_key, outbox_rows, receive_until, relay_config, stored_event_ids, subscribe,
    test_prefix, wait_for_empty_outbox,
};

#[tokio::test]
async fn with_the_broker_down_commands_succeed_and_the_backlog_drains_when_it_returns() {
    let mut broker = TestBroker::start().await;
    let app = spawn_app().await;
    let prefix = test_prefix();
    let relay = RunningRelay::start(relay_config(&app, &broker.address(), &prefix)).await;

    let before = app.order_with_line("SKU-B").await;
    let consumer = subscribe(&broker.address(), &prefix);
    let early = receive_until(&consumer, Duration::from_secs(30), |m| m.len() >= 2).await;
    assert!(early.iter().all(|m| m.key == before));
    wait_for_empty_outbox(&app, Duration::from_secs(10)).await;
    drop(consumer);

    broker.stop();
    let mut during = Vec::new();
    for _ in 0..3 {
        // Commands do not depend on the broker.
        during.push(app.order_with_line("SKU-D").await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outbox_rows(&app).await,
        6,
        "the events written during the outage wait in the outbox"
    );

    // The broker comes back after a crash with what it had acknowledged; the relay
    // reconnects and publishes the whole backlog.
    broker.resume().await;
    let consumer = subscribe(&broker.address(), &prefix);
    let messages = receive_until(&consumer, Duration::from_secs(60), |m| {
        let keys = by_key(m);
        during
            .iter()
            .all(|order| keys.get(order).is_some_and(|received| received.len() >= 2))
    })
    .await;
    wait_for_empty_outbox(&app, Duration::from_secs(30)).await;

    let stored = stored_event_ids(&app).await;
    for order in &during {
        let received = &by_key(&messages)[order];
        let sequences: Vec<i64> = received.iter().map(|m| m.sequence()).collect();
        assert_eq!(sequences[..2], [1, 2], "{order}: in order, from the start");
        let ids: BTreeMap<i64, &str> = received
            .iter()
            .map(|m| (m.sequence(), m.header("event_id")))
            .collect();
        for (sequence, event_id) in ids {
            assert_eq!(event_id, stored[&(order.clone(), sequence)]);
        }
    }

    relay.stop().await;
    app.finish().await;
}
