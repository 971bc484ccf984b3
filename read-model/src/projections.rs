//! The projections' own bookkeeping (`checkpoints`, `dead_letters`), summarised for
//! operators, and the schema probe behind readiness.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use utoipa::ToSchema;

/// Every projection that has tracked an aggregate or dead-lettered a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProjectionsOverview {
    /// By projection name.
    pub projections: Vec<ProjectionStatus>,
}

/// One projection's progress and dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProjectionStatus {
    /// `orders`, `stock`, `payments`, ….
    #[schema(example = "orders")]
    pub projection: String,
    /// Source aggregates with a checkpoint.
    pub aggregates: i64,
    /// Of those, how many are parked behind a dead letter (later events are not applied
    /// until an operator retries or skips it).
    pub parked_aggregates: i64,
    /// Of those, how many wait for a retry (their events held, the others flowing on).
    pub retrying_aggregates: i64,
    /// Events applied (checkpoints count each aggregate's events from 1 without holes, so
    /// their sum).
    pub events_applied: i64,
    /// When a checkpoint last moved (`null` if none exists).
    pub last_checkpoint_at: Option<DateTime<Utc>>,
    /// Dead letters by reason (`poison`, `parked`); empty when there are none.
    pub dead_letters: Vec<DeadLetterCount>,
}

/// Dead letters of one projection for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, FromRow)]
pub struct DeadLetterCount {
    /// `poison` (could never succeed, or failed every retry) or `parked` (held behind a
    /// poison message).
    #[schema(example = "poison")]
    pub reason: String,
    /// How many.
    pub count: i64,
    /// How many are not yet copied to the dead-letter topic.
    pub unpublished: i64,
    /// How many no operator has retried or skipped yet.
    pub unresolved: i64,
    /// The most recent one.
    pub last_dead_lettered_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct CheckpointSummary {
    projection: String,
    aggregates: i64,
    parked_aggregates: i64,
    retrying_aggregates: i64,
    events_applied: i64,
    last_checkpoint_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct DeadLetterRow {
    projection: String,
    #[sqlx(flatten)]
    count: DeadLetterCount,
}

/// Checkpoint and dead-letter counts per projection. Counts whole tables: meant for
/// operators, not for polling at high rates.
///
/// # Errors
/// Database errors.
pub async fn overview(pool: &PgPool) -> Result<ProjectionsOverview, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let checkpoints: Vec<CheckpointSummary> = sqlx::query_as(
        "SELECT projection, count(*) AS aggregates, \
                count(*) FILTER (WHERE parked_by IS NOT NULL) AS parked_aggregates, \
                count(*) FILTER (WHERE retry_at IS NOT NULL) AS retrying_aggregates, \
                coalesce(sum(last_sequence), 0)::bigint AS events_applied, \
                max(updated_at) AS last_checkpoint_at \
         FROM read_model.checkpoints GROUP BY projection",
    )
    .fetch_all(&mut *tx)
    .await?;
    let dead_letters: Vec<DeadLetterRow> = sqlx::query_as(
        "SELECT projection, reason, count(*) AS count, \
                count(*) FILTER (WHERE published_at IS NULL) AS unpublished, \
                count(*) FILTER (WHERE resolution IS NULL) AS unresolved, \
                max(dead_lettered_at) AS last_dead_lettered_at \
         FROM read_model.dead_letters GROUP BY projection, reason ORDER BY projection, reason",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut projections: BTreeMap<String, ProjectionStatus> = BTreeMap::new();
    for summary in checkpoints {
        projections.insert(
            summary.projection.clone(),
            ProjectionStatus {
                projection: summary.projection,
                aggregates: summary.aggregates,
                parked_aggregates: summary.parked_aggregates,
                retrying_aggregates: summary.retrying_aggregates,
                events_applied: summary.events_applied,
                last_checkpoint_at: summary.last_checkpoint_at,
                dead_letters: Vec::new(),
            },
        );
    }
    for row in dead_letters {
        projections
            .entry(row.projection.clone())
            .or_insert_with(|| ProjectionStatus {
                projection: row.projection,
                aggregates: 0,
                parked_aggregates: 0,
                retrying_aggregates: 0,
                events_applied: 0,
                last_checkpoint_at: None,
                dead_letters: Vec::new(),
            })
            .dead_letters
            .push(row.count);
    }
    Ok(ProjectionsOverview {
        projections: projections.into_values().collect(),
    })
}

/// Whether the read-model schema has been migrated (its `checkpoints` table exists).
///
/// # Errors
/// Database errors.
pub async fn schema_present(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass('read_model.checkpoints') IS NOT NULL")
        .fetch_one(pool)
        .await
}
