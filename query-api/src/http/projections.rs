//! `/projections`: progress and dead letters per projection, for operators.

use axum::Json;
use axum::extract::State;
use tracing::instrument;

use super::AppState;
use super::extract::NoParams;
use super::problem::QueryError;
use read_model::projections::{self, ProjectionsOverview};

/// Per projection: source aggregates tracked and parked, when a checkpoint last moved, and
/// dead letters by reason.
#[utoipa::path(
    get, path = "/projections", tag = "operations", operation_id = "get_projections",
    responses((status = 200, description = "Every projection with checkpoints or dead letters", body = ProjectionsOverview))
)]
#[instrument(skip_all)]
pub async fn get_projections(
    State(state): State<AppState>,
    _: NoParams,
) -> Result<Json<ProjectionsOverview>, QueryError> {
    Ok(Json(projections::overview(&state.pool).await?))
}
