//! Projection `stock`: `stock_levels`, one row per SKU.

use aggregates::inventory::InventoryEvent;
use sqlx::PgConnection;

use super::{ApplyError, expect_row};
use crate::event::{ProjectedEvent, SourceEvent};

pub(super) async fn apply(
    connection: &mut PgConnection,
    event: &ProjectedEvent,
) -> Result<(), ApplyError> {
    let SourceEvent::Inventory(inventory_event) = &event.event else {
        return Ok(());
    };
    let (on_hand, reserved) = deltas(inventory_event);
    let sku = &event.metadata.aggregate_id;
    let at = event.metadata.occurred_at;
    // Update first: an upsert would check the proposed new row against the CHECK
    // constraints even when it conflicts, rejecting every decrement.
    let updated = sqlx::query(
        "UPDATE stock_levels \
         SET on_hand = on_hand + $2, reserved = reserved + $3, updated_at = $4, version = $5 \
         WHERE sku = $1",
    )
    .bind(sku)
    .bind(on_hand)
    .bind(reserved)
    .bind(at)
    .bind(event.sequence())
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if updated > 0 {
        return Ok(());
    }
    let creates = matches!(
        inventory_event,
        InventoryEvent::StockAdded { .. } | InventoryEvent::StockAdjusted { .. }
    );
    if !creates {
        return expect_row(0, event, "a SKU");
    }
    sqlx::query(
        "INSERT INTO stock_levels \
         (sku, on_hand, reserved, created_at, updated_at, version) \
         VALUES ($1, $2, 0, $3, $3, $4)",
    )
    .bind(sku)
    .bind(on_hand)
    .bind(at)
    .bind(event.sequence())
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// What an inventory event adds to a SKU's `on_hand` and `reserved` (the live apply and the
/// rebuild's fold both use it).
pub(crate) fn deltas(event: &InventoryEvent) -> (i64, i64) {
    match event {
        InventoryEvent::StockAdded { quantity } => (i64::from(*quantity), 0),
        InventoryEvent::StockAdjusted { delta, .. } => (*delta, 0),
        InventoryEvent::StockReserved { quantity, .. } => (0, i64::from(*quantity)),
        InventoryEvent::ReservationReleased { quantity, .. } => (0, -i64::from(*quantity)),
        InventoryEvent::ReservationCommitted { quantity, .. } => {
            (-i64::from(*quantity), -i64::from(*quantity))
        }
    }
}
