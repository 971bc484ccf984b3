//! Held events: the messages of aggregates that wait for a retry, in
//! `read_model.retry_events` (ADR 0007).
//!
//! When an event fails for a reason that may pass ([`crate::projection::Failure::MayPass`]),
//! the projector holds it and every later event of its aggregate here, in the batch's
//! transaction, marks the aggregate's checkpoint with when to try again, and moves on: the
//! other aggregates of the partition keep being applied, and the held messages' offsets can
//! be committed because the table has them. The projector's retry sweep takes a due
//! aggregate's held events back in one transaction and applies them in order, or holds them
//! again with a longer delay, or, once the attempts are spent, dead-letters the failing
//! event and parks the aggregate.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sqlx::{PgConnection, PgPool};

use crate::event::AggregateKey;
use crate::stored_message::{StoredMessage, headers_json};

/// Holds `message` of `key` (once: a redelivered message finds its row).
///
/// # Errors
/// Database errors.
pub async fn hold(
    connection: &mut PgConnection,
    projection: &str,
    key: &AggregateKey,
    sequence: Option<i64>,
    message: &OwnedMessage,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO read_model.retry_events (projection, topic, kafka_partition, kafka_offset, \
             aggregate_type, aggregate_id, sequence, message_key, payload, headers) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (projection, topic, kafka_partition, kafka_offset) DO NOTHING",
    )
    .bind(projection)
    .bind(message.topic())
    .bind(message.partition())
    .bind(message.offset())
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .bind(sequence)
    .bind(message.key())
    .bind(message.payload())
    .bind(headers_json(message))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Removes and returns the held messages of `key`, in stream order: by sequence (a message
/// that never decoded first), then by where they were read.
///
/// # Errors
/// Database errors.
pub async fn take(
    connection: &mut PgConnection,
    projection: &str,
    key: &AggregateKey,
) -> Result<Vec<OwnedMessage>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH taken AS ( \
             DELETE FROM read_model.retry_events \
             WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3 \
             RETURNING * \
         ) \
         SELECT topic, kafka_partition, kafka_offset, message_key, payload, headers FROM taken \
         ORDER BY sequence NULLS FIRST, topic, kafka_partition, kafka_offset",
    )
    .bind(projection)
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .fetch_all(&mut *connection)
    .await?;
    rows.iter()
        .map(|row| Ok(StoredMessage::from_row(row)?.to_message()))
        .collect()
}

/// The retrying aggregates of a projection, as the sweep sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Aggregates whose retry is due now, most overdue first (at most the limit asked).
    pub due: Vec<AggregateKey>,
    /// How many aggregates are retrying, due or not.
    pub retrying: u64,
    /// How long until the earliest retry that is not due yet.
    pub next_in: Option<Duration>,
}

/// What the retry sweep has to do for `projection`.
///
/// # Errors
/// Database errors.
pub async fn pending(pool: &PgPool, projection: &str, limit: i64) -> Result<Pending, sqlx::Error> {
    let due = sqlx::query_as::<_, (String, String)>(
        "SELECT aggregate_type, aggregate_id FROM read_model.checkpoints \
         WHERE projection = $1 AND retry_at <= now() ORDER BY retry_at LIMIT $2",
    )
    .bind(projection)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(aggregate_type, aggregate_id)| AggregateKey {
        aggregate_type,
        aggregate_id,
    })
    .collect();
    let (retrying, next_in_ms): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), \
                extract(epoch FROM min(retry_at) FILTER (WHERE retry_at > now()) - now())::float8 \
                    * 1000 \
         FROM read_model.checkpoints WHERE projection = $1 AND retry_at IS NOT NULL",
    )
    .bind(projection)
    .fetch_one(pool)
    .await?;
    Ok(Pending {
        due,
        retrying: u64::try_from(retrying).unwrap_or_default(),
        next_in: next_in_ms.map(|ms| Duration::from_millis(ms.max(0.0) as u64)),
    })
}
