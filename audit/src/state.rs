//! Time travel: an aggregate's state as of a version, rebuilt by folding its events with the
//! domain's own [`Aggregate::apply`], so a past state is exactly what the write side held.

use aggregates::customer::Customer;
use aggregates::inventory::InventoryItem;
use aggregates::order::Order;
use aggregates::payment::Payment;
use cqrs_es::Aggregate;
use serde_json::Value;

use crate::store::FoldEvent;

/// The aggregate types whose state can be rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldableAggregate {
    /// [`Order`].
    Order,
    /// [`Payment`].
    Payment,
    /// [`InventoryItem`].
    Inventory,
    /// [`Customer`].
    Customer,
}

impl FoldableAggregate {
    /// Every foldable `aggregate_type`.
    pub const TYPES: [&'static str; 4] = [
        Order::TYPE,
        Payment::TYPE,
        InventoryItem::TYPE,
        Customer::TYPE,
    ];

    /// The aggregate stored under `aggregate_type`, if this service can fold it.
    pub fn from_type(aggregate_type: &str) -> Option<Self> {
        match aggregate_type {
            Order::TYPE => Some(Self::Order),
            Payment::TYPE => Some(Self::Payment),
            InventoryItem::TYPE => Some(Self::Inventory),
            Customer::TYPE => Some(Self::Customer),
            _ => None,
        }
    }

    /// Applies `events` (in sequence order) to a fresh aggregate and returns its state in
    /// the domain's own serialized form (the form snapshots use).
    ///
    /// # Errors
    /// [`FoldError`] naming the first event that cannot be read as this aggregate's event.
    pub fn fold(self, events: &[FoldEvent]) -> Result<Value, FoldError> {
        match self {
            Self::Order => fold::<Order>(events),
            Self::Payment => fold::<Payment>(events),
            Self::Inventory => fold::<InventoryItem>(events),
            Self::Customer => fold::<Customer>(events),
        }
    }
}

/// A stored event that the domain cannot read.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// The payload does not deserialize as the aggregate's event (of this version).
    #[error("event {sequence} ({event_type} v{event_version}) cannot be read: {source}")]
    Unreadable {
        /// Its position.
        sequence: i64,
        /// Its type.
        event_type: String,
        /// Its payload version.
        event_version: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The folded aggregate does not serialize.
    #[error("the folded state cannot be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
}

fn fold<A: Aggregate>(events: &[FoldEvent]) -> Result<Value, FoldError> {
    let mut aggregate = A::default();
    for event in events {
        let domain_event: A::Event =
            serde_json::from_value(event.payload.clone()).map_err(|source| {
                FoldError::Unreadable {
                    sequence: event.sequence,
                    event_type: event.event_type.clone(),
                    event_version: event.event_version.clone(),
                    source,
                }
            })?;
        aggregate.apply(domain_event);
    }
    serde_json::to_value(&aggregate).map_err(FoldError::Serialize)
}

#[cfg(test)]
// Tests make their own ids and instants (`clippy.toml` bans that in the code under test).
#[allow(clippy::disallowed_methods)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn event(sequence: i64, payload: Value) -> FoldEvent {
        FoldEvent {
            sequence,
            event_type: "StockAdded".into(),
            event_version: "1".into(),
            recorded_at: Utc::now(),
            payload,
        }
    }

    #[test]
    fn known_types_fold_and_others_do_not() {
        assert_eq!(
            FoldableAggregate::TYPES,
            ["order", "payment", "inventory", "customer"],
            "the aggregate types the store uses"
        );
        assert_eq!(FoldableAggregate::from_type("saga"), None);
        let empty = FoldableAggregate::Order.fold(&[]).unwrap();
        assert_eq!(empty, serde_json::to_value(Order::default()).unwrap());
    }

    #[test]
    fn an_unreadable_payload_names_its_event() {
        let error = FoldableAggregate::Inventory
            .fold(&[event(1, json!({"NoSuchEvent": {}}))])
            .unwrap_err();
        assert!(
            error.to_string().starts_with("event 1 (StockAdded v1)"),
            "{error}"
        );
    }
}
