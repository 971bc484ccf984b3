//! The event store read in commit order through `event_store::log` (the one reader that
//! never steps over a late commit, `docs/adr/0002-outbox-and-global-position.md`), each row
//! decoded the way the live projector decodes it from Kafka.

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::customer::CustomerEvent;
use aggregates::inventory::InventoryEvent;
use aggregates::order::OrderEvent;
use aggregates::payment::PaymentEvent;
use event_store::StreamRef;
use event_store::customer_keys::Keyring;
use event_store::log::{self, LogFilter, RecordedEvent};
use event_store::stream::{self, StreamRange};
use schemas::{AggregateKind, EventMetadata};
use sqlx::PgPool;

pub use event_store::LogPosition;

use crate::Projection;
use crate::event::{AggregateKey, ProjectedEvent, SourceEvent};

/// One stored event, decoded the way the relay encodes it for Kafka (JSON payload into the
/// aggregate's event enum, metadata map into [`EventMetadata`]), so that a replay applies
/// exactly what the live projector decodes from the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Where it is in the commit order.
    pub position: LogPosition,
    /// The event as a projection applies it.
    pub event: ProjectedEvent,
}

/// Why events could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The event store database failed.
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event does not decode into its aggregate's events.
    #[error(
        "stored event {aggregate_type} {aggregate_id} #{sequence} (position {position}) does not decode: {reason}"
    )]
    Undecodable {
        /// Source aggregate type.
        aggregate_type: String,
        /// Source aggregate id.
        aggregate_id: String,
        /// Its sequence.
        sequence: i64,
        /// Its log position.
        position: LogPosition,
        /// The decoding error.
        reason: String,
    },
}

/// The event store (`public.events`), possibly in another database than the read model.
#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
    keyring: Option<Arc<Keyring>>,
}

impl EventStore {
    /// Reads through `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            keyring: None,
        }
    }

    /// Opens sealed personal data with `keyring` while rebuilding (ADR 0009); the key
    /// table is read on the read model's connection, which must reach it.
    pub fn with_keyring(mut self, keyring: Option<Arc<Keyring>>) -> Self {
        self.keyring = keyring;
        self
    }

    /// The keyring a rebuild opens personal data with.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_deref()
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Up to `limit` events of `projection`'s source aggregates after `after`, in commit
    /// order, only from transactions older than every transaction still running.
    ///
    /// # Errors
    /// [`SourceError`].
    pub async fn read_after(
        &self,
        projection: Projection,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, SourceError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = log::read_after(&self.pool, after, &source_filter(projection), limit).await?;
        rows.into_iter().map(decode_row).collect()
    }

    /// The committed events of one aggregate with `after < sequence <= up_to`, in sequence
    /// order (whatever the commit-order horizon).
    ///
    /// # Errors
    /// [`SourceError`].
    pub async fn read_stream(
        &self,
        key: &AggregateKey,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<StoredEvent>, SourceError> {
        let stream = StreamRef {
            aggregate_type: &key.aggregate_type,
            aggregate_id: &key.aggregate_id,
        };
        let range = StreamRange::after(after).up_to(up_to);
        let rows = stream::read_stream(&self.pool, stream, range).await?;
        rows.into_iter().map(decode_row).collect()
    }

    /// How many events of `projection`'s source aggregates the store holds.
    ///
    /// # Errors
    /// Database errors.
    pub async fn count(&self, projection: Projection) -> Result<u64, sqlx::Error> {
        log::count(&self.pool, &source_filter(projection)).await
    }
}

/// The log filter for `projection`'s source aggregates.
fn source_filter(projection: Projection) -> LogFilter {
    LogFilter::aggregate_types(source_types(projection))
}

/// The aggregate types `projection` reads.
pub fn source_types(projection: Projection) -> Vec<&'static str> {
    projection
        .sources()
        .iter()
        .map(|kind| kind.aggregate_type())
        .collect()
}

fn decode_row(row: RecordedEvent) -> Result<StoredEvent, SourceError> {
    let RecordedEvent {
        position,
        aggregate_type,
        aggregate_id,
        sequence,
        payload,
        metadata,
        ..
    } = row;
    decode(
        &aggregate_type,
        &aggregate_id,
        sequence,
        &payload,
        &metadata,
    )
    .map(|event| StoredEvent { position, event })
    .map_err(|reason| SourceError::Undecodable {
        aggregate_type,
        aggregate_id,
        sequence,
        position,
        reason,
    })
}

/// A stored row into the event the live projector would decode from Kafka.
fn decode(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    payload: &str,
    metadata: &str,
) -> Result<ProjectedEvent, String> {
    let kind = AggregateKind::from_aggregate_type(aggregate_type)
        .ok_or_else(|| format!("unknown aggregate type {aggregate_type:?}"))?;
    let sequence =
        u64::try_from(sequence).map_err(|_| format!("corrupt: negative sequence {sequence}"))?;
    let map: HashMap<String, String> =
        serde_json::from_str(metadata).map_err(|error| format!("metadata: {error}"))?;
    let metadata = EventMetadata::from_map(aggregate_type, aggregate_id, sequence, &map)
        .map_err(|error| format!("metadata: {error}"))?;
    let payload_error = |error: serde_json::Error| format!("payload: {error}");
    let event = match kind {
        AggregateKind::Order => {
            SourceEvent::Order(serde_json::from_str::<OrderEvent>(payload).map_err(payload_error)?)
        }
        AggregateKind::Payment => SourceEvent::Payment(
            serde_json::from_str::<PaymentEvent>(payload).map_err(payload_error)?,
        ),
        AggregateKind::Inventory => SourceEvent::Inventory(
            serde_json::from_str::<InventoryEvent>(payload).map_err(payload_error)?,
        ),
        AggregateKind::Customer => SourceEvent::Customer(
            serde_json::from_str::<CustomerEvent>(payload).map_err(payload_error)?,
        ),
    };
    Ok(ProjectedEvent { metadata, event })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_row_decodes_like_the_relay_encodes_it() {
        let metadata = r#"{"event_id":"6f1c2a52-3f55-4b59-9d59-2f3c7c3b0a11",
            "correlation_id":"0b9b1f0e-1f4e-4b7c-8a47-3c6a4b6a7d21","actor":"tester",
            "occurred_at":"2024-05-01T12:00:00.123456Z"}"#;
        let event = decode(
            "inventory",
            "SKU-1",
            3,
            r#"{"StockAdded":{"quantity":7}}"#,
            metadata,
        )
        .unwrap();
        assert_eq!(
            event.event,
            SourceEvent::Inventory(InventoryEvent::StockAdded { quantity: 7 })
        );
        assert_eq!(event.sequence(), 3);
        assert_eq!(event.metadata.aggregate_id, "SKU-1");
        assert_eq!(event.metadata.actor, "tester");
    }

    #[test]
    fn a_bad_payload_names_the_part_at_fault() {
        let error = decode("order", "x", 1, r#"{"Nope":{}}"#, "{}").unwrap_err();
        assert!(error.starts_with("metadata"), "{error}");
        let error = decode("elephant", "x", 1, "{}", "{}").unwrap_err();
        assert!(error.contains("elephant"), "{error}");
    }
}
