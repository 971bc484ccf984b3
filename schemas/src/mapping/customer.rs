use aggregates::customer::CustomerEvent;
use apache_avro::types::Value;

use super::fields::{event_record, split_event_record};
use super::{AvroEvent, check_aggregate, unknown_event_type};
use crate::{AggregateKind, EventMetadata, MappingError};

impl AvroEvent for CustomerEvent {
    const AGGREGATE: AggregateKind = AggregateKind::Customer;

    fn to_avro(&self, metadata: &EventMetadata) -> Result<Value, MappingError> {
        check_aggregate(Self::AGGREGATE, metadata)?;
        let payload = match self {
            Self::CustomerForgotten {} => vec![],
        };
        event_record(metadata, payload)
    }

    fn from_avro(event_type: &str, value: Value) -> Result<(EventMetadata, Self), MappingError> {
        let (metadata, _) = split_event_record(event_type, value)?;
        check_aggregate(Self::AGGREGATE, &metadata)?;
        let event = match event_type {
            "CustomerForgotten" => CustomerEvent::CustomerForgotten {},
            other => return Err(unknown_event_type(AggregateKind::Customer, other)),
        };
        Ok((metadata, event))
    }
}
