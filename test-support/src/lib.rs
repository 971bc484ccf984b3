//! What every test suite of the workspace shares, and nothing of any service: where the
//! stack is, scratch databases, Kafka clients and topics set up the way the platform sets
//! them up, a private broker, bearer tokens. Every helper is bounded in time and its errors
//! name the component that failed, so a missing stack fails a test quickly and clearly.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::env;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use uuid::Uuid;

pub mod broker;
pub mod http;
pub mod personal;
pub mod scratch;
pub mod tokens;

pub use broker::TestBroker;
pub use scratch::{ScratchDatabase, ScratchError};

/// How long a test waits for a component before declaring it unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "Kafka broker at {brokers} is not reachable (is the stack up? run `cargo xtask up`): {source}"
    )]
    BrokerUnreachable {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka broker at {brokers} could not create topic {topic}: {reason}")]
    TopicNotCreated {
        brokers: String,
        topic: String,
        reason: String,
    },
    #[error("Kafka broker at {brokers} could not delete topic {topic}: {reason}")]
    TopicNotDeleted {
        brokers: String,
        topic: String,
        reason: String,
    },
    #[error("Kafka client for {brokers} could not be configured: {source}")]
    ClientConfig {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
}

/// Addresses of the running stack, from the variables `cargo xtask test` sets, with the
/// same defaults as `cargo xtask up`.
#[derive(Debug, Clone)]
pub struct Stack {
    pub database_url: String,
    pub kafka_brokers: String,
    pub registry_url: String,
}

impl Stack {
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| env::var(name).unwrap_or_else(|_| default.to_string());
        Self {
            database_url: var(
                "KEEL_DATABASE_URL",
                "postgres://keel:keel@127.0.0.1:5432/keel",
            ),
            kafka_brokers: var("KEEL_KAFKA_BROKERS", "127.0.0.1:9092"),
            registry_url: var(
                "KEEL_SCHEMA_REGISTRY_URL",
                "http://127.0.0.1:8081/apis/ccompat/v7",
            ),
        }
    }
}

/// A name no other test run uses, for topics and consumer groups.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.connection.setup.timeout.ms", "3000");
    config
}

/// A Kafka Metadata round trip, bounded by `timeout`.
pub async fn check_broker(brokers: &str, timeout: Duration) -> Result<(), StackError> {
    let brokers = brokers.to_string();
    let consumer: BaseConsumer =
        client_config(&brokers)
            .create()
            .map_err(|source| StackError::ClientConfig {
                brokers: brokers.clone(),
                source,
            })?;
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(None, timeout)
            .map(drop)
            .map_err(|source| StackError::BrokerUnreachable { brokers, source })
    })
    .await
    .expect("metadata probe task panicked")
}

fn admin_client(brokers: &str) -> Result<AdminClient<DefaultClientContext>, StackError> {
    client_config(brokers)
        .create()
        .map_err(|source| StackError::ClientConfig {
            brokers: brokers.to_string(),
            source,
        })
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)))
}

/// Deletes every topic whose name starts with `prefix`: a test's topics end with the test,
/// so a run of the suite leaves the broker with no more topics than it found (each one
/// costs a small broker memory and start-up time). Returns how many were deleted.
pub async fn delete_topics_with_prefix(brokers: &str, prefix: &str) -> Result<usize, StackError> {
    let admin = admin_client(brokers)?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, PROBE_TIMEOUT)
        .map_err(|source| StackError::BrokerUnreachable {
            brokers: brokers.to_string(),
            source,
        })?;
    let names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|topic| topic.name().to_string())
        .filter(|name| name.starts_with(prefix))
        .collect();
    if names.is_empty() {
        return Ok(0);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = admin
        .delete_topics(&refs, &admin_options())
        .await
        .map_err(|source| StackError::TopicNotDeleted {
            brokers: brokers.to_string(),
            topic: prefix.to_string(),
            reason: source.to_string(),
        })?;
    for result in results {
        if let Err((name, code)) = result {
            return Err(StackError::TopicNotDeleted {
                brokers: brokers.to_string(),
                topic: name,
                reason: code.to_string(),
            });
        }
    }
    Ok(names.len())
}

/// Creates a topic; the broker, like most production clusters, does not auto-create them.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), StackError> {
    let admin = admin_client(brokers)?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[new_topic], &admin_options())
        .await
        .map_err(|source| StackError::TopicNotCreated {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            reason: source.to_string(),
        })?;
    for result in results {
        if let Err((name, code)) = result {
            return Err(StackError::TopicNotCreated {
                brokers: brokers.to_string(),
                topic: name,
                reason: code.to_string(),
            });
        }
    }
    Ok(())
}

/// An idempotent producer with every delivery bounded in time.
pub fn producer(brokers: &str) -> Result<FutureProducer, StackError> {
    client_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "15000")
        .create()
        .map_err(|source| StackError::ClientConfig {
            brokers: brokers.to_string(),
            source,
        })
}

/// A consumer in its own group, reading from the start, committing only explicitly.
/// The short session timeout makes the first group join take seconds, not ~20 s.
pub fn consumer(brokers: &str, group: &str) -> Result<StreamConsumer, StackError> {
    client_config(brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .map_err(|source| StackError::ClientConfig {
            brokers: brokers.to_string(),
            source,
        })
}

/// An address on loopback where nothing listens: the port was just released.
pub fn closed_loopback_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let address = listener.local_addr().expect("local address").to_string();
    drop(listener);
    address
}

/// The offset a consumer group has committed for one partition, if any.
pub fn committed_offset(consumer: &StreamConsumer, topic: &str, partition: i32) -> Option<i64> {
    let offsets = consumer.committed(Duration::from_secs(10)).ok()?;
    offsets
        .find_partition(topic, partition)
        .and_then(|element| element.offset().to_raw())
}
