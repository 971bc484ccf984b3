use uuid::Uuid;

use crate::{DomainError, ErrorCategory};

/// Why an inventory command was rejected. Nothing is recorded when one is returned.
///
/// | code | category | when |
/// |---|---|---|
/// | `inventory.invalid_quantity` | Validation | a quantity is zero, or an adjustment delta is zero |
/// | `inventory.invalid_reason` | Validation | an adjustment reason is blank or longer than 500 characters |
/// | `inventory.quantity_overflow` | Validation | `on_hand` would exceed [`MAX_ON_HAND`](super::MAX_ON_HAND) |
/// | `inventory.unknown_sku` | NotFound | the SKU never received stock |
/// | `inventory.reservation_not_found` | NotFound | no open reservation for that order |
/// | `inventory.insufficient_stock` | InvalidState | a reservation asks for more than `available` |
/// | `inventory.adjustment_below_reserved` | InvalidState | a negative adjustment would leave `on_hand` below `reserved` |
/// | `inventory.reservation_conflict` | InvalidState | the order already holds a reservation of another quantity |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Quantities are positive; adjustment deltas are non-zero.
    #[error("quantity must be positive (adjustments must be non-zero)")]
    InvalidQuantity,
    /// The reason is blank or too long.
    #[error("reason must be non-blank and at most 500 characters")]
    InvalidReason,
    /// The resulting stock level does not fit the supported range.
    #[error("stock level would exceed the supported maximum")]
    QuantityOverflow,
    /// The SKU has never been stocked.
    #[error("unknown SKU: it has never received stock")]
    UnknownSku,
    /// The order holds no open reservation of this SKU.
    #[error("no open reservation for order {order_id}")]
    ReservationNotFound {
        /// The order named by the command.
        order_id: Uuid,
    },
    /// Not enough unreserved stock.
    #[error("insufficient stock: requested {requested}, available {available}")]
    InsufficientStock {
        /// Units asked for.
        requested: u32,
        /// Units available at decision time.
        available: u64,
    },
    /// The adjustment would take `on_hand` below `reserved` (or below zero).
    #[error("adjustment of {delta} would leave on-hand {on_hand} below reserved {reserved}")]
    AdjustmentBelowReserved {
        /// Requested correction.
        delta: i64,
        /// Units on hand at decision time.
        on_hand: u64,
        /// Units reserved at decision time.
        reserved: u64,
    },
    /// The order already reserved a different quantity.
    #[error("order {order_id} already reserved {reserved} units, not {requested}")]
    ReservationConflict {
        /// The order named by the command.
        order_id: Uuid,
        /// Units already reserved for it.
        reserved: u32,
        /// Units the command asked for.
        requested: u32,
    },
}

impl DomainError for InventoryError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidQuantity => "inventory.invalid_quantity",
            Self::InvalidReason => "inventory.invalid_reason",
            Self::QuantityOverflow => "inventory.quantity_overflow",
            Self::UnknownSku => "inventory.unknown_sku",
            Self::ReservationNotFound { .. } => "inventory.reservation_not_found",
            Self::InsufficientStock { .. } => "inventory.insufficient_stock",
            Self::AdjustmentBelowReserved { .. } => "inventory.adjustment_below_reserved",
            Self::ReservationConflict { .. } => "inventory.reservation_conflict",
        }
    }

    fn category(&self) -> ErrorCategory {
        match self {
            Self::InvalidQuantity | Self::InvalidReason | Self::QuantityOverflow => {
                ErrorCategory::Validation
            }
            Self::UnknownSku | Self::ReservationNotFound { .. } => ErrorCategory::NotFound,
            Self::InsufficientStock { .. }
            | Self::AdjustmentBelowReserved { .. }
            | Self::ReservationConflict { .. } => ErrorCategory::InvalidState,
        }
    }
}
