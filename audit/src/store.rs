//! The audit trail's reads of the event store, through `event_store` (the one owner of
//! `public.events` and its readers), shaped for the API. Reads only.

use chrono::{DateTime, Utc};
use event_store::hash_chain;
use event_store::log::{self, RecordedEvent};
use event_store::stream::{self, StreamRange};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

pub use event_store::hash_chain::{ChainRow, StreamPosition};
pub use event_store::{LogFilter, LogPosition, StreamRef};

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
    /// Only on events that carry sealed personal data (`OrderCreated.customer_details`):
    /// `{"status": "present", "name", "email", "shipping_address", "key_id"}` for the
    /// `auditor` role, `{"status": "redacted"}` for anyone else, `{"status": "erased"}`
    /// once the customer was forgotten. The payload itself stays as stored (ciphertext).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub personal_data: Option<serde_json::Value>,
}

impl TryFrom<RecordedEvent> for AuditEvent {
    type Error = sqlx::Error;

    fn try_from(event: RecordedEvent) -> Result<Self, sqlx::Error> {
        let json = |text: &str, column: &str| {
            serde_json::from_str(text).map_err(|error| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: Box::new(error),
            })
        };
        Ok(Self {
            payload: json(&event.payload, "payload")?,
            metadata: json(&event.metadata, "metadata")?,
            hash: event.hash.as_deref().map(hash_chain::to_hex),
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: event.event_type,
            event_version: event.event_version,
            event_id: event.event_id,
            transaction_id: event.position.transaction_id,
            global_position: event.position.global_position,
            recorded_at: event.recorded_at,
            personal_data: None,
        })
    }
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

fn audit_events(events: Vec<RecordedEvent>) -> Result<Vec<AuditEvent>, sqlx::Error> {
    events.into_iter().map(AuditEvent::try_from).collect()
}

/// The stream's last sequence (its version); `None` for a stream without events.
///
/// # Errors
/// Database errors.
pub async fn stream_version(
    pool: &PgPool,
    stream: StreamRef<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    stream::stream_version(pool, stream).await
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
    audit_events(stream::read_stream(pool, stream, StreamRange::after(after).limit(limit)).await?)
}

/// Up to `limit` events matching `filter` after `after`, in commit order, never stepping
/// over an event whose transaction commits late (see `event_store::log`): a paging auditor
/// sees every event.
///
/// # Errors
/// Database errors.
pub async fn log_events(
    pool: &PgPool,
    filter: &LogFilter,
    after: Option<LogPosition>,
    limit: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let after = after.unwrap_or(LogPosition::START);
    audit_events(log::read_after(pool, after, filter, limit).await?)
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
    stream::version_at(pool, stream, at).await
}

/// An event as a fold needs it.
#[derive(Debug, Clone, PartialEq)]
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
    let events = stream::read_stream(pool, stream, StreamRange::after(0).up_to(version)).await?;
    audit_events(events).map(|events| {
        events
            .into_iter()
            .map(|event| FoldEvent {
                sequence: event.sequence,
                event_type: event.event_type,
                event_version: event.event_version,
                recorded_at: event.recorded_at,
                payload: event.payload,
            })
            .collect()
    })
}

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
    hash_chain::stream_chain(pool, stream, after, limit).await
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
    hash_chain::all_chains(pool, after, limit).await
}
