//! An idle relay waits on the doorbell (`event_store::doorbell`): the command API rings it
//! after each commit, and the relay polls at once instead of at its next poll. A writer that
//! does not ring is still published, at the next poll.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use test_support::Stack;

use crate::helpers::{TestOptions, spawn_app_with};
use crate::support::{RunningRelay, receive_until, relay_config, subscribe, test_prefix};

/// The relay's `application_name` on its listening connection (`outbox-relay/src/wakeups.rs`).
const LISTENER: &str = "keel-outbox-relay-wakeups";

/// Waits until the relay's listener is connected and idle, then a little longer, so that
/// the relay has made its poll after `LISTEN` and is in its long wait.
async fn wait_until_listening(db: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1 \
               AND state = 'idle' AND query LIKE 'LISTEN%'",
        )
        .bind(LISTENER)
        .fetch_one(db)
        .await
        .expect("pg_stat_activity");
        if listening == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The relay's poll interval here is far longer than the test waits for a message, so the
/// messages can only arrive because the command API rang.
#[tokio::test]
async fn an_idle_relay_publishes_at_once_when_the_command_api_rings() {
    let stack = Stack::from_env();
    let app = spawn_app_with(TestOptions::default()).await;
    let prefix = test_prefix();
    let mut config = relay_config(&app, &stack.kafka_brokers, &prefix);
    config.poll_interval = Duration::from_secs(600);
    let relay = RunningRelay::start(config).await;
    let consumer = subscribe(&stack.kafka_brokers, &prefix);

    for round in 1..=3_usize {
        wait_until_listening(&app.db).await;
        app.create_order().await;
        let messages = receive_until(&consumer, Duration::from_secs(30), |m| !m.is_empty()).await;
        assert_eq!(
            messages[0].header("event_type"),
            "OrderCreated",
            "round {round}"
        );
    }

    relay.stop().await;
    app.finish().await;
}

/// The listener's backend is terminated (a failover, an idle-connection reaper): the relay
/// listens again, and a ring after that still wakes it, though its poll interval is long.
#[tokio::test]
async fn a_relay_whose_listener_was_cut_listens_again() {
    let stack = Stack::from_env();
    let app = spawn_app_with(TestOptions::default()).await;
    let prefix = test_prefix();
    let mut config = relay_config(&app, &stack.kafka_brokers, &prefix);
    config.poll_interval = Duration::from_secs(600);
    let relay = RunningRelay::start(config).await;
    let consumer = subscribe(&stack.kafka_brokers, &prefix);

    wait_until_listening(&app.db).await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(LISTENER)
    .fetch_all(&app.db)
    .await
    .expect("terminate the listener");
    assert_eq!(terminated, [true]);
    // A new listener within the pause after a failure (5 s), then the ring wakes the relay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_until_listening(&app.db).await;
    app.create_order().await;
    let messages = receive_until(&consumer, Duration::from_secs(30), |m| !m.is_empty()).await;
    assert_eq!(messages[0].header("event_type"), "OrderCreated");

    relay.stop().await;
    app.finish().await;
}

/// With the doorbell off, nothing rings: the relay finds the event at its next poll.
#[tokio::test]
async fn an_event_nobody_rings_for_is_published_at_the_next_poll() {
    let stack = Stack::from_env();
    let mut options = TestOptions::default();
    options.settings.event_store.doorbell_spacing = None;
    let app = spawn_app_with(options).await;
    let prefix = test_prefix();
    let mut config = relay_config(&app, &stack.kafka_brokers, &prefix);
    config.poll_interval = Duration::from_millis(300);
    let relay = RunningRelay::start(config).await;
    let consumer = subscribe(&stack.kafka_brokers, &prefix);

    wait_until_listening(&app.db).await;
    app.create_order().await;
    let messages = receive_until(&consumer, Duration::from_secs(30), |m| !m.is_empty()).await;
    assert_eq!(messages[0].header("event_type"), "OrderCreated");

    relay.stop().await;
    app.finish().await;
}
