//! The published contracts of keel's domain events, and everything needed to put them on
//! the wire and take them off again.
//!
//! - `avro/` holds one Avro record per event (`io.keel.<aggregate>.<EventType>`) plus the
//!   shared types in `io.keel.common` (`Money`, `OrderLine`, `EventMetadata`), each defined
//!   once. [`catalog()`] embeds them and serves **self-contained** event schemas (shared
//!   types inlined at first use), because the registry may not support references.
//! - [`AvroEvent`] maps each aggregate's domain events to and from Avro `Value`s, both ways;
//!   [`encode_event`] / [`decode_event`] add the Avro binary encoding.
//! - [`EventMetadata`] is the wire form of the envelope facts; it converts to and from the
//!   cqrs-es metadata map under the keys in [`metadata_keys`].
//! - [`http_headers`]: the request headers of the command API's contract.
//! - [`wire`] frames a datum in the Confluent wire format (magic byte, schema id).
//! - `topics` and `consume` (feature `kafka`): creates the topics a process reads or
//!   writes; decodes a consumed message through the registry, for every consumer.
//!
//! # Topics and subjects
//!
//! One topic per aggregate type ([`AggregateKind::topic_suffix`]: `order`, `payment`,
//! `inventory`, `customer`; callers prepend their configured prefix), keyed by aggregate id, carrying
//! several event types. Subjects follow Confluent's **TopicRecordNameStrategy**:
//! [`subject`]`(topic, record_full_name)` = `<topic>-<record full name>`, e.g.
//! `keel.order-io.keel.order.OrderPlaced`. A stock Confluent deserializer needs only the
//! schema id in the frame, so it decodes every event type on the topic.
//!
//! # Evolution
//!
//! Every schema is at version [`SCHEMA_VERSION`]. Changes must stay BACKWARD compatible
//! (the registry enforces it): add fields only as `["null", T]` with `"default": null` (or
//! with another default), never remove or retype a field, and only append enum symbols.

mod catalog;
#[cfg(feature = "kafka")]
pub mod consume;
mod error;
pub mod http_headers;
mod inline;
mod mapping;
mod metadata;
#[cfg(feature = "kafka")]
pub mod subscription;
#[cfg(feature = "kafka")]
pub mod topics;
pub mod wire;

pub use catalog::{
    AggregateKind, CommonSchema, DEFAULT_TOPIC_PREFIX, EventSchema, SCHEMA_VERSION, SchemaCatalog,
    catalog, subject,
};
pub use error::{MappingError, MetadataError, SchemaError};
pub use mapping::{
    AvroEvent, EncodedEvent, decode_event, decode_event_with_writer_schema, encode_event,
};
pub use metadata::{EventMetadata, metadata_keys};

#[cfg(test)]
mod contract_tests;
