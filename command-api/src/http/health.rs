//! Readiness (liveness is `ops::health::live`, mounted by the router): this
//! service's own check.

use axum::Json;
use axum::extract::State;
pub use ops::health::HealthStatus;

use super::AppState;
use super::problem::Problem;

/// The service can accept commands: PostgreSQL answers.
#[utoipa::path(
    get, path = "/health/ready", tag = "health", operation_id = "ready",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "PostgreSQL does not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthStatus>, Problem> {
    let check = async {
        sqlx::query("SELECT 1").execute(&state.pool).await?;
        Ok::<_, sqlx::Error>(None)
    };
    ops::health::readiness(check, "the event store is unavailable").await
}
