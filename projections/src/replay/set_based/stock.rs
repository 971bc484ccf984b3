//! `stock`: one `stock_levels` row per SKU, depending on that SKU's events only.

use std::collections::HashMap;

use aggregates::inventory::InventoryEvent;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Prior, Refusal, Unfolded};
use crate::event::SourceEvent;
use crate::projection::stock_deltas;
use crate::replay::source::StoredEvent;

/// A `stock_levels` row (`available` is generated).
#[derive(Debug, Clone, PartialEq, Eq)]
struct StockRow {
    on_hand: i64,
    reserved: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// `sku` and the columns of [`StockRow`], as read.
type StoredStockRow = (String, i64, i64, DateTime<Utc>, DateTime<Utc>, i64);

pub(super) async fn fold_and_write(
    connection: &mut PgConnection,
    events: &[&StoredEvent],
    prior: Prior<'_>,
) -> Result<(), Unfolded> {
    if events.is_empty() {
        return Ok(());
    }
    let mut skus: Vec<&str> = events
        .iter()
        .filter(|e| prior.may_hold_rows_of(e))
        .map(|e| e.event.metadata.aggregate_id.as_str())
        .collect();
    skus.sort_unstable();
    skus.dedup();
    let existing: Vec<StoredStockRow> = if skus.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT sku, on_hand, reserved, created_at, updated_at, version \
             FROM stock_levels WHERE sku = ANY($1)",
        )
        .bind(&skus)
        .fetch_all(&mut *connection)
        .await?
    };
    let existing = existing.into_iter().map(
        |(sku, on_hand, reserved, created_at, updated_at, version)| {
            (
                sku,
                StockRow {
                    on_hand,
                    reserved,
                    created_at,
                    updated_at,
                    version,
                },
            )
        },
    );
    let rows = fold_stock(existing.collect(), events)?;

    let mut skus = Vec::with_capacity(rows.len());
    let mut on_hand = Vec::with_capacity(rows.len());
    let mut reserved = Vec::with_capacity(rows.len());
    let mut created_at = Vec::with_capacity(rows.len());
    let mut updated_at = Vec::with_capacity(rows.len());
    let mut version = Vec::with_capacity(rows.len());
    for (sku, row) in rows {
        skus.push(sku);
        on_hand.push(row.on_hand);
        reserved.push(row.reserved);
        created_at.push(row.created_at);
        updated_at.push(row.updated_at);
        version.push(row.version);
    }
    // The proposed rows are final states the fold already checked, so the CHECK
    // constraints that an upsert tests on them hold (a per-event delta upsert would not).
    sqlx::query(
        "INSERT INTO stock_levels AS s (sku, on_hand, reserved, created_at, updated_at, version) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[], \
                              $5::timestamptz[], $6::bigint[]) \
         ON CONFLICT (sku) DO UPDATE \
         SET on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved, \
             updated_at = EXCLUDED.updated_at, version = EXCLUDED.version",
    )
    .bind(&skus)
    .bind(&on_hand)
    .bind(&reserved)
    .bind(&created_at)
    .bind(&updated_at)
    .bind(&version)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// The live `stock` apply, in memory: returns the rows the slice changed, in the order they
/// were first touched. `existing` holds the stored rows of the slice's SKUs.
fn fold_stock<'e>(
    mut existing: HashMap<String, StockRow>,
    events: &[&'e StoredEvent],
) -> Result<Vec<(&'e str, StockRow)>, Refusal> {
    let mut touched: Vec<(&'e str, StockRow)> = Vec::new();
    let mut position: HashMap<&'e str, usize> = HashMap::new();
    for (index, stored) in events.iter().enumerate() {
        let refuse = |reason: String| Refusal { index, reason };
        let SourceEvent::Inventory(event) = &stored.event.event else {
            continue;
        };
        let (on_hand, reserved) = stock_deltas(event);
        let metadata = &stored.event.metadata;
        let sku = metadata.aggregate_id.as_str();
        let at = metadata.occurred_at;
        let version = stored.event.sequence();
        let slot = match position.get(sku) {
            Some(slot) => *slot,
            None => {
                let row = match existing.remove(sku) {
                    Some(row) => row,
                    None => {
                        let creates = matches!(
                            event,
                            InventoryEvent::StockAdded { .. }
                                | InventoryEvent::StockAdjusted { .. }
                        );
                        if !creates {
                            return Err(refuse(format!(
                                "{} of {} {sku} (sequence {}) refers to a SKU the read model does not hold",
                                event.event_type_name(),
                                metadata.aggregate_type,
                                metadata.sequence
                            )));
                        }
                        // The live apply inserts the new row with these values; only the
                        // delta below is added to it.
                        StockRow {
                            on_hand: 0,
                            reserved: 0,
                            created_at: at,
                            updated_at: at,
                            version,
                        }
                    }
                };
                position.insert(sku, touched.len());
                touched.push((sku, row));
                touched.len() - 1
            }
        };
        let row = &mut touched[slot].1;
        let (Some(new_on_hand), Some(new_reserved)) = (
            row.on_hand.checked_add(on_hand),
            row.reserved.checked_add(reserved),
        ) else {
            return Err(refuse(format!(
                "stock_levels of {sku}: bigint out of range"
            )));
        };
        // The table's CHECK constraints, after every event as the live apply has them.
        if new_on_hand < 0 || new_reserved < 0 || new_on_hand < new_reserved {
            return Err(refuse(format!(
                "stock_levels of {sku} would violate its check constraints: \
                 on_hand {new_on_hand}, reserved {new_reserved}"
            )));
        }
        row.on_hand = new_on_hand;
        row.reserved = new_reserved;
        row.updated_at = at;
        row.version = version;
    }
    Ok(touched)
}

#[cfg(test)]
// Tests make their own ids and instants (`clippy.toml` bans that in the code under test).
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::collections::HashMap;

    use uuid::Uuid;

    use super::*;
    use crate::replay::set_based::testing::{at, stored_event};

    fn stored(sku: &str, sequence: u64, second: u32, event: InventoryEvent) -> StoredEvent {
        stored_event(
            "inventory",
            sku,
            sequence,
            second,
            SourceEvent::Inventory(event),
        )
    }

    #[test]
    fn a_slice_folds_into_one_row_per_sku() {
        let order = Uuid::new_v4();
        let events = [
            stored("A", 1, 1, InventoryEvent::StockAdded { quantity: 5 }),
            stored("B", 1, 2, InventoryEvent::StockAdded { quantity: 1 }),
            stored(
                "A",
                2,
                3,
                InventoryEvent::StockReserved {
                    order_id: order,
                    quantity: 2,
                },
            ),
            stored(
                "A",
                3,
                4,
                InventoryEvent::ReservationCommitted {
                    order_id: order,
                    quantity: 2,
                },
            ),
        ];
        let refs: Vec<&StoredEvent> = events.iter().collect();
        let rows = fold_stock(HashMap::new(), &refs).unwrap();
        assert_eq!(
            rows,
            vec![
                (
                    "A",
                    StockRow {
                        on_hand: 3,
                        reserved: 0,
                        created_at: at(1),
                        updated_at: at(4),
                        version: 3
                    }
                ),
                (
                    "B",
                    StockRow {
                        on_hand: 1,
                        reserved: 0,
                        created_at: at(2),
                        updated_at: at(2),
                        version: 1
                    }
                ),
            ]
        );
    }

    #[test]
    fn stored_rows_are_continued() {
        let existing = HashMap::from([(
            "A".to_owned(),
            StockRow {
                on_hand: 10,
                reserved: 4,
                created_at: at(0),
                updated_at: at(1),
                version: 7,
            },
        )]);
        let events = [stored(
            "A",
            8,
            9,
            InventoryEvent::StockAdjusted {
                delta: -6,
                reason: "count".into(),
            },
        )];
        let refs: Vec<&StoredEvent> = events.iter().collect();
        let rows = fold_stock(existing, &refs).unwrap();
        assert_eq!(
            rows[0].1,
            StockRow {
                on_hand: 4,
                reserved: 4,
                created_at: at(0),
                updated_at: at(9),
                version: 8
            }
        );
    }

    #[test]
    fn what_the_live_apply_refuses_is_refused() {
        let order = Uuid::new_v4();
        // A reservation of a SKU never stocked: the live apply finds no row.
        let unknown = [stored(
            "A",
            1,
            1,
            InventoryEvent::StockReserved {
                order_id: order,
                quantity: 1,
            },
        )];
        let refs: Vec<&StoredEvent> = unknown.iter().collect();
        let refusal = fold_stock(HashMap::new(), &refs).unwrap_err();
        assert_eq!(refusal.index, 0);
        assert!(
            refusal.reason.contains("does not hold"),
            "{}",
            refusal.reason
        );

        // Reserving more than on hand breaks `available >= 0` after the second event, even
        // though a later event would bring the final row back within the constraints.
        let over = [
            stored("A", 1, 1, InventoryEvent::StockAdded { quantity: 1 }),
            stored(
                "A",
                2,
                2,
                InventoryEvent::StockReserved {
                    order_id: order,
                    quantity: 3,
                },
            ),
            stored("A", 3, 3, InventoryEvent::StockAdded { quantity: 5 }),
        ];
        let refs: Vec<&StoredEvent> = over.iter().collect();
        let refusal = fold_stock(HashMap::new(), &refs).unwrap_err();
        assert_eq!(refusal.index, 1);
        assert!(refusal.reason.contains("check"), "{}", refusal.reason);
    }
}
