use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of failure a domain error is, so an adapter can choose a response without
/// matching on every variant of every aggregate's error enum.
///
/// The intended HTTP mapping (the HTTP layer owns it; the domain only classifies):
///
/// | category | meaning | HTTP |
/// |---|---|---|
/// | [`Validation`](Self::Validation) | the command itself is malformed or out of range, whatever the state | 422 |
/// | [`NotFound`](Self::NotFound) | the aggregate, or a part of it the command names, does not exist | 404 |
/// | [`InvalidState`](Self::InvalidState) | well-formed, but the aggregate's current state forbids it (illegal transition, business rule conflict) | 409 |
/// | [`Transient`](Self::Transient) | an external dependency failed; nothing was recorded and the same command may be retried | 503 |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCategory {
    /// The command is invalid on its own.
    Validation,
    /// The addressed aggregate or sub-entity does not exist.
    NotFound,
    /// The command conflicts with the aggregate's current state.
    InvalidState,
    /// A dependency is unavailable; retrying later can succeed.
    Transient,
}

impl ErrorCategory {
    /// Stable lowercase name, for logs and problem documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::NotFound => "not_found",
            Self::InvalidState => "invalid_state",
            Self::Transient => "transient",
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Common face of every aggregate's error enum.
///
/// Codes are part of the public contract: clients branch on them, so an existing code is
/// never renamed or reused for a different rule. Messages (`Display`) are for humans and may
/// change.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// Stable machine-readable code, `"<aggregate>.<rule>"`, e.g. `"order.empty_order"`.
    fn code(&self) -> &'static str;
    /// Classification used to pick a transport status.
    fn category(&self) -> ErrorCategory;
    /// The request field a validation error is about, as a dotted path
    /// (`customer_details.email`), when one field is to blame.
    fn field(&self) -> Option<&'static str> {
        None
    }
}
