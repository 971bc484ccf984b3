//! Every error answer is an RFC 9457 `application/problem+json` document. This module has
//! the document and [`QueryError`], the one error type of every query route, mapped to a
//! status by an explicit `match`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// `code` of the answer to a `min_version` read whose wait timed out.
pub const NOT_YET_CONSISTENT: &str = "not_yet_consistent";
/// `type` of that answer.
pub const NOT_YET_CONSISTENT_TYPE: &str = "urn:keel:problem:read-model-not-caught-up";

/// An RFC 9457 problem document, extended with a stable `code` and, where they apply, the
/// offending parameter and the versions of a read-your-writes wait.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// URI identifying the problem type: `urn:keel:problem:<code>`, except
    /// `urn:keel:problem:read-model-not-caught-up` for code `not_yet_consistent`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, for humans.
    pub detail: String,
    /// Stable machine-readable code: `order.not_found`, `request.invalid_parameter`,
    /// `not_yet_consistent`, `service.unavailable`, ….
    pub code: String,
    /// For invalid input: the path or query parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// For `not_yet_consistent`: the version asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_version: Option<i64>,
    /// For `not_yet_consistent`: the version the read model holds (`null`: none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<Option<i64>>,
    #[serde(skip)]
    #[schema(ignore)]
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem with `status`, stable `code`, `title` and `detail`.
    pub fn new(
        status: StatusCode,
        code: impl Into<String>,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        let code = code.into();
        Self {
            problem_type: format!("urn:keel:problem:{code}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            parameter: None,
            requested_version: None,
            current_version: None,
            retry_after: None,
        }
    }

    /// Names the parameter at fault.
    pub fn with_parameter(mut self, parameter: impl Into<String>) -> Self {
        self.parameter = Some(parameter.into());
        self
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A problem for a bare status (unknown route, wrong method, timeout, …).
    pub fn for_status(status: StatusCode) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        let (code, detail) = match status {
            StatusCode::NOT_FOUND => ("http.not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "http.method_not_allowed",
                "the resource does not support this method",
            ),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
                ("service.timeout", "the request took too long; retry later")
            }
            _ if status.is_server_error() => ("service.internal_error", "internal error"),
            _ => ("http.error", reason),
        };
        let problem = Self::new(status, code, reason, detail);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            problem.retry_after(RETRY_AFTER_SECONDS)
        } else {
            problem
        }
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A path segment does not parse (not a UUID, not a SKU).
    #[error("{parameter}: {detail}")]
    InvalidPath {
        /// The path parameter.
        parameter: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A query parameter is malformed, out of range, repeated or unknown.
    #[error("{parameter}: {detail}")]
    InvalidParameter {
        /// The query parameter.
        parameter: String,
        /// What is wrong with it.
        detail: String,
    },
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
    /// The event store holds something this service cannot read (an event the domain does
    /// not recognise, a stream with a hole): a 500 whose cause is logged, never shown.
    #[error("unreadable event store content: {0}")]
    Unreadable(String),
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
        Self::InvalidParameter {
            parameter: parameter.to_owned(),
            detail: detail.into(),
        }
    }
}

/// Errors that mean "try again later": the database is unreachable, overloaded, shutting
/// down, or its read-model schema is not there yet (the projector migrates it).
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // 08: connection exception, 53: insufficient resources, 57: operator
            // intervention (shutdown, cancel), 40: rollback (serialization, deadlock),
            // 3F000: schema missing, 42P01: table missing, 42703: column missing (the
            // owner — projector, or the command API for the event store — has not migrated
            // its schema to what this build reads yet).
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "3F000"
                || code == "42P01"
                || code == "42703"
        }),
        _ => false,
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            Self::InvalidPath { parameter, .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "request.invalid_path",
                "Invalid path parameter",
                detail,
            )
            .with_parameter(parameter),
            Self::InvalidParameter { parameter, .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "request.invalid_parameter",
                "Invalid query parameter",
                detail,
            )
            .with_parameter(parameter),
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
                problem.requested_version = Some(requested);
                problem.current_version = Some(current);
                problem
            }
            Self::Unreadable(cause) => {
                tracing::error!(cause = %cause, "event store content cannot be read");
                Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Database(error) if is_transient(&error) => {
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

    #[test]
    fn only_infrastructure_failures_are_transient() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
