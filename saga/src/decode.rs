//! Kafka message → what the saga reacts to. Decoding is the Confluent way (as the
//! projectors do it): the frame's schema id is resolved through the registry, the datum read
//! with that writer schema into this build's reader schema.

use std::collections::HashMap;
use std::time::Duration;

use aggregates::Sku;
use aggregates::inventory::InventoryEvent;
use aggregates::order::OrderEvent;
use aggregates::payment::PaymentEvent;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schemas::wire::{self, FrameError};
use schemas::{
    AggregateKind, EventMetadata, MappingError, catalog, decode_event_with_writer_schema,
};
use uuid::Uuid;

use crate::machine::{Observed, PlacedOrder};
use crate::store::SagaKey;

/// Header that marks a message as re-published history. Nothing publishes such messages
/// today (a projection rebuild reads the event store, not Kafka); should a tool ever replay
/// events onto the topics, the saga must not act on them again.
pub const REPLAY_HEADER: &str = "replay";

/// A message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not one of the saga's topics.
    #[error("topic {0:?} is not an event topic")]
    UnexpectedTopic(String),
    /// Empty value.
    #[error("message has no value")]
    MissingPayload,
    /// Not a Confluent frame.
    #[error("not in the Confluent wire format: {0}")]
    Frame(#[from] FrameError),
    /// The registry did not give the writer schema.
    #[error("schema registry lookup of schema id {id} failed: {message}")]
    Registry {
        /// Schema id.
        id: u32,
        /// Client error.
        message: String,
        /// Network or server error (worth waiting for).
        retriable: bool,
    },
    /// The writer schema is no event record of this build, or another topic's.
    #[error("schema id {id} ({found}) is not an event of topic {topic}")]
    UnknownRecord {
        /// Schema id.
        id: u32,
        /// Record name.
        found: String,
        /// Topic.
        topic: String,
    },
    /// The datum does not decode.
    #[error("event does not decode: {0}")]
    Mapping(#[from] MappingError),
}

impl DecodeError {
    /// Only an unreachable registry can be cured by waiting.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Registry {
                retriable: true,
                ..
            }
        )
    }
}

/// A decoded domain event of any aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// Order topic.
    Order(OrderEvent),
    /// Payment topic.
    Payment(PaymentEvent),
    /// Inventory topic.
    Inventory(InventoryEvent),
}

impl DomainEvent {
    /// The event type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Order(e) => e.event_type_name(),
            Self::Payment(e) => e.event_type_name(),
            Self::Inventory(e) => e.event_type_name(),
        }
    }
}

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

/// Decodes the three event topics.
pub struct EventDecoder {
    registry: AvroDecoder,
    topics: HashMap<String, AggregateKind>,
}

impl std::fmt::Debug for EventDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDecoder")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl EventDecoder {
    /// A decoder of `topics` against the registry at `registry_url`.
    ///
    /// # Errors
    /// An invalid registry URL.
    pub fn new(
        registry_url: &str,
        topics: HashMap<String, AggregateKind>,
    ) -> Result<Self, schema_registry_converter::error::SRCError> {
        let settings = SrSettings::new_builder(registry_url.to_owned())
            .no_proxy()
            .set_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            registry: AvroDecoder::new(settings),
            topics,
        })
    }

    /// Forgets cached registry failures so a retry asks again.
    pub fn forget_failures(&self) {
        self.registry.remove_errors_from_cache();
    }

    /// Decodes one message.
    ///
    /// # Errors
    /// [`DecodeError`].
    pub async fn decode(
        &self,
        message: &OwnedMessage,
    ) -> Result<(EventMetadata, DomainEvent), DecodeError> {
        let kind = *self
            .topics
            .get(message.topic())
            .ok_or_else(|| DecodeError::UnexpectedTopic(message.topic().to_owned()))?;
        let frame = message
            .payload()
            .filter(|payload| !payload.is_empty())
            .ok_or(DecodeError::MissingPayload)?;
        let (id, datum) = wire::decode_frame(frame)?;
        let writer = self
            .registry
            .get_schema(id)
            .await
            .map_err(|e| DecodeError::Registry {
                id,
                retriable: e.retriable,
                message: e.to_string(),
            })?;
        let record = writer
            .parsed
            .name()
            .map(|name| name.fullname(None))
            .unwrap_or_default();
        let reader = catalog()
            .by_full_name(&record)
            .filter(|schema| schema.aggregate() == kind)
            .ok_or_else(|| DecodeError::UnknownRecord {
                id,
                found: record.clone(),
                topic: message.topic().to_owned(),
            })?;
        let writer = &writer.parsed;
        Ok(match kind {
            AggregateKind::Order => {
                let (m, e) = decode_event_with_writer_schema::<OrderEvent>(writer, reader, datum)?;
                (m, DomainEvent::Order(e))
            }
            AggregateKind::Payment => {
                let (m, e) =
                    decode_event_with_writer_schema::<PaymentEvent>(writer, reader, datum)?;
                (m, DomainEvent::Payment(e))
            }
            AggregateKind::Inventory => {
                let (m, e) =
                    decode_event_with_writer_schema::<InventoryEvent>(writer, reader, datum)?;
                (m, DomainEvent::Inventory(e))
            }
        })
    }
}
