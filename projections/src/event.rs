//! What a projector applies: a decoded domain event with its envelope facts.

use schemas::EventMetadata;

/// A domain event of any aggregate, as the topics' decoder yields it.
pub use schemas::consume::DomainEvent as SourceEvent;

/// A decoded event and its metadata (aggregate id and sequence included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedEvent {
    /// Envelope facts.
    pub metadata: EventMetadata,
    /// The domain event.
    pub event: SourceEvent,
}

impl ProjectedEvent {
    /// The source aggregate.
    pub fn aggregate(&self) -> AggregateKey {
        AggregateKey {
            aggregate_type: self.metadata.aggregate_type.clone(),
            aggregate_id: self.metadata.aggregate_id.clone(),
        }
    }

    /// The event's position in its aggregate's stream, as stored in checkpoints.
    pub fn sequence(&self) -> i64 {
        i64::try_from(self.metadata.sequence).unwrap_or(i64::MAX)
    }
}

/// One source aggregate, as checkpoints key it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggregateKey {
    /// `order`, `payment` or `inventory`.
    pub aggregate_type: String,
    /// Order or payment UUID, or the SKU.
    pub aggregate_id: String,
}
