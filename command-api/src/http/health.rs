//! Liveness and readiness probes.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::problem::{Problem, RETRY_AFTER_SECONDS};

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

/// The service can accept commands: PostgreSQL answers.
#[utoipa::path(
    get, path = "/health/ready", tag = "health", operation_id = "ready",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "PostgreSQL does not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthStatus>, Problem> {
    let probe = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(READINESS_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(HealthStatus::ok()),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database error");
            Err(not_ready())
        }
        Err(_) => {
            tracing::warn!(timeout = ?READINESS_TIMEOUT, "readiness: database timed out");
            Err(not_ready())
        }
    }
}

fn not_ready() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service.not_ready",
        "Not ready",
        "the event store is unavailable",
    )
    .retry_after(RETRY_AFTER_SECONDS)
}
