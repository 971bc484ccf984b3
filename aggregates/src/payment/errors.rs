use uuid::Uuid;

use crate::{Currency, DomainError, ErrorCategory, Money};

use super::status::{PaymentAction, PaymentStatus};

/// Why a payment command was rejected. Nothing is recorded when one is returned.
/// A gateway decline is **not** an error: it is recorded as `PaymentDeclined`.
///
/// | code | category | when |
/// |---|---|---|
/// | `payment.invalid_amount` | Validation | an amount is zero or negative |
/// | `payment.invalid_payment_method` | Validation | the payment-method token is blank, too long or has control characters |
/// | `payment.invalid_reason` | Validation | a void/refund reason is blank or longer than 500 characters |
/// | `payment.currency_mismatch` | Validation | an amount is not in the authorization's currency |
/// | `payment.not_found` | NotFound | capture/void/refund of a payment never authorized |
/// | `payment.invalid_transition` | InvalidState | the status machine forbids the action (see [`PaymentStatus::allows`]) |
/// | `payment.capture_exceeds_authorization` | InvalidState | capturing more than was authorized |
/// | `payment.refund_exceeds_captured` | InvalidState | refunds would add up to more than was captured |
/// | `payment.refund_conflict` | InvalidState | a refund id is reused with another amount |
/// | `payment.gateway_timeout` | Transient | the gateway did not answer in time; retry |
/// | `payment.gateway_unavailable` | Transient | the gateway is unreachable or failing; retry |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Amounts are positive.
    #[error("amount must be positive")]
    InvalidAmount,
    /// The payment-method token is unusable.
    #[error("payment method must be a non-blank token of at most 200 characters")]
    InvalidPaymentMethod,
    /// The reason is blank or too long.
    #[error("reason must be non-blank and at most 500 characters")]
    InvalidReason,
    /// The amount is in another currency than the authorization.
    #[error("currency mismatch: payment is in {expected}, got {actual}")]
    CurrencyMismatch {
        /// The authorization's currency.
        expected: Currency,
        /// The command's currency.
        actual: Currency,
    },
    /// The payment was never authorized (no events).
    #[error("payment not found")]
    NotFound,
    /// The status machine forbids this action now.
    #[error("cannot {action} a payment that is {status}")]
    InvalidTransition {
        /// What the command tried to do.
        action: PaymentAction,
        /// The payment's status at decision time.
        status: PaymentStatus,
    },
    /// Capturing more than was authorized.
    #[error("capture of {requested} exceeds the authorized {authorized}")]
    CaptureExceedsAuthorization {
        /// Amount the command asked for.
        requested: Money,
        /// Amount authorized.
        authorized: Money,
    },
    /// Refunding more than remains of the captured amount.
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    RefundExceedsCaptured {
        /// Amount the command asked for.
        requested: Money,
        /// Captured minus already refunded, at decision time.
        refundable: Money,
    },
    /// The refund id was already used for a different amount.
    #[error("refund {refund_id} was already made for another amount")]
    RefundConflict {
        /// The reused refund id.
        refund_id: Uuid,
    },
    /// The gateway timed out; the outcome at the gateway is unknown, so retry with the same
    /// command (the idempotency key makes that safe).
    #[error("payment gateway timed out")]
    GatewayTimeout,
    /// The gateway could not be reached or failed. The detail is for logs, not for clients.
    #[error("payment gateway unavailable")]
    GatewayUnavailable {
        /// Diagnostic detail from the adapter.
        detail: String,
    },
}

impl DomainError for PaymentError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidAmount => "payment.invalid_amount",
            Self::InvalidPaymentMethod => "payment.invalid_payment_method",
            Self::InvalidReason => "payment.invalid_reason",
            Self::CurrencyMismatch { .. } => "payment.currency_mismatch",
            Self::NotFound => "payment.not_found",
            Self::InvalidTransition { .. } => "payment.invalid_transition",
            Self::CaptureExceedsAuthorization { .. } => "payment.capture_exceeds_authorization",
            Self::RefundExceedsCaptured { .. } => "payment.refund_exceeds_captured",
            Self::RefundConflict { .. } => "payment.refund_conflict",
            Self::GatewayTimeout => "payment.gateway_timeout",
            Self::GatewayUnavailable { .. } => "payment.gateway_unavailable",
        }
    }

    fn category(&self) -> ErrorCategory {
        match self {
            Self::InvalidAmount
            | Self::InvalidPaymentMethod
            | Self::InvalidReason
            | Self::CurrencyMismatch { .. } => ErrorCategory::Validation,
            Self::NotFound => ErrorCategory::NotFound,
            Self::InvalidTransition { .. }
            | Self::CaptureExceedsAuthorization { .. }
            | Self::RefundExceedsCaptured { .. }
            | Self::RefundConflict { .. } => ErrorCategory::InvalidState,
            Self::GatewayTimeout | Self::GatewayUnavailable { .. } => ErrorCategory::Transient,
        }
    }
}
