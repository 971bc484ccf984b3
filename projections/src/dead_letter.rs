//! Dead letters: the `read_model.dead_letters` table, and its copy on the projection's
//! dead-letter topic.
//!
//! A dead letter is first recorded in the database, in the transaction that moves the
//! projection past the message, so it can never be lost or recorded twice. The table is then
//! the outbox of the dead-letter topic: [`DeadLetterPublisher::publish_pending`] produces
//! the rows not yet published (at start-up and after each batch that added some) and marks
//! them. A crash in between publishes them again: the topic is at-least-once, and its
//! messages carry the source topic, partition and offset to deduplicate on.

use std::fmt;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{PgConnection, PgPool, Row};

use crate::event::AggregateKey;
use crate::stored_message::{StoredMessage, headers_from_json, headers_json};

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// It could not be decoded or applied, after every retry.
    Poison,
    /// Its aggregate is parked behind an earlier dead letter; applying it would skip the
    /// events in between.
    Parked,
}

impl DeadLetterReason {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poison => "poison",
            Self::Parked => "parked",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message the projection gives up on.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// The raw message, as received.
    pub message: &'a OwnedMessage,
    /// Its aggregate, when known (from the decoded metadata, else from the key and topic).
    pub aggregate: Option<AggregateKey>,
    /// Its sequence, when decoded.
    pub sequence: Option<i64>,
    /// Poison or parked.
    pub reason: DeadLetterReason,
    /// What went wrong, for the operator.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
}

/// Records `letter` and returns its id. Once: a redelivered message finds its earlier row,
/// unless an operator resolved that row, which then opens again with the new reason and
/// error (and is published again).
///
/// # Errors
/// Database errors.
pub async fn record(
    connection: &mut PgConnection,
    projection: &str,
    letter: &DeadLetter<'_>,
) -> Result<i64, sqlx::Error> {
    let message = letter.message;
    let headers = headers_json(message);
    let row = sqlx::query(
        "WITH inserted AS ( \
             INSERT INTO read_model.dead_letters (projection, topic, kafka_partition, \
                 kafka_offset, message_key, payload, headers, aggregate_type, aggregate_id, \
                 sequence, reason, error, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (projection, topic, kafka_partition, kafka_offset) DO UPDATE \
                 SET reason = EXCLUDED.reason, error = EXCLUDED.error, \
                     attempts = EXCLUDED.attempts, sequence = EXCLUDED.sequence, \
                     dead_lettered_at = now(), published_at = NULL, resolution = NULL, \
                     resolved_at = NULL, resolved_by = NULL, resolution_reason = NULL \
                 WHERE dead_letters.resolution IS NOT NULL \
             RETURNING id \
         ) \
         SELECT id FROM inserted \
         UNION ALL \
         SELECT id FROM read_model.dead_letters \
         WHERE projection = $1 AND topic = $2 AND kafka_partition = $3 AND kafka_offset = $4 \
         LIMIT 1",
    )
    .bind(projection)
    .bind(message.topic())
    .bind(message.partition())
    .bind(message.offset())
    .bind(message.key())
    .bind(message.payload())
    .bind(headers)
    .bind(letter.aggregate.as_ref().map(|k| k.aggregate_type.as_str()))
    .bind(letter.aggregate.as_ref().map(|k| k.aggregate_id.as_str()))
    .bind(letter.sequence)
    .bind(letter.reason.as_str())
    .bind(&letter.error)
    .bind(i32::try_from(letter.attempts).unwrap_or(i32::MAX))
    .fetch_one(&mut *connection)
    .await?;
    row.try_get("id")
}

/// The dead-letter topic of a projection: `<prefix>dlq.<projection>`.
pub fn dead_letter_topic(topic_prefix: &str, projection: &str) -> String {
    format!("{topic_prefix}dlq.{projection}")
}

/// Copies recorded dead letters to the projection's dead-letter topic.
pub struct DeadLetterPublisher {
    producer: FutureProducer,
    topic: String,
    projection: &'static str,
}

impl fmt::Debug for DeadLetterPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterPublisher")
            .field("topic", &self.topic)
            .field("projection", &self.projection)
            .finish_non_exhaustive()
    }
}

/// Publishing dead letters failed; the rows stay unpublished and are tried again later.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Reading or marking rows failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The broker did not take a message.
    #[error("dead-letter topic {topic}: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// The producer's error.
        source: rdkafka::error::KafkaError,
    },
}

impl DeadLetterPublisher {
    /// A publisher for `projection`'s dead letters to `topic`.
    pub fn new(producer: FutureProducer, topic: String, projection: &'static str) -> Self {
        Self {
            producer,
            topic,
            projection,
        }
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces every unpublished dead letter of the projection (pipelined) and marks the
    /// delivered ones. Returns how many were published.
    ///
    /// # Errors
    /// [`PublishError`]; rows delivered before the error are marked.
    pub async fn publish_pending(&self, pool: &PgPool) -> Result<usize, PublishError> {
        let mut published = 0;
        loop {
            let rows = sqlx::query(
                "SELECT id, topic, kafka_partition, kafka_offset, message_key, payload, headers, \
                        reason, error, attempts \
                 FROM read_model.dead_letters \
                 WHERE projection = $1 AND published_at IS NULL ORDER BY id LIMIT 500",
            )
            .bind(self.projection)
            .fetch_all(pool)
            .await?;
            if rows.is_empty() {
                return Ok(published);
            }
            let letters = rows
                .iter()
                .map(StoredLetter::from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let deliveries = letters.iter().map(|letter| self.send(letter));
            let outcomes = futures::future::join_all(deliveries).await;
            let mut delivered = Vec::with_capacity(letters.len());
            let mut failure = None;
            for (letter, outcome) in letters.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => delivered.push(letter.id),
                    Err(source) => failure = Some(source),
                }
            }
            sqlx::query(
                "UPDATE read_model.dead_letters SET published_at = now() WHERE id = ANY($1)",
            )
            .bind(&delivered)
            .execute(pool)
            .await?;
            published += delivered.len();
            if let Some(source) = failure {
                return Err(PublishError::Kafka {
                    topic: self.topic.clone(),
                    source,
                });
            }
        }
    }

    async fn send(&self, letter: &StoredLetter) -> Result<(), rdkafka::error::KafkaError> {
        let source = &letter.message;
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        let attempts = letter.attempts.to_string();
        let mut headers = headers_from_json(&source.headers);
        for (key, value) in [
            ("dlq.projection", self.projection),
            ("dlq.reason", letter.reason.as_str()),
            ("dlq.error", letter.error.as_str()),
            ("dlq.attempts", attempts.as_str()),
            ("dlq.source_topic", source.topic.as_str()),
            ("dlq.source_partition", partition.as_str()),
            ("dlq.source_offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = &source.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &source.payload {
            record = record.payload(payload.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(15))
            .await
            .map(drop)
            .map_err(|(error, _)| error)
    }
}

struct StoredLetter {
    id: i64,
    message: StoredMessage,
    reason: String,
    error: String,
    attempts: i32,
}

impl StoredLetter {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            message: StoredMessage::from_row(row)?,
            reason: row.try_get("reason")?,
            error: row.try_get("error")?,
            attempts: row.try_get("attempts")?,
        })
    }
}
