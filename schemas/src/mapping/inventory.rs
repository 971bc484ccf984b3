use aggregates::inventory::InventoryEvent;
use apache_avro::types::Value;

use super::fields::{Fields, event_record, long, quantity, split_event_record, string, uuid};
use super::{AvroEvent, check_aggregate, unknown_event_type};
use crate::{AggregateKind, EventMetadata, MappingError};

impl AvroEvent for InventoryEvent {
    const AGGREGATE: AggregateKind = AggregateKind::Inventory;

    fn to_avro(&self, metadata: &EventMetadata) -> Result<Value, MappingError> {
        check_aggregate(Self::AGGREGATE, metadata)?;
        let payload = match self {
            Self::StockAdded { quantity: q } => vec![("quantity", quantity(*q))],
            Self::StockAdjusted { delta, reason } => {
                vec![("delta", long(*delta)), ("reason", string(reason))]
            }
            Self::StockReserved {
                order_id,
                quantity: q,
            }
            | Self::ReservationReleased {
                order_id,
                quantity: q,
            }
            | Self::ReservationCommitted {
                order_id,
                quantity: q,
            } => vec![("order_id", uuid(*order_id)), ("quantity", quantity(*q))],
        };
        event_record(metadata, payload)
    }

    fn from_avro(event_type: &str, value: Value) -> Result<(EventMetadata, Self), MappingError> {
        let (metadata, mut f) = split_event_record(event_type, value)?;
        check_aggregate(Self::AGGREGATE, &metadata)?;
        let event = decode(event_type, &mut f)?;
        Ok((metadata, event))
    }
}

fn decode(event_type: &str, f: &mut Fields) -> Result<InventoryEvent, MappingError> {
    Ok(match event_type {
        "StockAdded" => InventoryEvent::StockAdded {
            quantity: f.quantity("quantity")?,
        },
        "StockAdjusted" => InventoryEvent::StockAdjusted {
            delta: f.long("delta")?,
            reason: f.string("reason")?,
        },
        "StockReserved" => InventoryEvent::StockReserved {
            order_id: f.uuid("order_id")?,
            quantity: f.quantity("quantity")?,
        },
        "ReservationReleased" => InventoryEvent::ReservationReleased {
            order_id: f.uuid("order_id")?,
            quantity: f.quantity("quantity")?,
        },
        "ReservationCommitted" => InventoryEvent::ReservationCommitted {
            order_id: f.uuid("order_id")?,
            quantity: f.quantity("quantity")?,
        },
        other => return Err(unknown_event_type(AggregateKind::Inventory, other)),
    })
}
