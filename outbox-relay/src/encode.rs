//! From a stored event to a Kafka record: domain event from its JSON payload, Avro record
//! with its metadata, Confluent framing with the id the registry gave the schema.

use std::collections::HashMap;
use std::time::Duration;

use aggregates::customer::CustomerEvent;
use aggregates::inventory::InventoryEvent;
use aggregates::order::OrderEvent;
use aggregates::payment::PaymentEvent;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use schemas::{
    AggregateKind, AvroEvent, EventMetadata, SCHEMA_VERSION, catalog, encode_event, wire,
};

use crate::{PendingEvent, RelayError};

/// Schema id per registry subject, as assigned when the relay registered the catalog.
#[derive(Debug, Clone, Default)]
pub struct SchemaIds {
    by_subject: HashMap<String, u32>,
}

impl SchemaIds {
    pub fn get(&self, subject: &str) -> Option<u32> {
        self.by_subject.get(subject).copied()
    }

    pub fn len(&self) -> usize {
        self.by_subject.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
    }
}

/// Registers every event schema under its TopicRecordNameStrategy subject. Registering
/// an identical schema again returns the existing id, so this is safe at every start; a
/// schema change the registry finds incompatible fails here, before anything is published.
pub async fn register_schemas(
    registry_url: &str,
    topic_prefix: &str,
) -> Result<SchemaIds, RelayError> {
    let registry_error = |reason: String| RelayError::Registry {
        url: registry_url.to_string(),
        reason,
    };
    let settings = SrSettings::new_builder(registry_url.to_string())
        .no_proxy()
        .set_timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| registry_error(error.to_string()))?;
    let mut ids = SchemaIds::default();
    for kind in AggregateKind::ALL {
        let topic = kind.topic(topic_prefix);
        for schema in catalog().for_aggregate(kind) {
            let subject = schema.subject(&topic);
            let supplied = SuppliedSchema::new(
                Some(schema.full_name().to_string()),
                SchemaType::Avro,
                schema.schema_json().to_string(),
            );
            let registered = post_schema(&settings, subject.clone(), supplied)
                .await
                .map_err(|error| registry_error(format!("registering {subject}: {error}")))?;
            ids.by_subject.insert(subject, registered.id);
        }
    }
    Ok(ids)
}

/// A record ready for the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRecord {
    pub topic: String,
    /// The aggregate id: all of an aggregate's events land on one partition, in order.
    pub key: String,
    /// Confluent wire format: magic byte, schema id, Avro datum.
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Encodes one stored event for publication.
pub fn encode_for_wire(
    event: &PendingEvent,
    ids: &SchemaIds,
    topic_prefix: &str,
) -> Result<WireRecord, RelayError> {
    let fail = |reason: String| RelayError::Encoding {
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id.clone(),
        sequence: event.sequence,
        reason,
    };
    let kind = AggregateKind::from_aggregate_type(&event.aggregate_type)
        .ok_or_else(|| fail("unknown aggregate type".into()))?;
    let sequence = u64::try_from(event.sequence).map_err(|_| fail("negative sequence".into()))?;
    let map: HashMap<String, String> = serde_json::from_value(event.metadata.clone())
        .map_err(|error| fail(format!("metadata: {error}")))?;
    let metadata =
        EventMetadata::from_map(&event.aggregate_type, &event.aggregate_id, sequence, &map)
            .map_err(|error| fail(format!("metadata: {error}")))?;
    let encoded = match kind {
        AggregateKind::Order => encode::<OrderEvent>(event, &metadata),
        AggregateKind::Payment => encode::<PaymentEvent>(event, &metadata),
        AggregateKind::Inventory => encode::<InventoryEvent>(event, &metadata),
        AggregateKind::Customer => encode::<CustomerEvent>(event, &metadata),
    }
    .map_err(fail)?;
    let topic = kind.topic(topic_prefix);
    let subject = encoded.schema.subject(&topic);
    let schema_id = ids
        .get(&subject)
        .ok_or_else(|| fail(format!("schema subject {subject} was not registered")))?;
    let mut headers = vec![
        ("event_id", metadata.event_id.to_string()),
        ("event_type", event.event_type.clone()),
        ("schema_version", SCHEMA_VERSION.to_string()),
        ("aggregate_type", event.aggregate_type.clone()),
        ("aggregate_id", event.aggregate_id.clone()),
        ("sequence", event.sequence.to_string()),
        ("correlation_id", metadata.correlation_id.to_string()),
    ];
    if let Some(causation_id) = metadata.causation_id {
        headers.push(("causation_id", causation_id.to_string()));
    }
    if let Some(traceparent) = &metadata.traceparent {
        headers.push(("traceparent", traceparent.clone()));
    }
    Ok(WireRecord {
        topic,
        key: event.aggregate_id.clone(),
        value: wire::encode_frame(schema_id, &encoded.datum),
        headers,
    })
}

fn encode<E: AvroEvent + serde::de::DeserializeOwned>(
    event: &PendingEvent,
    metadata: &EventMetadata,
) -> Result<schemas::EncodedEvent, String> {
    let domain_event: E = serde_json::from_value(event.payload.clone())
        .map_err(|error| format!("payload: {error}"))?;
    encode_event(metadata, &domain_event).map_err(|error| format!("avro: {error}"))
}
