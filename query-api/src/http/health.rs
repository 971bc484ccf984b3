//! Liveness and readiness probes.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::problem::{PROBLEM_JSON, Problem, RETRY_AFTER_SECONDS};
use crate::read_model::projections;

/// How long readiness waits for the database.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// A probe's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

impl HealthStatus {
    fn ok() -> Json<Self> {
        Json(Self {
            status: "ok".into(),
        })
    }
}

/// The process is up and serving HTTP.
#[utoipa::path(
    get, path = "/health/live", tag = "health", operation_id = "live",
    responses((status = 200, description = "Alive", body = HealthStatus))
)]
pub async fn live() -> Json<HealthStatus> {
    HealthStatus::ok()
}

/// The service can answer queries: PostgreSQL answers and the read-model schema exists
/// (the projector creates it; this service never migrates).
#[utoipa::path(
    get, path = "/health/ready", tag = "health", operation_id = "ready",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "PostgreSQL does not answer, or the read-model schema is not migrated yet", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthStatus>, Problem> {
    match tokio::time::timeout(READINESS_TIMEOUT, projections::schema_present(&state.pool)).await {
        Ok(Ok(true)) => Ok(HealthStatus::ok()),
        Ok(Ok(false)) => {
            tracing::warn!("readiness: table read_model.checkpoints does not exist");
            Err(not_ready(
                "the read-model schema is missing (read_model.checkpoints does not exist): \
                 start the projector, which migrates it",
            ))
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database error");
            Err(not_ready("the read-model database is unavailable"))
        }
        Err(_) => {
            tracing::warn!(timeout = ?READINESS_TIMEOUT, "readiness: database timed out");
            Err(not_ready("the read-model database is unavailable"))
        }
    }
}

fn not_ready(detail: &str) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service.not_ready",
        "Not ready",
        detail,
    )
    .retry_after(RETRY_AFTER_SECONDS)
}
