//! The SQL of the audit trail: reads of `public.events`, never a write.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use super::hash;

/// One stored event with everything the store knows about it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEvent {
    /// `order`, `payment`, `inventory`, ….
    #[schema(example = "order")]
    pub aggregate_type: String,
    /// The aggregate's id (a UUID, or the SKU for inventory).
    pub aggregate_id: String,
    /// 1-based position in the aggregate's stream; the aggregate's version after the event.
    #[schema(minimum = 1)]
    pub sequence: i64,
    /// The event type, e.g. `OrderPlaced`.
    #[schema(example = "OrderPlaced")]
    pub event_type: String,
    /// Version of the payload's shape.
    #[schema(example = "1")]
    pub event_version: String,
    /// Unique id of the event (also in `metadata.event_id`).
    pub event_id: Uuid,
    /// The appending transaction: events of one command share it. With `global_position` it
    /// is the commit order of the global log.
    pub transaction_id: i64,
    /// Store-wide insertion number (identity).
    pub global_position: i64,
    /// When the event was appended (database clock).
    pub recorded_at: DateTime<Utc>,
    /// The event's business facts, as stored.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// All of the event's metadata, as stored: `event_id`, `correlation_id`, `causation_id`,
    /// `actor`, `occurred_at`, `idempotency_key`, `traceparent` (absent when not set).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The event's link in its stream's hash chain (SHA-256, hex), sealed at append time.
    #[schema(example = "3f0a…")]
    pub hash: Option<String>,
}

const EVENT_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
     event_id, transaction_id::text::bigint AS transaction_id, global_position, recorded_at, \
     payload, metadata, hash";

impl FromRow<'_, PgRow> for AuditEvent {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let hash: Option<Vec<u8>> = row.try_get("hash")?;
        Ok(Self {
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            event_id: row.try_get("event_id")?,
            transaction_id: row.try_get("transaction_id")?,
            global_position: row.try_get("global_position")?,
            recorded_at: row.try_get("recorded_at")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            hash: hash.map(|hash| hash::to_hex(&hash)),
        })
    }
}

/// An aggregate's stream: `(aggregate_type, aggregate_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRef<'a> {
    /// `aggregate_type`.
    pub aggregate_type: &'a str,
    /// `aggregate_id`.
    pub aggregate_id: &'a str,
}

/// The stream's last sequence (its version); `None` for a stream without events.
///
/// # Errors
/// Database errors.
pub async fn stream_version(
    pool: &PgPool,
    stream: StreamRef<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .fetch_one(pool)
    .await
}

/// Up to `limit` events of the stream after sequence `after`, in sequence order.
///
/// # Errors
/// Database errors.
pub async fn stream_events(
    pool: &PgPool,
    stream: StreamRef<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
         ORDER BY sequence LIMIT $4"
    ))
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A place in the global log's commit order: `(transaction_id, global_position)`. See
/// `docs/adr/0002-outbox-and-global-position.md`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The appending transaction.
    pub transaction_id: i64,
    /// The identity value.
    pub global_position: i64,
}

impl AuditEvent {
    /// This event's place in the global log.
    pub fn log_position(&self) -> LogPosition {
        LogPosition {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }
}

/// Filters of the global log; all given ones must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// `metadata.correlation_id`.
    pub correlation_id: Option<String>,
    /// `event_type`.
    pub event_type: Option<String>,
    /// `aggregate_type`.
    pub aggregate_type: Option<String>,
    /// `metadata.actor`.
    pub actor: Option<String>,
    /// `recorded_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `recorded_at < to`.
    pub to: Option<DateTime<Utc>>,
}

/// Up to `limit` events matching `filter` after `after`, in commit order.
///
/// Only events of transactions older than every transaction still running are read, as the
/// relay does: an event whose transaction commits late would otherwise appear behind a
/// cursor that already moved past it, and a paging auditor would never see it.
///
/// # Errors
/// Database errors.
pub async fn log_events(
    pool: &PgPool,
    filter: &LogFilter,
    after: Option<LogPosition>,
    limit: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
    ));
    if let Some(after) = after {
        query
            .push(" AND (transaction_id, global_position) > (")
            .push_bind(after.transaction_id.to_string())
            .push("::text::xid8, ")
            .push_bind(after.global_position)
            .push(")");
    }
    if let Some(correlation_id) = &filter.correlation_id {
        query
            .push(" AND metadata ->> 'correlation_id' = ")
            .push_bind(correlation_id);
    }
    if let Some(event_type) = &filter.event_type {
        query.push(" AND event_type = ").push_bind(event_type);
    }
    if let Some(aggregate_type) = &filter.aggregate_type {
        query
            .push(" AND aggregate_type = ")
            .push_bind(aggregate_type);
    }
    if let Some(actor) = &filter.actor {
        query.push(" AND metadata ->> 'actor' = ").push_bind(actor);
    }
    if let Some(from) = filter.from {
        query.push(" AND recorded_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND recorded_at < ").push_bind(to);
    }
    query
        .push(" ORDER BY events.transaction_id, events.global_position LIMIT ")
        .push_bind(limit);
    query.build_query_as().fetch_all(pool).await
}

/// The last sequence of the stream recorded at or before `at`; `None` if it had no event
/// by then.
///
/// # Errors
/// Database errors.
pub async fn version_at(
    pool: &PgPool,
    stream: StreamRef<'_>,
    at: DateTime<Utc>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(sequence) FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND recorded_at <= $3",
    )
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .bind(at)
    .fetch_one(pool)
    .await
}

/// An event as a fold needs it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct FoldEvent {
    /// Position in the stream.
    pub sequence: i64,
    /// The event type (for error reports).
    pub event_type: String,
    /// Version of the payload's shape.
    pub event_version: String,
    /// When it was appended.
    pub recorded_at: DateTime<Utc>,
    /// The serialized domain event.
    pub payload: serde_json::Value,
}

/// The stream's events with sequence up to `version`, in order.
///
/// # Errors
/// Database errors.
pub async fn events_up_to(
    pool: &PgPool,
    stream: StreamRef<'_>,
    version: i64,
) -> Result<Vec<FoldEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sequence, event_type, event_version, recorded_at, payload FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3 \
         ORDER BY sequence",
    )
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .bind(version)
    .fetch_all(pool)
    .await
}

/// A stored event as the hash chain sees it, with its predecessor's stored hash.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ChainRow {
    /// `aggregate_type`.
    pub aggregate_type: String,
    /// `aggregate_id`.
    pub aggregate_id: String,
    /// `sequence`.
    pub sequence: i64,
    /// `event_type`.
    pub event_type: String,
    /// `event_version`.
    pub event_version: String,
    /// `event_id`.
    pub event_id: Uuid,
    /// `global_position`.
    pub global_position: i64,
    /// `recorded_at`.
    pub recorded_at: DateTime<Utc>,
    /// `payload`, the stored json text.
    pub payload: String,
    /// `metadata`, the stored json text.
    pub metadata: String,
    /// The stored link.
    pub hash: Option<Vec<u8>>,
    /// Whether event `sequence - 1` of the stream exists (`true` for sequence 1).
    pub has_predecessor: bool,
    /// The predecessor's stored link (`None` for sequence 1, or when it is missing).
    pub prev_hash: Option<Vec<u8>>,
}

impl ChainRow {
    /// What the chain covers of this row.
    pub fn content(&self) -> hash::SealedContent<'_> {
        hash::SealedContent {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

const CHAIN_SELECT: &str = "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
     e.event_version, e.event_id, e.global_position, e.recorded_at, e.payload::text AS payload, \
     e.metadata::text AS metadata, e.hash, \
     (e.sequence = 1 OR p.sequence IS NOT NULL) AS has_predecessor, p.hash AS prev_hash \
     FROM events e LEFT JOIN events p \
       ON p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id \
      AND p.sequence = e.sequence - 1";

/// Up to `limit` chain rows of one stream after sequence `after`.
///
/// # Errors
/// Database errors.
pub async fn stream_chain(
    pool: &PgPool,
    stream: StreamRef<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<ChainRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{CHAIN_SELECT} WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence > $3 \
         ORDER BY e.sequence LIMIT $4"
    ))
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A place in the store's stream order: `(aggregate_type, aggregate_id, sequence)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamPosition {
    /// `aggregate_type`.
    pub aggregate_type: String,
    /// `aggregate_id`.
    pub aggregate_id: String,
    /// `sequence`.
    pub sequence: i64,
}

/// Up to `limit` chain rows of every stream after `after`, by stream, then sequence.
///
/// # Errors
/// Database errors.
pub async fn all_chains(
    pool: &PgPool,
    after: Option<&StreamPosition>,
    limit: i64,
) -> Result<Vec<ChainRow>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(CHAIN_SELECT);
    if let Some(after) = after {
        query
            .push(" WHERE (e.aggregate_type, e.aggregate_id, e.sequence) > (")
            .push_bind(&after.aggregate_type)
            .push(", ")
            .push_bind(&after.aggregate_id)
            .push(", ")
            .push_bind(after.sequence)
            .push(")");
    }
    query
        .push(" ORDER BY e.aggregate_type, e.aggregate_id, e.sequence LIMIT ")
        .push_bind(limit);
    query.build_query_as().fetch_all(pool).await
}
