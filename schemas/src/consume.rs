//! Kafka message → domain event, the way any Confluent client decodes: the frame's schema
//! id is looked up in the registry (cached), the datum is read with that writer schema and
//! resolved into this build's reader schema of the same record. The one decoder of every
//! consumer of the event topics (projector, saga).

use std::collections::HashMap;
use std::time::Duration;

use aggregates::customer::CustomerEvent;
use aggregates::inventory::InventoryEvent;
use aggregates::order::OrderEvent;
use aggregates::payment::PaymentEvent;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;

use crate::wire::{self, FrameError};
use crate::{AggregateKind, EventMetadata, MappingError, catalog, decode_event_with_writer_schema};

/// A decoded domain event of any aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// From the order topic.
    Order(OrderEvent),
    /// From the payment topic.
    Payment(PaymentEvent),
    /// From the inventory topic.
    Inventory(InventoryEvent),
    /// From the customer topic.
    Customer(CustomerEvent),
}

impl DomainEvent {
    /// The aggregate type the event belongs to.
    pub fn kind(&self) -> AggregateKind {
        match self {
            Self::Order(_) => AggregateKind::Order,
            Self::Payment(_) => AggregateKind::Payment,
            Self::Inventory(_) => AggregateKind::Inventory,
            Self::Customer(_) => AggregateKind::Customer,
        }
    }

    /// The event type name (= Avro record name).
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Order(e) => e.event_type_name(),
            Self::Payment(e) => e.event_type_name(),
            Self::Inventory(e) => e.event_type_name(),
            Self::Customer(e) => e.event_type_name(),
        }
    }
}

/// Why a message could not be decoded. Only [`DecodeError::is_transient`] errors can be
/// cured by waiting; the others make the message poison.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The topic is not one this consumer subscribed to.
    #[error("topic {0:?} is not an event topic of this consumer")]
    UnexpectedTopic(String),
    /// A tombstone or empty value.
    #[error("message has no value")]
    MissingPayload,
    /// Not a Confluent frame.
    #[error("not in the Confluent wire format: {0}")]
    Frame(#[from] FrameError),
    /// The registry did not give the writer schema.
    #[error("schema registry lookup of schema id {id} failed: {message}")]
    Registry {
        /// The frame's schema id.
        id: u32,
        /// The registry client's error.
        message: String,
        /// The registry could not answer (unreachable, an error status other than 404:
        /// overloaded, unauthorized, failing), as opposed to answering that it has no
        /// schema under this id, or a schema this client cannot parse.
        retriable: bool,
    },
    /// The writer schema is not a record this build has a contract for.
    #[error("schema id {id} is {found:?}, which is not a known event record")]
    UnknownRecord {
        /// The frame's schema id.
        id: u32,
        /// The writer schema's name.
        found: String,
    },
    /// An event of one aggregate on another aggregate's topic.
    #[error(
        "record {record} is a {record_aggregate} event, but topic {topic} carries {topic_aggregate} events"
    )]
    WrongTopic {
        /// The writer's record name.
        record: String,
        /// Aggregate of the record.
        record_aggregate: AggregateKind,
        /// The topic.
        topic: String,
        /// Aggregate of the topic.
        topic_aggregate: AggregateKind,
    },
    /// The datum does not decode, or breaks a domain rule.
    #[error("event does not decode: {0}")]
    Mapping(#[from] MappingError),
    /// The Kafka key is not the aggregate id in the record's metadata.
    #[error("Kafka key {key:?} is not the event's aggregate id {aggregate_id:?}")]
    KeyMismatch {
        /// The key, lossily decoded.
        key: Option<String>,
        /// The metadata's aggregate id.
        aggregate_id: String,
    },
}

impl DecodeError {
    /// True when the registry could not answer: the message is not at fault, and the
    /// same message decodes once the registry is back. Every other error is permanent:
    /// the bytes are not a Confluent frame, the registry confirms (404) that it has no
    /// schema under the frame's id, the writer schema is not an event record of this
    /// topic, or the datum does not fit its schema.
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

/// Whether a registry lookup failed for a reason that passes: the client's own flag
/// (unreachable, 502, 503), or any other HTTP error status but 404 Not Found, the one
/// answer that says the id is unknown. The client reports the status only in its message.
fn registry_error_is_transient(error: &SRCError) -> bool {
    const STATUS: &str = "failed with status ";
    match error.error.find(STATUS) {
        Some(at) => !error.error[at + STATUS.len()..].starts_with("404"),
        None => error.retriable,
    }
}

/// Decodes the event topics of one consumer (projector or saga).
#[derive(Debug)]
pub struct EventDecoder {
    registry: AvroDecoder,
    topics: HashMap<String, AggregateKind>,
}

impl EventDecoder {
    /// A decoder for `topics` (topic name → aggregate type) against the registry at `url`.
    ///
    /// # Errors
    /// The registry client cannot be built (an invalid URL).
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

    /// The aggregate type whose events `topic` carries.
    pub fn topic_kind(&self, topic: &str) -> Option<AggregateKind> {
        self.topics.get(topic).copied()
    }

    /// Forgets cached lookup failures, so that a retry asks the registry again (a schema
    /// may have been registered since).
    pub fn forget_failures(&self) {
        self.registry.remove_errors_from_cache();
    }

    /// Decodes one message whose Kafka key must be the event's aggregate id (as the relay
    /// publishes them): a consumer that keys state by it never files an event elsewhere.
    ///
    /// # Errors
    /// [`DecodeError`]; see [`DecodeError::is_transient`].
    pub async fn decode_keyed(
        &self,
        message: &OwnedMessage,
    ) -> Result<(EventMetadata, DomainEvent), DecodeError> {
        let (metadata, event) = self.decode(message).await?;
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        if key.as_deref() != Some(metadata.aggregate_id.as_str()) {
            return Err(DecodeError::KeyMismatch {
                key,
                aggregate_id: metadata.aggregate_id,
            });
        }
        Ok((metadata, event))
    }

    /// Decodes one message, whatever its key.
    ///
    /// # Errors
    /// [`DecodeError`]; see [`DecodeError::is_transient`].
    pub async fn decode(
        &self,
        message: &OwnedMessage,
    ) -> Result<(EventMetadata, DomainEvent), DecodeError> {
        let topic_kind = self
            .topic_kind(message.topic())
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
                retriable: registry_error_is_transient(&e),
                message: e.to_string(),
            })?;
        let record = writer
            .parsed
            .name()
            .map(|name| name.fullname(None))
            .unwrap_or_default();
        let reader = catalog()
            .by_full_name(&record)
            .ok_or_else(|| DecodeError::UnknownRecord {
                id,
                found: record.clone(),
            })?;
        if reader.aggregate() != topic_kind {
            return Err(DecodeError::WrongTopic {
                record,
                record_aggregate: reader.aggregate(),
                topic: message.topic().to_owned(),
                topic_aggregate: topic_kind,
            });
        }
        let writer = &writer.parsed;
        let (metadata, event) = match topic_kind {
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
            AggregateKind::Customer => {
                let (m, e) =
                    decode_event_with_writer_schema::<CustomerEvent>(writer, reader, datum)?;
                (m, DomainEvent::Customer(e))
            }
        };
        Ok((metadata, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_404_or_an_unparsable_answer_makes_a_registry_failure_permanent() {
        let status = |code: &str, retriable| {
            SRCError::new(
                &format!("HTTP request to schema registry failed with status {code}"),
                None,
                retriable,
            )
        };
        assert!(!registry_error_is_transient(&status(
            "404 Not Found",
            false
        )));
        assert!(!registry_error_is_transient(
            &status("404 Not Found", false).into_cache()
        ));
        for code in [
            "500 Internal Server Error",
            "401 Unauthorized",
            "429 Too Many Requests",
        ] {
            assert!(registry_error_is_transient(&status(code, false)), "{code}");
        }
        assert!(registry_error_is_transient(&status(
            "503 Service Unavailable",
            true
        )));
        assert!(registry_error_is_transient(&SRCError::new(
            "http call to schema registry failed",
            Some("connection refused".into()),
            true,
        )));
        assert!(!registry_error_is_transient(&SRCError::new(
            "could not parse to RawRegisteredSchema",
            None,
            false,
        )));
    }
}
