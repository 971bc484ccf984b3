use std::fmt;

use serde::{Deserialize, Serialize};

/// Lifecycle of an order. `Delivered` and `Cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Being assembled by the customer; lines may change.
    Draft,
    /// Submitted; lines are frozen, fulfilment (reservation, payment) may start.
    Placed,
    /// Stock reserved and payment authorized; ready to ship.
    Confirmed,
    /// Handed to the carrier.
    Shipped,
    /// Received by the customer. Terminal.
    Delivered,
    /// Abandoned or compensated. Terminal.
    Cancelled,
}

/// What a command tries to do to an order's lifecycle; named in
/// [`OrderError::InvalidTransition`](super::OrderError::InvalidTransition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderAction {
    /// [`AddOrderLine`](super::AddOrderLine).
    AddLine,
    /// [`ChangeOrderLineQuantity`](super::ChangeOrderLineQuantity).
    ChangeLineQuantity,
    /// [`RemoveOrderLine`](super::RemoveOrderLine).
    RemoveLine,
    /// [`PlaceOrder`](super::PlaceOrder).
    Place,
    /// [`ConfirmOrder`](super::ConfirmOrder).
    Confirm,
    /// [`CancelOrder`](super::CancelOrder).
    Cancel,
    /// [`ShipOrder`](super::ShipOrder).
    Ship,
    /// [`DeliverOrder`](super::DeliverOrder).
    Deliver,
}

impl OrderStatus {
    /// Every status, for exhaustive tests and documentation.
    pub const ALL: [OrderStatus; 6] = [
        Self::Draft,
        Self::Placed,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The status machine: whether `action` is legal from this status.
    ///
    /// Cancelling is allowed until the goods leave (`Draft`, `Placed`, `Confirmed`); after
    /// shipping, undoing an order is a return, which is a different process.
    pub fn allows(self, action: OrderAction) -> bool {
        use OrderAction as A;
        use OrderStatus as S;
        matches!(
            (self, action),
            (
                S::Draft,
                A::AddLine | A::ChangeLineQuantity | A::RemoveLine | A::Place | A::Cancel
            ) | (S::Placed, A::Confirm | A::Cancel)
                | (S::Confirmed, A::Ship | A::Cancel)
                | (S::Shipped, A::Deliver)
        )
    }

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Placed => "placed",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }
}

impl OrderAction {
    /// Every action, for exhaustive tests.
    pub const ALL: [OrderAction; 8] = [
        Self::AddLine,
        Self::ChangeLineQuantity,
        Self::RemoveLine,
        Self::Place,
        Self::Confirm,
        Self::Cancel,
        Self::Ship,
        Self::Deliver,
    ];

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddLine => "add_line",
            Self::ChangeLineQuantity => "change_line_quantity",
            Self::RemoveLine => "remove_line",
            Self::Place => "place",
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
            Self::Ship => "ship",
            Self::Deliver => "deliver",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for OrderAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
