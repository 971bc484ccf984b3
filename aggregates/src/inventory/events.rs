use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::macros::domain_events;

domain_events! {
    /// Facts about one SKU's stock. Quantities are positive unless stated otherwise.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum InventoryEvent {
        /// Units were received; `on_hand` grew by `quantity`.
        StockAdded { quantity: u32 },
        /// `on_hand` was corrected by the non-zero `delta`, for `reason`.
        StockAdjusted { delta: i64, reason: String },
        /// `quantity` units were set aside for `order_id`.
        StockReserved { order_id: Uuid, quantity: u32 },
        /// The reservation of `order_id` (of `quantity` units) was given back.
        ReservationReleased { order_id: Uuid, quantity: u32 },
        /// The reservation of `order_id` left the warehouse: `on_hand` and `reserved`
        /// both dropped by `quantity`.
        ReservationCommitted { order_id: Uuid, quantity: u32 },
    }
}
