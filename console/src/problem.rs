//! [`ConsoleError`], the one error type of the console's routes, mapped to a problem
//! document by an explicit `match`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ops::params::ParameterError;
use ops::problem::{Problem, RETRY_AFTER_SECONDS, is_transient_database_error};

/// Why a console request was not answered; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A path or query parameter cannot be used (400 naming it).
    #[error(transparent)]
    Request(#[from] ParameterError),
    /// The request body is not what the action takes (400).
    #[error("{0}")]
    Body(String),
    /// No such thing (404).
    #[error("{detail}")]
    NotFound {
        /// Stable code, e.g. `dead_letter.not_found`.
        code: &'static str,
        /// What was not found.
        detail: String,
    },
    /// The action does not fit the current state (409), e.g. a dead letter answered
    /// already.
    #[error("{detail}")]
    Conflict {
        /// Stable code, e.g. `dead_letter.already_resolved`.
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// The action's input is well-formed but unusable (422), e.g. a blank reason.
    #[error("{detail}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            Self::Request(error) => error.problem(),
            Self::Body(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "request.invalid_body",
                "Invalid request body",
                detail,
            ),
            Self::NotFound { code, .. } => {
                Problem::new(StatusCode::NOT_FOUND, code, "Not found", detail)
            }
            Self::Conflict { code, .. } => {
                Problem::new(StatusCode::CONFLICT, code, "Conflict", detail)
            }
            Self::Unprocessable { code, .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Unprocessable request",
                detail,
            ),
            Self::Database(error) if is_transient_database_error(&error) => {
                tracing::error!(error = %error, "console: database unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service.unavailable",
                    "Service unavailable",
                    "the database is unavailable; retry later",
                )
                .retry_after(RETRY_AFTER_SECONDS)
            }
            Self::Database(error) => {
                tracing::error!(error = %error, "console: database query failed");
                Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
        .into_response()
    }
}
