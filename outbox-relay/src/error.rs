use thiserror::Error;

/// Why the relay could not make progress. Every variant is retried by the relay loop;
/// they are distinct so the log says which dependency failed.
#[derive(Debug, Error)]
pub enum RelayError {
    #[error("event store (PostgreSQL) error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("Kafka broker at {brokers}: {source}")]
    Kafka {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Topics(#[from] schemas::topics::TopicError),
    #[error("schema registry at {url}: {reason}")]
    Registry { url: String, reason: String },
    #[error("event {aggregate_type}/{aggregate_id}#{sequence} cannot be encoded: {reason}")]
    Encoding {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        reason: String,
    },
}
