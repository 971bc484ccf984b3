//! `/console/api/overview`: events and commands recorded per time bucket over the last
//! minutes, and the head of the global log.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use ops::params::{ParameterError, QueryParams, parse_limit};
use serde::Serialize;
use sqlx::PgPool;
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};

use crate::{ConsoleError, ConsoleSettings};

/// Longest window, in minutes.
pub const MAX_MINUTES: u32 = 60;

/// The window to chart.
#[derive(Debug, Clone, Copy, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewParams {
    /// The last this many minutes, 1 to 60 (default 5); buckets are as many seconds long.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 60)]
    pub minutes: u32,
}

impl<S: Send + Sync> FromRequestParts<S> for OverviewParams {
    type Rejection = ParameterError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let minutes = parse_limit(params.take("minutes")?, 5, MAX_MINUTES)
            .map_err(|_| ParameterError::parameter("minutes", "must be an integer from 1 to 60"))?;
        params.finish()?;
        Ok(Self { minutes })
    }
}

/// What was recorded in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OverviewBucket {
    /// The bucket's start.
    pub at: DateTime<Utc>,
    /// Events recorded in it.
    pub events: i64,
    /// Commands that recorded events in it (rejected commands record none; the command
    /// API's `keel_commands_total` counts every outcome).
    pub commands: i64,
}

/// The store's recent activity.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    /// When this was read.
    pub now: DateTime<Utc>,
    /// Length of each bucket.
    pub bucket_seconds: u64,
    /// Oldest first, every bucket of the window (empty ones with zeros).
    pub buckets: Vec<OverviewBucket>,
    /// Global position of the last event appended.
    pub log_head: i64,
}

/// Events and commands per bucket over the last minutes, from the event store.
#[utoipa::path(
    get, path = "/console/api/overview", tag = "console", operation_id = "console_overview",
    params(OverviewParams),
    responses(
        (status = 200, description = "Recent activity", body = Overview),
        (status = 400, description = "Unusable parameter", content_type = "application/problem+json"),
    )
)]
#[instrument(skip_all, fields(minutes = params.minutes))]
pub async fn get_overview(
    State(pool): State<PgPool>,
    State(settings): State<ConsoleSettings>,
    params: OverviewParams,
) -> Result<Json<Overview>, ConsoleError> {
    let now = settings.clock.now();
    let bucket = Duration::from_secs(u64::from(params.minutes));
    let since = now - chrono::Duration::minutes(i64::from(params.minutes));
    let buckets = event_store::activity::recorded_since(&pool, since, bucket).await?;
    let log_head = event_store::activity::log_head(&pool).await?;
    Ok(Json(Overview {
        now,
        bucket_seconds: bucket.as_secs(),
        buckets: buckets
            .into_iter()
            .map(|bucket| OverviewBucket {
                at: bucket.at,
                events: bucket.events,
                commands: bucket.commands,
            })
            .collect(),
        log_head,
    }))
}
