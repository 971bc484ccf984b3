//! Projectors: Kafka consumer groups that build keel's read models in PostgreSQL.
//!
//! Each [`Projection`] reads its event topics as its own consumer group and maintains its
//! tables in the `read_model` schema ([`read_model::READ_MODEL_SCHEMA`]), never the event store's:
//!
//! | projection | topics | tables |
//! |---|---|---|
//! | `orders` | order, inventory, payment | `order_view`, `order_view_lines`, `order_reservations`, `order_payments`, `customer_orders` |
//! | `stock` | inventory | `stock_levels` |
//! | `payments` | payment | `payments` |
//!
//! Shared by all: `checkpoints` (last applied sequence per projection and source aggregate,
//! parked or retrying), `retry_events` (events held for a retry, [`retry`]) and
//! `dead_letters` (with the operator's answers, `read_model::dead_letters`). The [`projector`] module
//! documents batching, exactly-once effect, offset commits, retries and dead letters; [`checkpoint::CHANGES_CHANNEL`] is how readers
//! learn that a version was reached.
//!
//! Messages follow the relay's wire contract: topic `<prefix><aggregate>`, key = aggregate
//! id, value = Confluent wire format (schema id + Avro record whose `metadata` carries the
//! aggregate id and sequence), subjects under TopicRecordNameStrategy.
//!
//! [`replay`] rebuilds a projection from the event store into shadow tables and swaps them
//! in while the live projector keeps running (CLI: `keel-replay`).

pub mod checkpoint;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod decode;
pub mod event;
pub mod projection;
pub mod projector;
pub mod replay;
pub mod retry;
pub mod runtime;
pub mod stored_message;

pub use config::Settings;
pub use projection::Projection;
pub use projector::{Progress, Projector};
