use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use aggregates::customer::{Customer, CustomerEvent};
use aggregates::inventory::{InventoryEvent, InventoryItem};
use aggregates::order::{Order, OrderEvent};
use aggregates::payment::{Payment, PaymentEvent};
use apache_avro::Schema;
use cqrs_es::Aggregate;
use serde_json::Value;

use crate::SchemaError;
use crate::inline::inline_shared_types;

/// Version of every schema in this crate. Registered schemas evolve under the registry's
/// BACKWARD compatibility check; this number changes only with a breaking redesign.
pub const SCHEMA_VERSION: &str = "1";

/// Topic prefix used when a deployment configures none: topics are `keel.order`,
/// `keel.payment` and `keel.inventory`.
pub const DEFAULT_TOPIC_PREFIX: &str = "keel.";

/// The aggregate types and their wire naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateKind {
    /// [`aggregates::order::Order`].
    Order,
    /// [`aggregates::payment::Payment`].
    Payment,
    /// [`aggregates::inventory::InventoryItem`].
    Inventory,
    /// [`aggregates::customer::Customer`]: the forget events (ADR 0009).
    Customer,
}

impl AggregateKind {
    /// Every aggregate type.
    pub const ALL: [AggregateKind; 4] =
        [Self::Order, Self::Payment, Self::Inventory, Self::Customer];

    /// The cqrs-es `Aggregate::TYPE`, as stored in the event store and in
    /// [`EventMetadata::aggregate_type`](crate::EventMetadata::aggregate_type).
    pub fn aggregate_type(self) -> &'static str {
        match self {
            Self::Order => Order::TYPE,
            Self::Payment => Payment::TYPE,
            Self::Inventory => InventoryItem::TYPE,
            Self::Customer => Customer::TYPE,
        }
    }

    /// The topic name without the deployment's prefix: callers build
    /// `format!("{prefix}{suffix}")` with their configured prefix (e.g. `keel.`).
    pub fn topic_suffix(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Payment => "payment",
            Self::Inventory => "inventory",
            Self::Customer => "customer",
        }
    }

    /// The topic this aggregate's events are published to: the deployment's prefix
    /// (default [`DEFAULT_TOPIC_PREFIX`]) followed by [`Self::topic_suffix`].
    pub fn topic(self, prefix: &str) -> String {
        format!("{prefix}{}", self.topic_suffix())
    }

    /// Avro namespace of this aggregate's event records.
    pub fn avro_namespace(self) -> &'static str {
        match self {
            Self::Order => "io.keel.order",
            Self::Payment => "io.keel.payment",
            Self::Inventory => "io.keel.inventory",
            Self::Customer => "io.keel.customer",
        }
    }

    /// Every domain event type name of this aggregate, generated from its event enum.
    pub fn event_types(self) -> &'static [&'static str] {
        match self {
            Self::Order => OrderEvent::EVENT_TYPES,
            Self::Payment => PaymentEvent::EVENT_TYPES,
            Self::Inventory => InventoryEvent::EVENT_TYPES,
            Self::Customer => CustomerEvent::EVENT_TYPES,
        }
    }

    /// The kind whose [`aggregate_type`](Self::aggregate_type) is `aggregate_type`.
    pub fn from_aggregate_type(aggregate_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.aggregate_type() == aggregate_type)
    }
}

impl fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.aggregate_type())
    }
}

/// Subject under TopicRecordNameStrategy: `<topic>-<record full name>`.
///
/// ```
/// assert_eq!(
///     schemas::subject("keel.order", "io.keel.order.OrderPlaced"),
///     "keel.order-io.keel.order.OrderPlaced"
/// );
/// ```
pub fn subject(topic: &str, record_full_name: &str) -> String {
    format!("{topic}-{record_full_name}")
}

/// One embedded `.avsc` file.
struct Source {
    file: &'static str,
    json: &'static str,
}

macro_rules! avsc {
    ($dir:literal, $name:literal) => {
        Source {
            file: concat!("avro/", $dir, "/", $name, ".avsc"),
            json: include_str!(concat!("../avro/", $dir, "/", $name, ".avsc")),
        }
    };
}

/// Shared types, in dependency order (a type only references earlier ones).
const COMMON_SOURCES: [Source; 3] = [
    avsc!("common", "Money"),
    avsc!("common", "OrderLine"),
    avsc!("common", "EventMetadata"),
];

const EVENT_SOURCES: [(AggregateKind, Source); 20] = [
    (AggregateKind::Order, avsc!("order", "OrderCreated")),
    (AggregateKind::Order, avsc!("order", "OrderLineAdded")),
    (
        AggregateKind::Order,
        avsc!("order", "OrderLineQuantityChanged"),
    ),
    (AggregateKind::Order, avsc!("order", "OrderLineRemoved")),
    (AggregateKind::Order, avsc!("order", "OrderPlaced")),
    (AggregateKind::Order, avsc!("order", "OrderConfirmed")),
    (AggregateKind::Order, avsc!("order", "OrderCancelled")),
    (AggregateKind::Order, avsc!("order", "OrderShipped")),
    (AggregateKind::Order, avsc!("order", "OrderDelivered")),
    (
        AggregateKind::Payment,
        avsc!("payment", "PaymentAuthorized"),
    ),
    (AggregateKind::Payment, avsc!("payment", "PaymentDeclined")),
    (AggregateKind::Payment, avsc!("payment", "PaymentCaptured")),
    (AggregateKind::Payment, avsc!("payment", "PaymentVoided")),
    (AggregateKind::Payment, avsc!("payment", "PaymentRefunded")),
    (AggregateKind::Inventory, avsc!("inventory", "StockAdded")),
    (
        AggregateKind::Inventory,
        avsc!("inventory", "StockAdjusted"),
    ),
    (
        AggregateKind::Inventory,
        avsc!("inventory", "StockReserved"),
    ),
    (
        AggregateKind::Inventory,
        avsc!("inventory", "ReservationReleased"),
    ),
    (
        AggregateKind::Inventory,
        avsc!("inventory", "ReservationCommitted"),
    ),
    (
        AggregateKind::Customer,
        avsc!("customer", "CustomerForgotten"),
    ),
];

/// A shared named type (`io.keel.common.*`) as written in its file.
#[derive(Debug, Clone)]
pub struct CommonSchema {
    full_name: String,
    file: &'static str,
    source: &'static str,
}

impl CommonSchema {
    /// Full Avro name, e.g. `io.keel.common.Money`.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// Path of the `.avsc` file within the crate.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The file's JSON text.
    pub fn source(&self) -> &'static str {
        self.source
    }
}

/// The contract of one event type.
#[derive(Debug, Clone)]
pub struct EventSchema {
    aggregate: AggregateKind,
    event_type: String,
    full_name: String,
    file: &'static str,
    source: &'static str,
    schema_json: String,
    schema: Schema,
}

impl EventSchema {
    /// Aggregate the event belongs to.
    pub fn aggregate(&self) -> AggregateKind {
        self.aggregate
    }

    /// Domain event type name (`cqrs_es::DomainEvent::event_type`), = the record's name.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// Full Avro record name, e.g. `io.keel.order.OrderPlaced`.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// Path of the `.avsc` file within the crate.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The file's JSON text, with shared types referenced by name (not self-contained).
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The self-contained schema JSON to register: shared types inlined at first use.
    pub fn schema_json(&self) -> &str {
        &self.schema_json
    }

    /// The parsed self-contained schema (writer and reader schema of this crate).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The registry subject of this record on `topic` (TopicRecordNameStrategy).
    pub fn subject(&self, topic: &str) -> String {
        subject(topic, &self.full_name)
    }
}

/// Every event schema and shared type, loaded from the embedded `.avsc` files.
#[derive(Debug, Clone)]
pub struct SchemaCatalog {
    common: Vec<CommonSchema>,
    events: Vec<EventSchema>,
}

static CATALOG: LazyLock<SchemaCatalog> = LazyLock::new(|| match SchemaCatalog::load() {
    Ok(catalog) => catalog,
    // Unreachable in a tested build: the files are compiled in and the crate's tests load them.
    Err(error) => panic!("embedded Avro schemas are invalid: {error}"),
});

/// The catalog of this build's schemas, loaded once.
///
/// # Panics
/// If an embedded schema is invalid, which the crate's own tests rule out.
pub fn catalog() -> &'static SchemaCatalog {
    &CATALOG
}

impl SchemaCatalog {
    /// Parses every embedded schema, inlines shared types and checks that each event record
    /// is named `<aggregate namespace>.<EventType>`.
    ///
    /// # Errors
    /// [`SchemaError`] for a malformed or unparsable file.
    pub fn load() -> Result<Self, SchemaError> {
        let mut shared = BTreeMap::new();
        let mut common = Vec::with_capacity(COMMON_SOURCES.len());
        for source in &COMMON_SOURCES {
            let json = parse_json(source)?;
            let (_, full_name) = record_name(source, &json)?;
            shared.insert(full_name.clone(), json);
            common.push(CommonSchema {
                full_name,
                file: source.file,
                source: source.json,
            });
        }

        let mut events = Vec::with_capacity(EVENT_SOURCES.len());
        for (aggregate, source) in &EVENT_SOURCES {
            let json = parse_json(source)?;
            let (namespace, full_name) = record_name(source, &json)?;
            if namespace != aggregate.avro_namespace() {
                return Err(SchemaError::Malformed {
                    file: source.file,
                    reason: format!(
                        "namespace {namespace:?}, expected {:?}",
                        aggregate.avro_namespace()
                    ),
                });
            }
            let schema_json = inline_shared_types(&json, &shared).to_string();
            let schema = Schema::parse_str(&schema_json).map_err(|e| SchemaError::Avro {
                file: source.file,
                source: Box::new(e),
            })?;
            events.push(EventSchema {
                aggregate: *aggregate,
                event_type: full_name[namespace.len() + 1..].to_owned(),
                full_name,
                file: source.file,
                source: source.json,
                schema_json,
                schema,
            });
        }
        Ok(Self { common, events })
    }

    /// Every event schema, grouped by aggregate.
    pub fn events(&self) -> &[EventSchema] {
        &self.events
    }

    /// The shared types, in dependency order.
    pub fn common(&self) -> &[CommonSchema] {
        &self.common
    }

    /// The schema of an event type name (names are unique across aggregates).
    pub fn by_event_type(&self, event_type: &str) -> Option<&EventSchema> {
        self.events.iter().find(|s| s.event_type == event_type)
    }

    /// The schema of a full record name, e.g. `io.keel.payment.PaymentRefunded`.
    pub fn by_full_name(&self, full_name: &str) -> Option<&EventSchema> {
        self.events.iter().find(|s| s.full_name == full_name)
    }

    /// The event schemas of one aggregate.
    pub fn for_aggregate(&self, aggregate: AggregateKind) -> impl Iterator<Item = &EventSchema> {
        self.events.iter().filter(move |s| s.aggregate == aggregate)
    }
}

fn parse_json(source: &Source) -> Result<Value, SchemaError> {
    serde_json::from_str(source.json).map_err(|e| SchemaError::Malformed {
        file: source.file,
        reason: e.to_string(),
    })
}

/// `(namespace, full name)` of a named record declared with an explicit namespace.
fn record_name(source: &Source, json: &Value) -> Result<(String, String), SchemaError> {
    let field = |key: &str| json.get(key).and_then(Value::as_str);
    match (field("type"), field("namespace"), field("name")) {
        (Some("record"), Some(namespace), Some(name)) if !name.contains('.') => {
            Ok((namespace.to_owned(), format!("{namespace}.{name}")))
        }
        _ => Err(SchemaError::Malformed {
            file: source.file,
            reason: "expected a record with a simple name and an explicit namespace".into(),
        }),
    }
}
