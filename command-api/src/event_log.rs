//! The store's global order, readable without ever skipping an event that commits late.
//! See `docs/adr/0002-outbox-and-global-position.md`.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

/// A place in the commit order: the appending transaction, then the identity value.
/// Positions only grow for a reader that uses [`read_after`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl LogPosition {
    /// Before every event.
    pub const START: LogPosition = LogPosition {
        transaction_id: 0,
        global_position: 0,
    };
}

/// One stored event as a global reader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub position: LogPosition,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// Up to `limit` events after `after` in commit order, only from transactions older than
/// every transaction still running. An event not returned yet because its transaction is
/// open will come after the cursor, never before it.
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<LoggedEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT transaction_id::text::bigint AS transaction_id, global_position, event_id, \
                aggregate_type, aggregate_id, sequence, event_type, payload, metadata, recorded_at \
         FROM events \
         WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.transaction_id, events.global_position \
         LIMIT $3",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LoggedEvent {
                position: LogPosition {
                    transaction_id: row.try_get("transaction_id")?,
                    global_position: row.try_get("global_position")?,
                },
                event_id: row.try_get("event_id")?,
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                event_type: row.try_get("event_type")?,
                payload: row.try_get("payload")?,
                metadata: row.try_get("metadata")?,
                recorded_at: row.try_get("recorded_at")?,
            })
        })
        .collect()
}
