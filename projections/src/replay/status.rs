//! What `keel-replay list` and `status` show: per projection, how far the live read model
//! is, its dead letters, and any unfinished rebuild.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::shadow::{self, shadow_schema};
use super::source::{EventStore, LogPosition};
use crate::Projection;

/// The live state of one projection.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// Which.
    pub projection: Projection,
    /// Source aggregates with a checkpoint.
    pub aggregates: i64,
    /// Of those, parked behind a dead letter.
    pub parked: i64,
    /// Most recent checkpoint update.
    pub last_checkpoint_at: Option<DateTime<Utc>>,
    /// Events of the projection's sources in the store.
    pub events_in_store: u64,
    /// Events applied (checkpoints count from 1 without holes, so their sum).
    pub events_applied: u64,
    /// Dead letters no operator has answered yet, per reason.
    pub dead_letters: BTreeMap<String, i64>,
    /// An unfinished rebuild, if any.
    pub rebuild: Option<RebuildStatus>,
}

impl ProjectionStatus {
    /// Events in the store not applied yet.
    pub fn lag(&self) -> u64 {
        self.events_in_store.saturating_sub(self.events_applied)
    }
}

/// An unfinished rebuild (its shadow exists).
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildStatus {
    /// The shadow schema.
    pub schema: String,
    /// `store` or `kafka`.
    pub source: String,
    /// Whether a process is working on it now (else it was interrupted; run it again).
    pub running: bool,
    /// Last store position applied.
    pub position: LogPosition,
    /// Events read so far.
    pub events_read: u64,
    /// Events applied so far.
    pub events_applied: u64,
}

/// Reads the status of `projection`.
///
/// # Errors
/// Database errors.
pub async fn projection_status(
    read_model: &PgPool,
    store: &EventStore,
    projection: Projection,
) -> Result<ProjectionStatus, sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) AS aggregates, count(parked_by) AS parked, max(updated_at) AS last_at, \
                coalesce(sum(last_sequence), 0)::bigint AS applied \
         FROM read_model.checkpoints WHERE projection = $1",
    )
    .bind(projection.name())
    .fetch_one(read_model)
    .await?;
    let dead_letters: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reason, count(*) FROM read_model.dead_letters \
         WHERE projection = $1 AND resolution IS NULL GROUP BY reason ORDER BY reason",
    )
    .bind(projection.name())
    .fetch_all(read_model)
    .await?;
    let rebuild = if shadow::exists(read_model, projection).await? {
        let (progress, source) = shadow::progress(read_model, projection).await?;
        Some(RebuildStatus {
            schema: shadow_schema(projection),
            source,
            running: super::is_running(read_model, projection).await?,
            position: progress.position,
            events_read: progress.events_read,
            events_applied: progress.events_applied,
        })
    } else {
        None
    };
    Ok(ProjectionStatus {
        projection,
        aggregates: row.try_get("aggregates")?,
        parked: row.try_get("parked")?,
        last_checkpoint_at: row.try_get("last_at")?,
        events_in_store: store.count(projection).await?,
        events_applied: u64::try_from(row.try_get::<i64, _>("applied")?).unwrap_or_default(),
        dead_letters: dead_letters.into_iter().collect(),
        rebuild,
    })
}
