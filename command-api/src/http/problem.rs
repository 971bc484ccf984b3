//! Every error answer is an RFC 9457 `application/problem+json` document. This module has
//! the document, the request-level errors (rejections of our extractors) and the mapping of
//! command errors to statuses; each is an explicit `match`, never a blanket status.

use aggregates::{DomainError, ErrorCategory};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::CommandError;

pub use ops::problem::{FieldError, PROBLEM_JSON, Problem, RETRY_AFTER_SECONDS};

/// The command API's problem for a bare status: a timeout's outcome is unknown, so it says
/// to retry with the same `Idempotency-Key`.
pub fn for_status(status: StatusCode) -> Problem {
    let problem = Problem::for_status(status);
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT
    ) {
        problem.with_detail(
            "the request took too long; its outcome is unknown, retry with the same Idempotency-Key",
        )
    } else {
        problem
    }
}

/// A stored version as the problem document carries it.
fn version(version: u64) -> Option<i64> {
    i64::try_from(version).ok()
}

/// The request itself is unusable: rejected by an extractor before any command runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not JSON (syntax error, truncated, trailing data).
    #[error("the body is not valid JSON: {detail}")]
    MalformedJson {
        /// The parser's complaint.
        detail: String,
    },
    /// The body is JSON but not the expected shape: unknown, missing or mistyped fields,
    /// out-of-range numbers, invalid values.
    #[error("the body does not match the expected schema")]
    InvalidBody {
        /// The offending fields.
        errors: Vec<FieldError>,
    },
    /// A body was sent with a `Content-Type` other than JSON.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The body exceeds the configured limit.
    #[error("the body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read from the connection.
    #[error("the body could not be read")]
    UnreadableBody,
    /// A header is malformed.
    #[error("header {name}: {detail}")]
    InvalidHeader {
        /// The header.
        name: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A path segment does not parse (not a UUID, not a SKU).
    #[error("{detail}")]
    InvalidPath {
        /// What is wrong with it.
        detail: String,
    },
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let problem = match self {
            Self::MalformedJson { .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "request.malformed_json",
                "Malformed JSON",
                detail,
            ),
            Self::InvalidBody { errors } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "request.invalid_body",
                "Invalid request body",
                detail,
            )
            .with_errors(errors),
            Self::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request.unsupported_media_type",
                "Unsupported media type",
                detail,
            ),
            Self::PayloadTooLarge { .. } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request.body_too_large",
                "Request body too large",
                detail,
            ),
            Self::UnreadableBody => Problem::new(
                StatusCode::BAD_REQUEST,
                "request.unreadable_body",
                "Unreadable request body",
                detail,
            ),
            Self::InvalidHeader { .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "request.invalid_header",
                "Invalid header",
                detail,
            ),
            Self::InvalidPath { .. } => Problem::new(
                StatusCode::BAD_REQUEST,
                "request.invalid_path",
                "Invalid path parameter",
                detail,
            ),
        };
        problem.into_response()
    }
}

/// The HTTP status of each domain error category (the table in `aggregates::ErrorCategory`).
pub fn status_for(category: ErrorCategory) -> StatusCode {
    match category {
        ErrorCategory::Validation => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCategory::NotFound => StatusCode::NOT_FOUND,
        ErrorCategory::InvalidState => StatusCode::CONFLICT,
        ErrorCategory::Transient => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The problem document of a domain rejection.
pub fn domain_problem<E: DomainError>(error: &E) -> Problem {
    let category = error.category();
    let status = status_for(category);
    let title = match category {
        ErrorCategory::Validation => "Invalid command",
        ErrorCategory::NotFound => "Not found",
        ErrorCategory::InvalidState => "Not allowed in the current state",
        ErrorCategory::Transient => "Temporarily unavailable",
    };
    let problem = Problem::new(status, error.code(), title, error.to_string());
    match category {
        ErrorCategory::Validation => problem.with_errors(vec![FieldError {
            // A dotted field path as a JSON pointer into the request body.
            pointer: error
                .field()
                .map(|field| format!("/{}", field.replace('.', "/")))
                .unwrap_or_default(),
            detail: error.to_string(),
        }]),
        ErrorCategory::Transient => problem.retry_after(RETRY_AFTER_SECONDS),
        ErrorCategory::NotFound | ErrorCategory::InvalidState => problem,
    }
}

impl<E: DomainError> IntoResponse for CommandError<E> {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        match self {
            Self::Domain(error) => {
                if error.category() == ErrorCategory::Transient {
                    tracing::warn!(code = error.code(), error = ?error, "dependency failed");
                } else {
                    tracing::info!(code = error.code(), "command rejected");
                }
                domain_problem(&error).into_response()
            }
            Self::PreconditionFailed { current_version } => {
                let mut response = Problem::new(
                    StatusCode::PRECONDITION_FAILED,
                    "concurrency.version_mismatch",
                    "Version mismatch",
                    format!("{detail} (If-Match)"),
                )
                .with_current_version(version(current_version))
                .into_response();
                if let Ok(etag) = HeaderValue::from_str(&format!("\"{current_version}\"")) {
                    response.headers_mut().insert(header::ETAG, etag);
                }
                response
            }
            Self::Conflict { current_version } => Problem::new(
                StatusCode::CONFLICT,
                "concurrency.conflict",
                "Concurrent modification",
                format!("{detail}; reload and retry"),
            )
            .with_current_version(version(current_version))
            .into_response(),
            Self::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency.key_reused",
                "Idempotency key reused",
                format!("{detail}; use a new key for a new request"),
            )
            .into_response(),
            Self::Unavailable(error) => {
                tracing::error!(error = %error, "event store unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service.unavailable",
                    "Service unavailable",
                    "the event store is unavailable; retry later, with the same Idempotency-Key to be safe",
                )
                .retry_after(RETRY_AFTER_SECONDS)
                .into_response()
            }
            Self::Corrupt(error) => {
                tracing::error!(error = %error, "event store holds unreadable data");
                for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
            }
        }
    }
}
