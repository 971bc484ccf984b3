//! One aggregate's stream: its events in sequence order, and its version now or at a time.
//! Sequence order is the stream's own order, whatever the commit-order horizon of
//! [`crate::log`]: a stream's next event is appended only after the previous one committed.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::log::{COLUMNS, RecordedEvent};

/// An aggregate's stream: `(aggregate_type, aggregate_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRef<'a> {
    /// `aggregate_type`.
    pub aggregate_type: &'a str,
    /// `aggregate_id`.
    pub aggregate_id: &'a str,
}

/// Which part of a stream to read: sequences in `after < sequence <= up_to`, at most
/// `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRange {
    /// Exclusive lower bound (0 for the whole stream).
    pub after: i64,
    /// Inclusive upper bound.
    pub up_to: i64,
    /// At most this many events.
    pub limit: i64,
}

impl StreamRange {
    /// Everything after sequence `after`.
    pub fn after(after: i64) -> Self {
        Self {
            after,
            up_to: i64::MAX,
            limit: i64::MAX,
        }
    }

    /// Only sequences up to `up_to`.
    pub fn up_to(self, up_to: i64) -> Self {
        Self { up_to, ..self }
    }

    /// At most `limit` events.
    pub fn limit(self, limit: i64) -> Self {
        Self { limit, ..self }
    }
}

/// The stream's events in `range`, in sequence order.
///
/// # Errors
/// Database errors.
pub async fn read_stream<'e>(
    executor: impl PgExecutor<'e>,
    stream: StreamRef<'_>,
    range: StreamRange,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence <= $4 \
         ORDER BY sequence LIMIT $5"
    ))
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .bind(range.after)
    .bind(range.up_to)
    .bind(range.limit)
    .fetch_all(executor)
    .await
}

/// The stream's last sequence (its version); `None` for a stream without events.
///
/// # Errors
/// Database errors.
pub async fn stream_version<'e>(
    executor: impl PgExecutor<'e>,
    stream: StreamRef<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .fetch_one(executor)
    .await
}

/// The last sequence of the stream recorded at or before `at`; `None` if it had no event
/// by then.
///
/// # Errors
/// Database errors.
pub async fn version_at<'e>(
    executor: impl PgExecutor<'e>,
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
    .fetch_one(executor)
    .await
}
