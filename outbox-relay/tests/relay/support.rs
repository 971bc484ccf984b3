//! Relays and consumers wired to one test's database and topics.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use outbox_relay::{OutboxRelay, RelayConfig};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use schemas::AggregateKind;
use test_support::{Stack, unique_name};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::TestApp;

/// Relay settings for one test: its database, a topic prefix of its own, short timeouts.
pub fn relay_config(app: &TestApp, brokers: &str, prefix: &str) -> RelayConfig {
    let stack = Stack::from_env();
    let mut config = RelayConfig::new(
        app.db.connect_options().as_ref().clone(),
        brokers.to_owned(),
        stack.registry_url,
    );
    config.topic_prefix = prefix.to_owned();
    config.topic_partitions = 2;
    config.poll_interval = Duration::from_millis(10);
    config.message_timeout = Duration::from_secs(5);
    config.backlog_report_interval = Duration::from_millis(500);
    config
}

/// A topic prefix no other test uses.
pub fn test_prefix() -> String {
    format!("{}.", unique_name("outbox"))
}

/// A relay running in the background until the returned token is cancelled.
pub struct RunningRelay {
    pub cancel: CancellationToken,
    task: JoinHandle<()>,
    brokers: String,
    topic_prefix: String,
}

impl RunningRelay {
    pub async fn start(config: RelayConfig) -> Self {
        let brokers = config.kafka_brokers.clone();
        let topic_prefix = config.topic_prefix.clone();
        let relay = OutboxRelay::prepare(config)
            .await
            .expect("relay prepares (registry and broker reachable)");
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { relay.run(cancel).await }
        });
        Self {
            cancel,
            task,
            brokers,
            topic_prefix,
        }
    }

    /// Stops the relay and deletes the topics of its prefix: the test is over.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("relay stops in time")
            .expect("relay task");
        test_support::delete_topics_with_prefix(&self.brokers, &self.topic_prefix)
            .await
            .expect("delete the test's topics");
    }
}

/// One message as a test looks at it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing on {self:?}"))
    }

    pub fn sequence(&self) -> i64 {
        self.header("sequence").parse().expect("numeric sequence")
    }
}

fn received(message: &OwnedMessage) -> Received {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8(h.value.unwrap_or_default().to_vec())
                            .expect("UTF-8 header"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Received {
        topic: message.topic().to_owned(),
        key: String::from_utf8(message.key().unwrap_or_default().to_vec()).expect("UTF-8 key"),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// A consumer of every aggregate topic under `prefix`, reading from the beginning.
pub fn subscribe(brokers: &str, prefix: &str) -> StreamConsumer {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_name("outbox-test"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        // Topics may be created after the subscription (by the relay): notice them soon.
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("consumer");
    let topics: Vec<String> = AggregateKind::ALL
        .iter()
        .map(|kind| kind.topic(prefix))
        .collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).expect("subscribe");
    consumer
}

/// Receives until `done` holds for what arrived, or panics after `timeout` saying how
/// many messages did arrive.
pub async fn receive_until(
    consumer: &StreamConsumer,
    timeout: Duration,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    while !done(&messages) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {timeout:?} with {} messages received",
            messages.len()
        );
        match tokio::time::timeout(left.min(Duration::from_secs(1)), consumer.recv()).await {
            Ok(Ok(message)) => messages.push(received(&message.detach())),
            Ok(Err(error)) => eprintln!("consumer error (retrying): {error}"),
            Err(_) => {}
        }
    }
    messages
}

/// Messages per aggregate key, in arrival order.
pub fn by_key(messages: &[Received]) -> BTreeMap<String, Vec<&Received>> {
    let mut keys: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for message in messages {
        keys.entry(message.key.clone()).or_default().push(message);
    }
    keys
}

/// Rows still queued for publication.
pub async fn outbox_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.db)
        .await
        .expect("count outbox")
}

/// Waits until the relay has emptied the outbox.
pub async fn wait_for_empty_outbox(app: &TestApp, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = outbox_rows(app).await;
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "outbox still holds {left} rows after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(aggregate id, sequence) -> event id` of everything in the event store.
pub async fn stored_event_ids(app: &TestApp) -> BTreeMap<(String, i64), String> {
    let rows: Vec<(String, i64, uuid::Uuid)> =
        sqlx::query_as("SELECT aggregate_id, sequence, event_id FROM events")
            .fetch_all(&app.db)
            .await
            .expect("read events");
    rows.into_iter()
        .map(|(id, sequence, event_id)| ((id, sequence), event_id.to_string()))
        .collect()
}
