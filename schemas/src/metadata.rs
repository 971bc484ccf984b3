use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::{Aggregate, EventEnvelope};
use uuid::Uuid;

use crate::MetadataError;

/// Keys of the cqrs-es metadata map (`HashMap<String, String>`) that carry
/// [`EventMetadata`]. The aggregate type, id and sequence are not in the map: cqrs-es keeps
/// them in the event envelope.
///
/// | key | value | required |
/// |---|---|---|
/// | `event_id` | UUID, hyphenated | yes |
/// | `correlation_id` | UUID, hyphenated | yes |
/// | `causation_id` | UUID, hyphenated | no |
/// | `actor` | free text | yes |
/// | `occurred_at` | RFC 3339, UTC, microseconds (`2024-05-01T12:00:00.123456Z`) | yes |
/// | `idempotency_key` | free text | no |
/// | `traceparent` | W3C trace context header value | no |
pub mod metadata_keys {
    /// Unique id of the event.
    pub const EVENT_ID: &str = "event_id";
    /// Id shared by every event of one business flow.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// Id of the message that caused the event.
    pub const CAUSATION_ID: &str = "causation_id";
    /// Who issued the command.
    pub const ACTOR: &str = "actor";
    /// When the event was recorded.
    pub const OCCURRED_AT: &str = "occurred_at";
    /// The command's idempotency key.
    pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";

    /// Every key, required and optional.
    pub const ALL: [&str; 7] = [
        EVENT_ID,
        CORRELATION_ID,
        CAUSATION_ID,
        ACTOR,
        OCCURRED_AT,
        IDEMPOTENCY_KEY,
        TRACEPARENT,
    ];
}

/// Envelope facts of one stored event: the `metadata` field of every wire record
/// (`io.keel.common.EventMetadata`). Not part of domain events.
///
/// `occurred_at` travels with microsecond precision (Avro `timestamp-micros`); finer
/// precision is truncated on the wire, so create it at microsecond precision if an exact
/// round trip matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetadata {
    /// Unique id of this event.
    pub event_id: Uuid,
    /// `Aggregate::TYPE`: `order`, `payment` or `inventory`.
    pub aggregate_type: String,
    /// Aggregate id; the Kafka key.
    pub aggregate_id: String,
    /// 1-based position in the aggregate's stream (cqrs-es sequence).
    pub sequence: u64,
    /// Id shared by every event of one business flow.
    pub correlation_id: Uuid,
    /// Id of the command or event that caused this event.
    pub causation_id: Option<Uuid>,
    /// Who or what issued the command.
    pub actor: String,
    /// When the event was recorded.
    pub occurred_at: DateTime<Utc>,
    /// The command's idempotency key, if the client sent one.
    pub idempotency_key: Option<String>,
    /// W3C trace context of the command.
    pub traceparent: Option<String>,
}

impl EventMetadata {
    /// The map entries cqrs-es should store with the event (see [`metadata_keys`]). Absent
    /// optional values produce no entry.
    pub fn to_map(&self) -> HashMap<String, String> {
        use metadata_keys as k;
        let mut map = HashMap::from([
            (k::EVENT_ID.to_owned(), self.event_id.to_string()),
            (
                k::CORRELATION_ID.to_owned(),
                self.correlation_id.to_string(),
            ),
            (k::ACTOR.to_owned(), self.actor.clone()),
            (
                k::OCCURRED_AT.to_owned(),
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ]);
        let optional = [
            (k::CAUSATION_ID, self.causation_id.map(|id| id.to_string())),
            (k::IDEMPOTENCY_KEY, self.idempotency_key.clone()),
            (k::TRACEPARENT, self.traceparent.clone()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        }
        map
    }

    /// Rebuilds the metadata of a stored event from its envelope facts and metadata map.
    /// Unknown keys are ignored, so adapters may store extra entries.
    ///
    /// # Errors
    /// [`MetadataError::Missing`] for an absent required key, [`MetadataError::Invalid`]
    /// for an unparsable UUID or timestamp.
    pub fn from_map(
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: u64,
        map: &HashMap<String, String>,
    ) -> Result<Self, MetadataError> {
        use metadata_keys as k;
        let required = |key: &'static str| {
            map.get(key)
                .map(String::as_str)
                .ok_or(MetadataError::Missing(key))
        };
        let uuid = |key: &'static str, value: &str| {
            Uuid::parse_str(value).map_err(|e| MetadataError::Invalid {
                key,
                reason: e.to_string(),
            })
        };
        let occurred_at = DateTime::parse_from_rfc3339(required(k::OCCURRED_AT)?)
            .map_err(|e| MetadataError::Invalid {
                key: k::OCCURRED_AT,
                reason: e.to_string(),
            })?
            .with_timezone(&Utc);
        Ok(Self {
            event_id: uuid(k::EVENT_ID, required(k::EVENT_ID)?)?,
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            correlation_id: uuid(k::CORRELATION_ID, required(k::CORRELATION_ID)?)?,
            causation_id: map
                .get(k::CAUSATION_ID)
                .map(|v| uuid(k::CAUSATION_ID, v))
                .transpose()?,
            actor: required(k::ACTOR)?.to_owned(),
            occurred_at,
            idempotency_key: map.get(k::IDEMPOTENCY_KEY).cloned(),
            traceparent: map.get(k::TRACEPARENT).cloned(),
        })
    }

    /// [`from_map`](Self::from_map) for a cqrs-es envelope.
    ///
    /// # Errors
    /// As [`from_map`](Self::from_map).
    pub fn from_envelope<A: Aggregate>(envelope: &EventEnvelope<A>) -> Result<Self, MetadataError> {
        let sequence = u64::try_from(envelope.sequence).map_err(|e| MetadataError::Invalid {
            key: "sequence",
            reason: e.to_string(),
        })?;
        Self::from_map(
            A::TYPE,
            &envelope.aggregate_id,
            sequence,
            &envelope.metadata,
        )
    }
}

/// A fully populated metadata value at microsecond precision.
#[cfg(test)]
pub(crate) fn sample_metadata() -> EventMetadata {
    EventMetadata {
        event_id: Uuid::from_u128(1),
        aggregate_type: "order".into(),
        aggregate_id: Uuid::from_u128(2).to_string(),
        sequence: 7,
        correlation_id: Uuid::from_u128(3),
        causation_id: Some(Uuid::from_u128(4)),
        actor: "user:42".into(),
        occurred_at: DateTime::from_timestamp_micros(1_714_564_800_123_456).unwrap(),
        idempotency_key: Some("idem-1".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::sample_metadata as sample;
    use super::*;

    #[test]
    fn map_round_trip_with_every_key() {
        let metadata = sample();
        let map = metadata.to_map();
        assert_eq!(map.len(), metadata_keys::ALL.len());
        assert_eq!(map["occurred_at"], "2024-05-01T12:00:00.123456Z");
        let back = EventMetadata::from_map("order", &metadata.aggregate_id, 7, &map).unwrap();
        assert_eq!(back, metadata);
    }

    #[test]
    fn map_round_trip_without_optional_keys() {
        let metadata = EventMetadata {
            causation_id: None,
            idempotency_key: None,
            traceparent: None,
            ..sample()
        };
        let mut map = metadata.to_map();
        assert_eq!(map.len(), 4);
        map.insert("extra".into(), "ignored".into());
        let back = EventMetadata::from_map("order", &metadata.aggregate_id, 7, &map).unwrap();
        assert_eq!(back, metadata);
    }

    #[test]
    fn missing_and_invalid_keys_are_typed_errors() {
        let mut map = sample().to_map();
        map.remove(metadata_keys::ACTOR);
        assert_eq!(
            EventMetadata::from_map("order", "x", 1, &map),
            Err(MetadataError::Missing("actor"))
        );
        let mut map = sample().to_map();
        map.insert(metadata_keys::CORRELATION_ID.into(), "nope".into());
        assert!(matches!(
            EventMetadata::from_map("order", "x", 1, &map),
            Err(MetadataError::Invalid {
                key: "correlation_id",
                ..
            })
        ));
        let mut map = sample().to_map();
        map.insert(metadata_keys::OCCURRED_AT.into(), "yesterday".into());
        assert!(matches!(
            EventMetadata::from_map("order", "x", 1, &map),
            Err(MetadataError::Invalid {
                key: "occurred_at",
                ..
            })
        ));
    }

    #[test]
    fn from_envelope_uses_the_envelope_facts() {
        let metadata = sample();
        let envelope = EventEnvelope::<aggregates::order::Order> {
            aggregate_id: metadata.aggregate_id.clone(),
            sequence: 7,
            payload: aggregates::order::OrderEvent::OrderConfirmed {},
            metadata: metadata.to_map(),
        };
        assert_eq!(EventMetadata::from_envelope(&envelope).unwrap(), metadata);
    }

    #[test]
    fn non_utc_offsets_are_normalised() {
        let mut map = sample().to_map();
        map.insert(
            metadata_keys::OCCURRED_AT.into(),
            "2024-05-01T14:00:00.123456+02:00".into(),
        );
        let back = EventMetadata::from_map("order", "x", 1, &map).unwrap();
        assert_eq!(back.occurred_at, sample().occurred_at);
    }
}
