//! Domain events ↔ Avro wire records, both ways.

mod customer;
mod fields;
mod inventory;
mod order;
mod payment;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use cqrs_es::DomainEvent;

use crate::{AggregateKind, EventMetadata, EventSchema, MappingError, catalog};

/// A domain event enum with a published Avro contract for each of its variants.
///
/// Implemented for [`OrderEvent`](aggregates::order::OrderEvent),
/// [`PaymentEvent`](aggregates::payment::PaymentEvent) and
/// [`InventoryEvent`](aggregates::inventory::InventoryEvent). The wire record of an event is
/// `{ metadata: EventMetadata, <payload fields> }`, named
/// `io.keel.<aggregate>.<EventType>`.
pub trait AvroEvent: DomainEvent {
    /// The aggregate whose events these are.
    const AGGREGATE: AggregateKind;

    /// The record value of this event (fields in schema order). The value is not yet
    /// validated against the schema; [`encode_event`] does that.
    ///
    /// # Errors
    /// [`MappingError::AggregateMismatch`] when `metadata.aggregate_type` is not this
    /// aggregate's; [`MappingError::InvalidValue`] when the sequence exceeds `i64`.
    fn to_avro(&self, metadata: &EventMetadata) -> Result<Value, MappingError>;

    /// The event and metadata held by a record value of type `event_type`, as produced by
    /// decoding with this crate's (reader) schema.
    ///
    /// # Errors
    /// [`MappingError`] for an unknown event type, a missing field, a wrong type, or a value
    /// that breaks a domain rule (e.g. an invalid currency). Such a record is poison:
    /// decoding it again gives the same error.
    fn from_avro(event_type: &str, value: Value) -> Result<(EventMetadata, Self), MappingError>;

    /// This event's contract in the [`catalog`].
    ///
    /// # Errors
    /// [`MappingError::UnknownEventType`] if the event has no schema (ruled out by tests).
    fn event_schema(&self) -> Result<&'static EventSchema, MappingError> {
        schema_of(Self::AGGREGATE, &self.event_type())
    }
}

/// An event encoded as an Avro binary datum (no framing), with the schema it was written with.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    /// The writer schema: register [`EventSchema::schema_json`] under
    /// [`EventSchema::subject`] to get the schema id for the frame.
    pub schema: &'static EventSchema,
    /// The Avro binary encoding of the record.
    pub datum: Vec<u8>,
}

/// Encodes `event` with its metadata as an Avro binary datum of its schema.
///
/// # Errors
/// [`MappingError`] if the metadata does not belong to this aggregate, or the value does not
/// validate against the schema.
pub fn encode_event<E: AvroEvent>(
    metadata: &EventMetadata,
    event: &E,
) -> Result<EncodedEvent, MappingError> {
    let schema = event.event_schema()?;
    let value = event.to_avro(metadata)?;
    let datum = GenericDatumWriter::builder(schema.schema())
        .build()?
        .write_value_to_vec(value)?;
    Ok(EncodedEvent { schema, datum })
}

/// Decodes a datum written with `schema` (this build's schema of that event type).
///
/// # Errors
/// [`MappingError`] if the schema is another aggregate's, the bytes are not a datum of the
/// schema (including trailing bytes), or the record breaks a domain rule.
pub fn decode_event<E: AvroEvent>(
    schema: &EventSchema,
    datum: &[u8],
) -> Result<(EventMetadata, E), MappingError> {
    let reader = GenericDatumReader::builder(schema.schema()).build()?;
    decode_with(&reader, schema, datum)
}

/// Decodes a datum written with an older or newer compatible `writer` schema (as fetched
/// from the registry by the frame's schema id), resolving it into this build's `reader`
/// schema of the same event type.
///
/// # Errors
/// As [`decode_event`], plus Avro resolution errors for incompatible schemas.
pub fn decode_event_with_writer_schema<E: AvroEvent>(
    writer: &Schema,
    reader: &EventSchema,
    datum: &[u8],
) -> Result<(EventMetadata, E), MappingError> {
    let datum_reader = GenericDatumReader::builder(writer)
        .reader_schema(reader.schema())
        .build()?;
    decode_with(&datum_reader, reader, datum)
}

fn decode_with<E: AvroEvent>(
    reader: &GenericDatumReader<'_>,
    schema: &EventSchema,
    datum: &[u8],
) -> Result<(EventMetadata, E), MappingError> {
    if schema.aggregate() != E::AGGREGATE {
        return Err(MappingError::UnknownEventType {
            aggregate: E::AGGREGATE.aggregate_type(),
            event_type: schema.full_name().to_owned(),
        });
    }
    let mut remaining = datum;
    let value = reader.read_value(&mut remaining)?;
    if !remaining.is_empty() {
        return Err(MappingError::InvalidValue {
            record: schema.event_type().to_owned(),
            field: "(datum)".into(),
            reason: format!("{} trailing bytes after the record", remaining.len()),
        });
    }
    E::from_avro(schema.event_type(), value)
}

fn schema_of(
    aggregate: AggregateKind,
    event_type: &str,
) -> Result<&'static EventSchema, MappingError> {
    catalog()
        .by_event_type(event_type)
        .filter(|schema| schema.aggregate() == aggregate)
        .ok_or_else(|| unknown_event_type(aggregate, event_type))
}

fn unknown_event_type(aggregate: AggregateKind, event_type: &str) -> MappingError {
    MappingError::UnknownEventType {
        aggregate: aggregate.aggregate_type(),
        event_type: event_type.to_owned(),
    }
}

/// Checks that `metadata` belongs to `aggregate` (both when encoding and decoding, so an
/// event can never be published or consumed under another aggregate's identity).
fn check_aggregate(aggregate: AggregateKind, metadata: &EventMetadata) -> Result<(), MappingError> {
    if metadata.aggregate_type == aggregate.aggregate_type() {
        Ok(())
    } else {
        Err(MappingError::AggregateMismatch {
            expected: aggregate.aggregate_type(),
            found: metadata.aggregate_type.clone(),
        })
    }
}
