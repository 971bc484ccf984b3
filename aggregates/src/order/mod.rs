//! Order: a customer's basket that becomes a commitment (aggregate id = order UUID).
//!
//! The status machine is explicit and lives in one place, [`OrderStatus::allows`]:
//!
//! ```text
//!  Draft ──place──► Placed ──confirm──► Confirmed ──ship──► Shipped ──deliver──► Delivered
//!    │                 │                    │
//!    └────cancel───────┴──────cancel────────┴──► Cancelled
//! ```
//!
//! Lines can be added, re-quantified and removed only while `Draft`. Every other attempt is
//! an [`OrderError::InvalidTransition`] naming the attempted [`OrderAction`] and the status.
//!
//! Money rules: one ISO currency per order, fixed at creation; every line's unit price is in
//! that currency; amounts are integer minor units (`i64`) and all arithmetic is checked, so
//! the order total always equals the sum of `quantity × unit_price` over its lines.
//! An order has at most one line per SKU and at most [`MAX_ORDER_LINES`] lines.

mod aggregate;
mod commands;
mod errors;
mod events;
mod status;

#[cfg(test)]
mod tests;

pub use aggregate::{MAX_ORDER_LINES, MAX_TRACKING_REFERENCE_CHARS, Order};
pub use commands::{
    AddOrderLine, CancelOrder, ChangeOrderLineQuantity, ConfirmOrder, CreateOrder, DeliverOrder,
    OrderCommand, PlaceOrder, RemoveOrderLine, ShipOrder,
};
pub use errors::OrderError;
pub use events::{OrderEvent, OrderLine, order_total};
pub use status::{OrderAction, OrderStatus};
