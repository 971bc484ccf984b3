//! [`AuditError`], the one error type of the audit routes, mapped to a problem document by
//! an explicit `match`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ops::params::ParameterError;
use ops::problem::{Problem, RETRY_AFTER_SECONDS, is_transient_database_error};

/// Why an audit request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A path or query parameter cannot be used (400 naming it).
    #[error(transparent)]
    Request(#[from] ParameterError),
    /// The store has no such stream or version.
    #[error("{detail}")]
    NotFound {
        /// Stable code, e.g. `audit.stream_not_found`.
        code: &'static str,
        /// What was not found.
        detail: String,
    },
    /// The event store holds something this service cannot read (an event the domain does
    /// not recognise, a stream with a hole): a 500 whose cause is logged, never shown.
    #[error("unreadable event store content: {0}")]
    Unreadable(String),
    /// The database failed.
    #[error("event store database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl AuditError {
    /// Nothing of that in the store: `audit.<what>`.
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

impl IntoResponse for AuditError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            Self::Request(error) => error.problem(),
            Self::NotFound { code, .. } => {
                Problem::new(StatusCode::NOT_FOUND, code, "Not found", detail)
            }
            Self::Unreadable(cause) => {
                tracing::error!(cause = %cause, "event store content cannot be read");
                Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Database(error) if is_transient_database_error(&error) => {
                tracing::error!(error = %error, "event store unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service.unavailable",
                    "Service unavailable",
                    "the event store is unavailable; retry later",
                )
                .retry_after(RETRY_AFTER_SECONDS)
            }
            Self::Database(error) => {
                tracing::error!(error = %error, "event store query failed");
                Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
        .into_response()
    }
}
