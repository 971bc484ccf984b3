//! Readiness (liveness is `ops::health::live`, mounted by the router): this
//! service's own check.

use axum::Json;
use axum::extract::State;
pub use ops::health::HealthStatus;

use super::AppState;
use super::problem::{PROBLEM_JSON, Problem};
use read_model::projections;

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
    let check = async {
        let present = projections::schema_present(&state.pool).await?;
        Ok::<_, sqlx::Error>((!present).then(|| {
            "the read-model schema is missing (read_model.checkpoints does not exist): \
             start the projector, which migrates it"
                .to_owned()
        }))
    };
    ops::health::readiness(check, "the read-model database is unavailable").await
}
