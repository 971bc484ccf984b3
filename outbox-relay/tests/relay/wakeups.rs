//! An idle relay waits on the doorbell (`event_store::doorbell`): the command API rings it
//! after each commit, and the relay polls at once instead of at its next poll. A writer that
//! does not ring is still published, at the next poll.

use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use sqlx::PgPool;
use test_support::Stack;

use crate::helpers::{TestApp, TestOptions, spawn_app_with};
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

/// A command API built with `options`, a relay of its own polling an empty outbox every
/// `poll_interval`, and a consumer of the relay's topics.
struct Wired {
    app: TestApp,
    relay: RunningRelay,
    consumer: StreamConsumer,
}

impl Wired {
    async fn start(options: TestOptions, poll_interval: Duration) -> Self {
        let stack = Stack::from_env();
        let app = spawn_app_with(options).await;
        let prefix = test_prefix();
        let mut config = relay_config(&app, &stack.kafka_brokers, &prefix);
        config.poll_interval = poll_interval;
        let relay = RunningRelay::start(config).await;
        let consumer = subscribe(&stack.kafka_brokers, &prefix);
        Self {
            app,
            relay,
            consumer,
        }
    }

    /// Creates an order and returns the event type of the first message that arrives.
    async fn publish_an_order(&self) -> String {
        self.app.create_order().await;
        let messages =
            receive_until(&self.consumer, Duration::from_secs(30), |m| !m.is_empty()).await;
        messages[0].header("event_type").to_owned()
    }

    async fn finish(self) {
        self.relay.stop().await;
        self.app.finish().await;
    }
}

/// The relay's poll interval here is far longer than the test waits for a message, so the
/// messages can only arrive because the command API rang.
#[tokio::test]
async fn an_idle_relay_publishes_at_once_when_the_command_api_rings() {
    let wired = Wired::start(TestOptions::default(), Duration::from_secs(600)).await;
    for round in 1..=3_usize {
        wait_until_listening(&wired.app.db).await;
        assert_eq!(
            wired.publish_an_order().await,
            "OrderCreated",
            "round {round}"
        );
    }
    wired.finish().await;
}

/// The listener's backend is terminated (a failover, an idle-connection reaper): the relay
/// listens again, and a ring after that still wakes it, though its poll interval is long.
#[tokio::test]
async fn a_relay_whose_listener_was_cut_listens_again() {
    let wired = Wired::start(TestOptions::default(), Duration::from_secs(600)).await;
    wait_until_listening(&wired.app.db).await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(LISTENER)
    .fetch_all(&wired.app.db)
    .await
    .expect("terminate the listener");
    assert_eq!(terminated, [true]);
    // A new listener within the pause after a failure (5 s), then the ring wakes the relay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_until_listening(&wired.app.db).await;
    assert_eq!(wired.publish_an_order().await, "OrderCreated");
    wired.finish().await;
}

/// With the doorbell off, nothing rings: the relay finds the event at its next poll.
#[tokio::test]
async fn an_event_nobody_rings_for_is_published_at_the_next_poll() {
    let mut options = TestOptions::default();
    options.settings.event_store.doorbell_spacing = None;
    let wired = Wired::start(options, Duration::from_millis(300)).await;
    wait_until_listening(&wired.app.db).await;
    assert_eq!(wired.publish_an_order().await, "OrderCreated");
    wired.finish().await;
}
