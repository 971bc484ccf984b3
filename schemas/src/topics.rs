//! Topic creation: the broker may not auto-create topics (the local stack's does not, nor
//! do most production clusters), so every process creates the ones it reads and writes:
//! the relay and the saga the aggregate topics, the projector those and its own.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::AggregateKind;

/// A topic could not be created.
#[derive(Debug, thiserror::Error)]
#[error("creating topic {topic} on {brokers}: {reason}")]
pub struct TopicError {
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// The broker's or client's complaint.
    pub reason: String,
}

/// Creates each of `topics` that does not exist yet, with `partitions` partitions, each
/// kept on `replication_factor` brokers (`KEEL_TOPIC_REPLICATION_FACTOR`: 1 on the local
/// stack's single node, 3 in `deploy/`). A topic that exists is left as it is.
///
/// # Errors
/// [`TopicError`] for the first topic that neither exists nor could be created (for one, a
/// replication factor larger than the cluster's brokers).
pub async fn ensure_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    replication_factor: i32,
) -> Result<(), TopicError> {
    let error = |topic: &str, reason: String| TopicError {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        reason,
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("socket.connection.setup.timeout.ms", "5000")
        .create()
        .map_err(|e| error(&topics.join(","), e.to_string()))?;
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(replication_factor),
            )
        })
        .collect();
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| error(&topics.join(","), e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(error(&topic, code.to_string())),
        }
    }
    Ok(())
}

/// The topic of every aggregate type under `prefix`, in [`AggregateKind::ALL`] order.
pub fn aggregate_topics(prefix: &str) -> Vec<String> {
    AggregateKind::ALL
        .iter()
        .map(|kind| kind.topic(prefix))
        .collect()
}

/// [`ensure_topics`] for [`aggregate_topics`]; returns their names.
///
/// # Errors
/// [`TopicError`].
pub async fn ensure_aggregate_topics(
    brokers: &str,
    prefix: &str,
    partitions: i32,
    replication_factor: i32,
) -> Result<Vec<String>, TopicError> {
    let topics = aggregate_topics(prefix);
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    ensure_topics(brokers, &names, partitions, replication_factor).await?;
    Ok(topics)
}
