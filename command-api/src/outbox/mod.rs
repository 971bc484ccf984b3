//! Transactional outbox relay: publishes the events the append trigger queued in `outbox`
//! to Kafka, in per-aggregate order, deleting a row only after the broker acknowledged it.
//! Design and guarantees: `docs/adr/0002-outbox-and-global-position.md`.

mod config;
mod encode;
mod error;
mod leases;
mod relay;
mod store;
mod topics;

pub use config::RelayConfig;
pub use encode::{SchemaIds, WireRecord, encode_for_wire, register_schemas};
pub use error::RelayError;
pub use leases::ShardLeases;
pub use relay::{OutboxRelay, PublishedBatch};
pub use store::{Backlog, PendingEvent, backlog, delete_published, fetch_batch};
pub use topics::ensure_topics;

/// Number of outbox shards; must match the modulus in `migrations/0010_outbox.sql`.
pub const OUTBOX_SHARDS: i16 = 64;
