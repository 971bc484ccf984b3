//! The one problem document of every HTTP answer that is an error: RFC 9457
//! `application/problem+json` with a stable `code`, and the members an answer needs where
//! they apply (the fields or parameter at fault, the versions of a conflict or of a
//! read-your-writes wait). Each API keeps its own mapping of its errors to problems; the
//! gate's rejections use the same document, so a client handles every 4xx the same way.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// An RFC 9457 problem document, extended with a stable `code`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// URI identifying the problem type: `urn:keel:problem:<code>` unless a problem names
    /// its own.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, for humans.
    pub detail: String,
    /// Stable machine-readable code: a domain code such as `order.empty_order`, or one of
    /// the `request.*`, `concurrency.*`, `idempotency.*`, `auth.*`, `service.*`, `http.*`
    /// codes, or `not_yet_consistent`.
    pub code: String,
    /// For an invalid body: each offending field (JSON pointer into the body) and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For an invalid path or query: the parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// For `not_yet_consistent`: the version asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_version: Option<i64>,
    /// For a version conflict: the aggregate's version now (also its `ETag`). For
    /// `not_yet_consistent`: the version the read model holds (`null`: none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<Option<i64>>,
    #[serde(skip)]
    #[schema(ignore)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// One invalid part of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// RFC 6901 JSON pointer to the offending value in the body (`""` = the whole body).
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
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
            errors: Vec::new(),
            parameter: None,
            requested_version: None,
            current_version: None,
            headers: Vec::new(),
        }
    }

    /// A problem for a bare status (unknown route, wrong method, timeout, …). A 503 says to
    /// retry after [`RETRY_AFTER_SECONDS`].
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

    /// Replaces the detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Names the offending fields of the body.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Names the path or query parameter at fault.
    pub fn with_parameter(mut self, parameter: impl Into<String>) -> Self {
        self.parameter = Some(parameter.into());
        self
    }

    /// Adds the current version (`None`: there is none yet).
    pub fn with_current_version(mut self, version: Option<i64>) -> Self {
        self.current_version = Some(version);
        self
    }

    /// Adds the version asked for.
    pub fn with_requested_version(mut self, version: i64) -> Self {
        self.requested_version = Some(version);
        self
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(self, seconds: u64) -> Self {
        self.with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// The problem an API answers for a bare status.
pub type ForStatus = fn(StatusCode) -> Problem;

/// Safety net of every API (`middleware::from_fn_with_state(for_status, problem_bodies)`):
/// an error response that is not already a problem document (from a layer such as the
/// timeout, or from axum itself) gets `for_status`'s, so no plain-text or empty error
/// escapes. The response keeps its other headers.
pub async fn problem_bodies(
    State(for_status): State<ForStatus>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == HeaderValue::from_static(PROBLEM_JSON));
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let (mut parts, _) = response.into_parts();
        let (replacement_parts, body) = for_status(status).into_response().into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        for (name, value) in &replacement_parts.headers {
            parts.headers.insert(name, value.clone());
        }
        return Response::from_parts(parts, body);
    }
    response
}

/// Database errors that mean "try again later": the database is unreachable, overloaded,
/// shutting down, or a schema this build reads has not been migrated yet by its owner. An
/// API answers them 503 with `Retry-After`; any other database error is a 500.
pub fn is_transient_database_error(error: &sqlx::Error) -> bool {
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
            // owner — the projector for the read models, the event store's migrator for the
            // events — has not migrated its schema to what this build reads yet).
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

#[cfg(test)]
mod tests {
    #[test]
    fn only_infrastructure_failures_are_transient() {
        assert!(super::is_transient_database_error(
            &sqlx::Error::PoolTimedOut
        ));
        assert!(!super::is_transient_database_error(
            &sqlx::Error::RowNotFound
        ));
        assert!(!super::is_transient_database_error(
            &sqlx::Error::ColumnNotFound("x".into())
        ));
    }

    use super::*;

    fn body(problem: Problem) -> serde_json::Value {
        serde_json::to_value(problem).unwrap()
    }

    #[test]
    fn members_that_do_not_apply_are_absent() {
        let problem = Problem::new(StatusCode::NOT_FOUND, "order.not_found", "Not found", "x");
        assert_eq!(
            body(problem),
            serde_json::json!({"type": "urn:keel:problem:order.not_found", "title": "Not found",
                "status": 404, "detail": "x", "code": "order.not_found"})
        );
    }

    #[test]
    fn an_unknown_current_version_is_null_not_absent() {
        let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "c", "t", "d")
            .with_requested_version(3)
            .with_current_version(None);
        let body = body(problem);
        assert_eq!(body["requested_version"], 3);
        assert!(body["current_version"].is_null());
        assert!(body.as_object().unwrap().contains_key("current_version"));
    }

    #[test]
    fn a_503_for_a_bare_status_says_when_to_retry() {
        let response = Problem::for_status(StatusCode::SERVICE_UNAVAILABLE).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
