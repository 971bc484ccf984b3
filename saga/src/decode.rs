//! Kafka message → what the saga reacts to. Decoding is the topics' one consumer decoder
//! (`schemas::consume`, the projector's too): the frame's schema id is resolved through the
//! registry, the datum read with that writer schema into this build's reader schema.

use aggregates::Sku;
use aggregates::inventory::InventoryEvent;
use aggregates::order::OrderEvent;
use aggregates::payment::PaymentEvent;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use schemas::EventMetadata;
use uuid::Uuid;

use crate::machine::{Observed, PlacedOrder};
use crate::store::SagaKey;

/// Header that marks a message as re-published history. Nothing publishes such messages
/// today (a projection rebuild reads the event store, not Kafka); should a tool ever replay
/// events onto the topics, the saga must not act on them again.
pub const REPLAY_HEADER: &str = "replay";

pub use schemas::consume::{DecodeError, DomainEvent, EventDecoder};

/// What an event means to the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Start a saga.
    Start(PlacedOrder),
    /// Feed an event to the saga found by `key`.
    Feed {
        /// Which saga.
        key: SagaKey,
        /// The event.
        event: Observed,
    },
    /// Nothing for the saga (stock added, order lines, shipping, …).
    Ignore,
}

/// Where an event belongs in the saga's world.
pub fn route(metadata: &EventMetadata, event: DomainEvent) -> Route {
    let aggregate_uuid = || Uuid::parse_str(&metadata.aggregate_id).ok();
    let sku = || Sku::new(metadata.aggregate_id.clone()).ok();
    let feed = |key, event| Route::Feed { key, event };
    match event {
        DomainEvent::Order(event) => {
            let Some(order_id) = aggregate_uuid() else {
                return Route::Ignore;
            };
            let key = SagaKey::Order(order_id);
            match event {
                OrderEvent::OrderPlaced {
                    lines,
                    total,
                    payment_method,
                    ..
                } => Route::Start(PlacedOrder {
                    order_id,
                    event_id: metadata.event_id,
                    correlation_id: metadata.correlation_id,
                    lines,
                    total,
                    payment_method,
                }),
                OrderEvent::OrderConfirmed {} => feed(key, Observed::OrderConfirmed),
                OrderEvent::OrderCancelled { reason } => {
                    feed(key, Observed::OrderCancelled { reason })
                }
                _ => Route::Ignore,
            }
        }
        DomainEvent::Inventory(event) => {
            let Some(sku) = sku() else {
                return Route::Ignore;
            };
            match event {
                InventoryEvent::StockReserved { order_id, .. } => {
                    feed(SagaKey::Order(order_id), Observed::StockReserved { sku })
                }
                InventoryEvent::ReservationReleased { order_id, .. } => feed(
                    SagaKey::Order(order_id),
                    Observed::ReservationReleased { sku },
                ),
                InventoryEvent::ReservationCommitted { order_id, .. } => feed(
                    SagaKey::Order(order_id),
                    Observed::ReservationCommitted { sku },
                ),
                _ => Route::Ignore,
            }
        }
        DomainEvent::Payment(event) => {
            let by_payment = |event| match aggregate_uuid() {
                Some(payment_id) => feed(SagaKey::Payment(payment_id), event),
                None => Route::Ignore,
            };
            match event {
                PaymentEvent::PaymentAuthorized { payment_id, .. } => {
                    feed(SagaKey::Payment(payment_id), Observed::PaymentAuthorized)
                }
                PaymentEvent::PaymentDeclined {
                    payment_id, reason, ..
                } => feed(
                    SagaKey::Payment(payment_id),
                    Observed::PaymentDeclined { reason },
                ),
                PaymentEvent::PaymentCaptured { .. } => by_payment(Observed::PaymentCaptured),
                PaymentEvent::PaymentVoided { .. } => by_payment(Observed::PaymentVoided),
                PaymentEvent::PaymentRefunded { .. } => by_payment(Observed::PaymentRefunded),
            }
        }
        // Fulfilment needs no personal data: a forgotten customer's open orders go on as
        // before (ADR 0009).
        DomainEvent::Customer(_) => Route::Ignore,
    }
}

/// Whether the message's headers mark it as a replay.
pub fn is_replay(message: &OwnedMessage) -> bool {
    message.headers().is_some_and(|headers| {
        headers.iter().any(|header| {
            header.key == REPLAY_HEADER
                && header
                    .value
                    .is_some_and(|value| value.eq_ignore_ascii_case(b"true"))
        })
    })
}
