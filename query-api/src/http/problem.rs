//! Every error answer is an RFC 9457 `application/problem+json` document. This module has
//! the document and [`QueryError`], the one error type of every query route, mapped to a
//! status by an explicit `match`.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use ops::params::ParameterError;
use ops::problem::is_transient_database_error;
pub use ops::problem::{PROBLEM_JSON, Problem, RETRY_AFTER_SECONDS};

/// `code` of the answer to a `min_version` read whose wait timed out.
pub const NOT_YET_CONSISTENT: &str = "not_yet_consistent";
/// `type` of that answer.
pub const NOT_YET_CONSISTENT_TYPE: &str = "urn:keel:problem:read-model-not-caught-up";

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A path or query parameter cannot be used (400 naming it).
    #[error(transparent)]
    Request(#[from] ParameterError),
    /// The read model has no such row.
    #[error("{detail}")]
    NotFound {
        /// Stable code, e.g. `order.not_found`.
        code: &'static str,
        /// Which id was not found.
        detail: String,
    },
    /// `min_version` was not reached within the wait.
    #[error(
        "the read model has not caught up with version {requested} within {}ms (it holds {}); retry shortly",
        waited.as_millis(),
        current.map_or_else(|| "nothing yet".to_owned(), |v| format!("version {v}"))
    )]
    NotYetConsistent {
        /// The version asked for.
        requested: i64,
        /// The version held (`None`: no row yet).
        current: Option<i64>,
        /// How long the request waited.
        waited: Duration,
    },
    /// The database failed.
    #[error("read-model database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl QueryError {
    /// A row that does not exist: `<resource>.not_found`.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            detail: detail.into(),
        }
    }

    /// An unusable query parameter.
    pub fn parameter(parameter: &str, detail: impl Into<String>) -> Self {
        Self::Request(ParameterError::parameter(parameter, detail))
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            Self::Request(error) => error.problem(),
            Self::NotFound { code, .. } => {
                Problem::new(StatusCode::NOT_FOUND, code, "Not found", detail)
            }
            Self::NotYetConsistent {
                requested, current, ..
            } => {
                tracing::info!(requested, current, "read model not caught up in time");
                let mut problem = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    NOT_YET_CONSISTENT,
                    "Read model not caught up",
                    detail,
                )
                .retry_after(RETRY_AFTER_SECONDS);
                problem.problem_type = NOT_YET_CONSISTENT_TYPE.to_owned();
                problem = problem
                    .with_requested_version(requested)
                    .with_current_version(current);
                problem
            }
            Self::Database(error) if is_transient_database_error(&error) => {
                tracing::error!(error = %error, "read-model database unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service.unavailable",
                    "Service unavailable",
                    "the read models are unavailable; retry later",
                )
                .retry_after(RETRY_AFTER_SECONDS)
            }
            Self::Database(error) => {
                tracing::error!(error = %error, "read-model query failed");
                Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_yet_consistent_names_both_versions() {
        let error = QueryError::NotYetConsistent {
            requested: 5,
            current: Some(3),
            waited: Duration::from_millis(500),
        };
        assert_eq!(
            error.to_string(),
            "the read model has not caught up with version 5 within 500ms (it holds version 3); retry shortly"
        );
        let error = QueryError::NotYetConsistent {
            requested: 1,
            current: None,
            waited: Duration::from_millis(500),
        };
        assert!(error.to_string().contains("holds nothing yet"), "{error}");
    }
}
