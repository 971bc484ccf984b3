//! The probes every HTTP service answers: `/health/live` (the process serves HTTP) and the
//! pieces of `/health/ready`, whose check is each service's own (what it needs to answer).

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{Problem, RETRY_AFTER_SECONDS};

/// How long readiness waits for its check.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// A probe's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

impl HealthStatus {
    /// `{"status": "ok"}`.
    pub fn ok() -> Json<Self> {
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

/// A readiness answer from `check`, bounded by [`READINESS_TIMEOUT`]: ready when it returns
/// `Ok(None)`; `Ok(Some(detail))` is not ready for that reason; an error or a timeout is
/// not ready with `unavailable` as the detail. Every refusal is logged with its cause.
///
/// # Errors
/// The 503 `service.not_ready` problem, with `Retry-After`.
pub async fn readiness<E: std::fmt::Display>(
    check: impl Future<Output = Result<Option<String>, E>>,
    unavailable: &str,
) -> Result<Json<HealthStatus>, Problem> {
    match tokio::time::timeout(READINESS_TIMEOUT, check).await {
        Ok(Ok(None)) => Ok(HealthStatus::ok()),
        Ok(Ok(Some(detail))) => {
            tracing::warn!(%detail, "readiness: not ready");
            Err(not_ready(&detail))
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database error");
            Err(not_ready(unavailable))
        }
        Err(_) => {
            tracing::warn!(timeout = ?READINESS_TIMEOUT, "readiness: database timed out");
            Err(not_ready(unavailable))
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

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test]
    async fn ready_when_the_check_passes() {
        let answer = readiness(async { Ok::<_, String>(None) }, "down").await;
        assert_eq!(answer.unwrap().status, "ok");
    }

    #[tokio::test]
    async fn a_failed_or_negative_check_is_a_503_that_says_why() {
        let failed = readiness(async { Err::<Option<String>, _>("boom") }, "down")
            .await
            .unwrap_err();
        assert_eq!((failed.status, failed.detail.as_str()), (503, "down"));
        let missing = readiness(async { Ok::<_, String>(Some("no schema".into())) }, "down")
            .await
            .unwrap_err();
        assert_eq!(missing.detail, "no schema");
        let response = missing.into_response();
        assert_eq!(response.headers()["retry-after"], "1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_is_not_ready_after_the_timeout() {
        let hung = readiness(
            std::future::pending::<Result<Option<String>, String>>(),
            "down",
        )
        .await
        .unwrap_err();
        assert_eq!(hung.code, "service.not_ready");
    }
}
