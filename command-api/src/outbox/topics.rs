use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use schemas::AggregateKind;

use super::RelayError;

/// Creates one topic per aggregate type if it does not exist yet. Brokers here (and most
/// production clusters) do not auto-create topics, and a produce to a missing topic
/// would only fail after a timeout.
pub async fn ensure_topics(
    brokers: &str,
    prefix: &str,
    partitions: i32,
) -> Result<Vec<String>, RelayError> {
    let kafka_error = |source| RelayError::Kafka {
        brokers: brokers.to_string(),
        source,
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(kafka_error)?;
    let topics: Vec<String> = AggregateKind::ALL
        .iter()
        .map(|kind| kind.topic(prefix))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(kafka_error)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, error = %code, "topic could not be created");
                return Err(kafka_error(rdkafka::error::KafkaError::AdminOp(code)));
            }
        }
    }
    Ok(topics)
}
