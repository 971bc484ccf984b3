use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::macros::command_enum_from;

/// Receive `quantity` units into the warehouse. Creates the item on first use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddStock {
    /// Units received; must be positive.
    pub quantity: u32,
}

/// Correct the on-hand count after a stock take, damage, loss or find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustStock {
    /// Signed correction of `on_hand`; non-zero. A negative delta may not take `on_hand`
    /// below what is reserved.
    pub delta: i64,
    /// Why the count changed (audit trail); non-blank, at most 500 characters.
    pub reason: String,
}

/// Set `quantity` units aside for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveStock {
    /// The order the units are held for; also the reservation's identity.
    pub order_id: Uuid,
    /// Units to hold; positive and at most `available`.
    pub quantity: u32,
}

/// Give an order's reserved units back to `available` (order cancelled, compensation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseReservation {
    /// Order whose reservation is released.
    pub order_id: Uuid,
}

/// The reserved units leave the warehouse: both `reserved` and `on_hand` drop by the
/// reservation's quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitReservation {
    /// Order whose reservation is committed.
    pub order_id: Uuid,
}

/// Every command the inventory aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum InventoryCommand {
    /// See [`AddStock`].
    AddStock(AddStock),
    /// See [`AdjustStock`].
    AdjustStock(AdjustStock),
    /// See [`ReserveStock`].
    ReserveStock(ReserveStock),
    /// See [`ReleaseReservation`].
    ReleaseReservation(ReleaseReservation),
    /// See [`CommitReservation`].
    CommitReservation(CommitReservation),
}

command_enum_from!(
    InventoryCommand: AddStock,
    AdjustStock,
    ReserveStock,
    ReleaseReservation,
    CommitReservation,
);

/// Stock commands only read and change the item's own state.
impl crate::Redecide for InventoryCommand {
    fn may_redecide(&self) -> bool {
        true
    }
}
