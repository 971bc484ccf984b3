use aggregates::order::OrderEvent;
use apache_avro::types::Value;

use super::fields::{
    Fields, event_record, money, optional_sealed, optional_string, order_line, quantity,
    split_event_record, string, uuid,
};
use super::{AvroEvent, check_aggregate, unknown_event_type};
use crate::{AggregateKind, EventMetadata, MappingError};

impl AvroEvent for OrderEvent {
    const AGGREGATE: AggregateKind = AggregateKind::Order;

    fn to_avro(&self, metadata: &EventMetadata) -> Result<Value, MappingError> {
        check_aggregate(Self::AGGREGATE, metadata)?;
        let payload = match self {
            Self::OrderCreated {
                customer_id,
                currency,
                customer_details,
            } => vec![
                ("customer_id", uuid(*customer_id)),
                ("currency", string(currency.as_str())),
                (
                    "customer_details",
                    optional_sealed(customer_details.as_ref()),
                ),
            ],
            Self::OrderLineAdded { line } => vec![("line", order_line(line))],
            Self::OrderLineQuantityChanged { sku, quantity: q } => {
                vec![("sku", string(sku.as_str())), ("quantity", quantity(*q))]
            }
            Self::OrderLineRemoved { sku } => vec![("sku", string(sku.as_str()))],
            Self::OrderPlaced {
                customer_id,
                lines,
                total,
                payment_method,
            } => vec![
                ("customer_id", uuid(*customer_id)),
                (
                    "lines",
                    Value::Array(lines.iter().map(order_line).collect()),
                ),
                ("total", money(*total)),
                ("payment_method", optional_string(payment_method.as_deref())),
            ],
            Self::OrderConfirmed {} | Self::OrderDelivered {} => vec![],
            Self::OrderCancelled { reason } => vec![("reason", string(reason))],
            Self::OrderShipped { tracking_reference } => vec![(
                "tracking_reference",
                optional_string(tracking_reference.as_deref()),
            )],
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

fn decode(event_type: &str, f: &mut Fields) -> Result<OrderEvent, MappingError> {
    Ok(match event_type {
        "OrderCreated" => OrderEvent::OrderCreated {
            customer_id: f.uuid("customer_id")?,
            currency: f.currency("currency")?,
            customer_details: f.optional_sealed("customer_details")?,
        },
        "OrderLineAdded" => OrderEvent::OrderLineAdded {
            line: f.order_line("line")?,
        },
        "OrderLineQuantityChanged" => OrderEvent::OrderLineQuantityChanged {
            sku: f.sku("sku")?,
            quantity: f.quantity("quantity")?,
        },
        "OrderLineRemoved" => OrderEvent::OrderLineRemoved { sku: f.sku("sku")? },
        "OrderPlaced" => OrderEvent::OrderPlaced {
            customer_id: f.uuid("customer_id")?,
            lines: f.order_lines("lines")?,
            total: f.money("total")?,
            payment_method: f.optional_string("payment_method")?,
        },
        "OrderConfirmed" => OrderEvent::OrderConfirmed {},
        "OrderCancelled" => OrderEvent::OrderCancelled {
            reason: f.string("reason")?,
        },
        "OrderShipped" => OrderEvent::OrderShipped {
            tracking_reference: f.optional_string("tracking_reference")?,
        },
        "OrderDelivered" => OrderEvent::OrderDelivered {},
        other => return Err(unknown_event_type(AggregateKind::Order, other)),
    })
}
