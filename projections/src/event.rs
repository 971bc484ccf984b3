//! What a projector applies: a decoded domain event with its envelope facts.

use aggregates::inventory::InventoryEvent;
use aggregates::order::OrderEvent;
use aggregates::payment::PaymentEvent;
use schemas::{AggregateKind, EventMetadata};

/// A domain event of any aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// From the order topic.
    Order(OrderEvent),
    /// From the payment topic.
    Payment(PaymentEvent),
    /// From the inventory topic.
    Inventory(InventoryEvent),
}

impl SourceEvent {
    /// The aggregate type the event belongs to.
    pub fn kind(&self) -> AggregateKind {
        match self {
            Self::Order(_) => AggregateKind::Order,
            Self::Payment(_) => AggregateKind::Payment,
            Self::Inventory(_) => AggregateKind::Inventory,
        }
    }

    /// The event type name (= Avro record name).
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Order(e) => e.event_type_name(),
            Self::Payment(e) => e.event_type_name(),
            Self::Inventory(e) => e.event_type_name(),
        }
    }
}

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
