//! The outbox: the queue the append trigger fills in the appending transaction
//! (`migrations/0010_outbox.sql`) and the relay drains. Read a batch of queued events with
//! their content, delete what was acknowledged, report the backlog.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

/// Number of outbox shards: the modulus of the append trigger's
/// `(hashtextextended(aggregate_type || '/' || aggregate_id, 0) % 64 + 64) % 64` in
/// `migrations/0010_outbox.sql`; `tests/store/outbox.rs` checks that the two agree.
pub const OUTBOX_SHARDS: i16 = 64;

/// One queued event with everything needed to publish it.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// Up to `limit` queued events of the given shards, oldest first. For any one aggregate
/// this is sequence order: its next event is appended only after the previous committed.
pub async fn fetch_batch(
    connection: &mut PgConnection,
    shards: &[i16],
    limit: i64,
) -> Result<Vec<PendingEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT o.global_position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
                e.event_version, e.payload, e.metadata, e.recorded_at \
         FROM outbox o \
         JOIN events e ON e.aggregate_type = o.aggregate_type \
                      AND e.aggregate_id = o.aggregate_id \
                      AND e.sequence = o.sequence \
         WHERE o.shard = ANY($1) \
         ORDER BY o.global_position \
         LIMIT $2",
    )
    .bind(shards)
    .bind(limit)
    .fetch_all(&mut *connection)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PendingEvent {
                global_position: row.try_get("global_position")?,
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                event_type: row.try_get("event_type")?,
                event_version: row.try_get("event_version")?,
                payload: row.try_get("payload")?,
                metadata: row.try_get("metadata")?,
                recorded_at: row.try_get("recorded_at")?,
            })
        })
        .collect()
}

/// Removes acknowledged events from the queue.
pub async fn delete_published(
    connection: &mut PgConnection,
    positions: &[i64],
) -> Result<u64, sqlx::Error> {
    if positions.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query("DELETE FROM outbox WHERE global_position = ANY($1)")
        .bind(positions)
        .execute(&mut *connection)
        .await?;
    Ok(done.rows_affected())
}

/// Counts a failed attempt on events that stay queued, so a stuck event is visible.
pub async fn note_failed_attempt(
    connection: &mut PgConnection,
    positions: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET attempts = attempts + 1 WHERE global_position = ANY($1)")
        .bind(positions)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Size of the queue and age of its oldest event: the relay's lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub events: i64,
    pub oldest_recorded_at: Option<DateTime<Utc>>,
}

impl Backlog {
    /// Age of the oldest unpublished event at `now`.
    pub fn oldest_age(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        self.oldest_recorded_at.map(|oldest| now - oldest)
    }
}

pub async fn backlog(connection: &mut PgConnection) -> Result<Backlog, sqlx::Error> {
    let row = sqlx::query("SELECT count(*) AS events, min(recorded_at) AS oldest FROM outbox")
        .fetch_one(&mut *connection)
        .await?;
    Ok(Backlog {
        events: row.try_get("events")?,
        oldest_recorded_at: row.try_get("oldest")?,
    })
}
