//! Inventory: one aggregate per SKU (the aggregate id is the SKU text).
//!
//! Invariants, true after every event:
//! - `available = on_hand - reserved` is never negative;
//! - `reserved` equals the sum of the open reservations, one per order;
//! - every quantity a command carries is positive.
//!
//! Reservations are keyed by order id: an order reserves a SKU at most once (an order has
//! one line per SKU). Reserving again with the same quantity is an idempotent no-op, so a
//! retried saga step is harmless. Reserving again with a **different** quantity is rejected
//! (`inventory.reservation_conflict`): a changed quantity means the caller's view is stale,
//! and silently resizing a reservation would hide that; release first, then reserve anew.
//!
//! A SKU comes into existence with its first [`AddStock`]; any other command on a SKU
//! that never received stock is `inventory.unknown_sku`.

mod aggregate;
mod commands;
mod errors;
mod events;

#[cfg(test)]
mod tests;

pub use aggregate::{InventoryItem, MAX_ON_HAND};
pub use commands::{
    AddStock, AdjustStock, CommitReservation, InventoryCommand, ReleaseReservation, ReserveStock,
};
pub use errors::InventoryError;
pub use events::InventoryEvent;
