//! `/console/api/projections`: each projection's position against the event store, lag,
//! dead letters and any unfinished rebuild, the numbers `keel-replay list` shows. The page
//! computes rates and a rebuild's ETA from successive samples.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use event_store::log::LogFilter;
use ops::params::NoParams;
use read_model::catalog::{self, ProjectionEntry};
use read_model::projections::ProjectionStatus;
use read_model::{locks, rebuild};
use serde::Serialize;
use sqlx::PgPool;
use tracing::instrument;
use utoipa::ToSchema;

use crate::{ConsoleError, ConsoleSettings};

/// Every projection's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectionsSample {
    /// When this was read.
    pub sampled_at: DateTime<Utc>,
    /// Global position of the last event appended.
    pub log_head: i64,
    /// `orders`, `stock`, `payments`.
    pub projections: Vec<ProjectionProgress>,
}

/// One projection's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectionProgress {
    /// Its name.
    #[schema(example = "stock")]
    pub projection: String,
    /// Events of its source aggregate types in the store.
    pub events_in_store: u64,
    /// Events applied to the live read model.
    pub events_applied: u64,
    /// Events in the store not applied yet.
    pub lag_events: u64,
    /// 0 when caught up; with events waiting, how long since a checkpoint last moved
    /// (`null` when none ever did).
    pub lag_seconds: Option<f64>,
    /// When a checkpoint last moved.
    pub last_checkpoint_at: Option<DateTime<Utc>>,
    /// Source aggregates with a checkpoint.
    pub aggregates: i64,
    /// Of those, parked behind a dead letter.
    pub parked_aggregates: i64,
    /// Of those, waiting for a retry (their events held, the others flowing on).
    pub retrying_aggregates: i64,
    /// Dead letters no operator has answered yet.
    pub dead_letters_unresolved: i64,
    /// An unfinished rebuild.
    pub rebuild: Option<RebuildProgress>,
}

/// An unfinished rebuild.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebuildProgress {
    /// `store` or `kafka`.
    pub source: String,
    /// Whether a process works on it now (else it was interrupted; run it again).
    pub running: bool,
    /// Events read so far.
    pub events_read: u64,
    /// Events applied so far.
    pub events_applied: u64,
}

/// Each projection's position against the store, lag, dead letters and rebuild. Counts
/// the store's events per projection: meant for an operator's page polled every few
/// seconds, not for machines (they have `keel_projector_lag_messages`).
#[utoipa::path(
    get, path = "/console/api/projections", tag = "console", operation_id = "console_projections",
    responses((status = 200, description = "Every projection's progress", body = ProjectionsSample))
)]
#[instrument(skip_all)]
pub async fn get_projections(
    State(pool): State<PgPool>,
    State(settings): State<ConsoleSettings>,
    _: NoParams,
) -> Result<Json<ProjectionsSample>, ConsoleError> {
    let sampled_at = settings.clock.now();
    let overview = read_model::projections::overview(&pool).await?;
    let mut projections = Vec::with_capacity(catalog::PROJECTIONS.len());
    for entry in &catalog::PROJECTIONS {
        let status = overview
            .projections
            .iter()
            .find(|status| status.projection == entry.name);
        projections.push(progress(&pool, entry, status, sampled_at).await?);
    }
    Ok(Json(ProjectionsSample {
        sampled_at,
        log_head: event_store::activity::log_head(&pool).await?,
        projections,
    }))
}

async fn progress(
    pool: &PgPool,
    entry: &ProjectionEntry,
    status: Option<&ProjectionStatus>,
    now: DateTime<Utc>,
) -> Result<ProjectionProgress, sqlx::Error> {
    let sources = LogFilter::aggregate_types(entry.sources.iter().copied());
    let events_in_store = event_store::log::count(pool, &sources).await?;
    let events_applied = status.map_or(0, |status| {
        u64::try_from(status.events_applied).unwrap_or_default()
    });
    let lag_events = events_in_store.saturating_sub(events_applied);
    let last_checkpoint_at = status.and_then(|status| status.last_checkpoint_at);
    let lag_seconds = if lag_events == 0 {
        Some(0.0)
    } else {
        last_checkpoint_at
            .map(|at| now.signed_duration_since(at).num_milliseconds().max(0) as f64 / 1000.0)
    };
    let rebuild = if rebuild::shadow_exists(pool, entry.name).await? {
        let stored = rebuild::progress(pool, entry.name).await?;
        Some(RebuildProgress {
            source: stored.source,
            running: locks::rebuild_running(pool, entry.lock_key).await?,
            events_read: stored.events_read,
            events_applied: stored.events_applied,
        })
    } else {
        None
    };
    Ok(ProjectionProgress {
        projection: entry.name.to_owned(),
        events_in_store,
        events_applied,
        lag_events,
        lag_seconds,
        last_checkpoint_at,
        aggregates: status.map_or(0, |status| status.aggregates),
        parked_aggregates: status.map_or(0, |status| status.parked_aggregates),
        retrying_aggregates: status.map_or(0, |status| status.retrying_aggregates),
        dead_letters_unresolved: status.map_or(0, |status| {
            status
                .dead_letters
                .iter()
                .map(|count| count.unresolved)
                .sum()
        }),
        rebuild,
    })
}
