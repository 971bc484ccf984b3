use crate::customer::InvalidCustomerDetails;
use crate::{Currency, DomainError, ErrorCategory, Sku};

use super::status::{OrderAction, OrderStatus};

/// Why an order command was rejected. Nothing is recorded when one is returned.
///
/// | code | category | when |
/// |---|---|---|
/// | `order.invalid_customer_id` | Validation | the customer id is the nil UUID |
/// | `order.invalid_quantity` | Validation | a line quantity is zero |
/// | `order.invalid_unit_price` | Validation | a unit price is negative |
/// | `order.currency_mismatch` | Validation | a unit price is not in the order's currency |
/// | `order.amount_overflow` | Validation | a line or order total would overflow `i64` minor units |
/// | `order.invalid_reason` | Validation | a cancellation reason is blank or longer than 500 characters |
/// | `order.invalid_tracking_reference` | Validation | a tracking reference is blank, too long or has control characters |
/// | `order.invalid_payment_method` | Validation | a payment-method token is blank, too long or has control characters |
/// | `order.invalid_customer_details` | Validation | a personal field is blank, too long, has control characters, or an email/country of the wrong shape |
/// | `order.personal_data_unavailable` | Transient | personal data could not be sealed (no master key configured, or the key table is unreachable) |
/// | `order.not_found` | NotFound | the order was never created |
/// | `order.line_not_found` | NotFound | the order has no line for that SKU |
/// | `order.already_exists` | InvalidState | creating an order that exists |
/// | `order.invalid_transition` | InvalidState | the status machine forbids the action (see [`OrderStatus::allows`]) |
/// | `order.empty_order` | InvalidState | placing an order without lines |
/// | `order.duplicate_line` | InvalidState | adding a second line for a SKU |
/// | `order.too_many_lines` | InvalidState | adding a line past [`MAX_ORDER_LINES`](super::MAX_ORDER_LINES) |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The customer id is nil.
    #[error("customer id must not be the nil UUID")]
    InvalidCustomerId,
    /// Line quantities are positive.
    #[error("line quantity must be positive")]
    InvalidQuantity,
    /// Unit prices are zero or more.
    #[error("unit price must not be negative")]
    InvalidUnitPrice,
    /// The amount is in another currency than the order.
    #[error("currency mismatch: order is in {expected}, got {actual}")]
    CurrencyMismatch {
        /// The order's currency.
        expected: Currency,
        /// The command's currency.
        actual: Currency,
    },
    /// A total would not fit in `i64` minor units.
    #[error("amount overflow")]
    AmountOverflow,
    /// The cancellation reason is blank or too long.
    #[error("reason must be non-blank and at most 500 characters")]
    InvalidReason,
    /// The tracking reference is blank, too long or contains control characters.
    #[error(
        "tracking reference must be non-blank, at most 100 characters, without control characters"
    )]
    InvalidTrackingReference,
    /// The payment-method token is blank, too long or contains control characters.
    #[error(
        "payment method must be a non-blank token of at most 200 characters, without control characters"
    )]
    InvalidPaymentMethod,
    /// A personal field breaks its rule.
    #[error("invalid customer details: {0}")]
    InvalidCustomerDetails(InvalidCustomerDetails),
    /// The customer's personal data could not be sealed; nothing was recorded.
    #[error("personal data cannot be accepted now")]
    PersonalDataUnavailable,
    /// The order does not exist.
    #[error("order not found")]
    NotFound,
    /// The order has no line for this SKU.
    #[error("order has no line for SKU {sku}")]
    LineNotFound {
        /// The SKU named by the command.
        sku: Sku,
    },
    /// The order already exists.
    #[error("order already exists")]
    AlreadyExists,
    /// The status machine forbids this action now.
    #[error("cannot {action} an order that is {status}")]
    InvalidTransition {
        /// What the command tried to do.
        action: OrderAction,
        /// The order's status at decision time.
        status: OrderStatus,
    },
    /// An order needs at least one line to be placed.
    #[error("cannot place an empty order")]
    EmptyOrder,
    /// The order already has a line for this SKU.
    #[error("order already has a line for SKU {sku}; change its quantity instead")]
    DuplicateLine {
        /// The SKU named by the command.
        sku: Sku,
    },
    /// The order is full.
    #[error("an order holds at most {max} lines")]
    TooManyLines {
        /// The limit.
        max: usize,
    },
}

impl DomainError for OrderError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidCustomerId => "order.invalid_customer_id",
            Self::InvalidQuantity => "order.invalid_quantity",
            Self::InvalidUnitPrice => "order.invalid_unit_price",
            Self::CurrencyMismatch { .. } => "order.currency_mismatch",
            Self::AmountOverflow => "order.amount_overflow",
            Self::InvalidReason => "order.invalid_reason",
            Self::InvalidTrackingReference => "order.invalid_tracking_reference",
            Self::InvalidPaymentMethod => "order.invalid_payment_method",
            Self::InvalidCustomerDetails(_) => "order.invalid_customer_details",
            Self::PersonalDataUnavailable => "order.personal_data_unavailable",
            Self::NotFound => "order.not_found",
            Self::LineNotFound { .. } => "order.line_not_found",
            Self::AlreadyExists => "order.already_exists",
            Self::InvalidTransition { .. } => "order.invalid_transition",
            Self::EmptyOrder => "order.empty_order",
            Self::DuplicateLine { .. } => "order.duplicate_line",
            Self::TooManyLines { .. } => "order.too_many_lines",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidCustomerDetails(invalid) => Some(invalid.field),
            _ => None,
        }
    }

    fn category(&self) -> ErrorCategory {
        match self {
            Self::InvalidCustomerId
            | Self::InvalidQuantity
            | Self::InvalidUnitPrice
            | Self::CurrencyMismatch { .. }
            | Self::AmountOverflow
            | Self::InvalidReason
            | Self::InvalidTrackingReference
            | Self::InvalidPaymentMethod
            | Self::InvalidCustomerDetails(_) => ErrorCategory::Validation,
            Self::PersonalDataUnavailable => ErrorCategory::Transient,
            Self::NotFound | Self::LineNotFound { .. } => ErrorCategory::NotFound,
            Self::AlreadyExists
            | Self::InvalidTransition { .. }
            | Self::EmptyOrder
            | Self::DuplicateLine { .. }
            | Self::TooManyLines { .. } => ErrorCategory::InvalidState,
        }
    }
}
