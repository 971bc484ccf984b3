//! Transactional outbox relay: publishes the events the append trigger queued in `outbox`
//! to Kafka, in per-aggregate order, deleting a row only after the broker acknowledged it.
//! Design and guarantees: `docs/adr/0002-outbox-and-global-position.md`.

mod config;
mod encode;
mod error;
mod leases;
mod relay;
mod topics;

pub use config::RelayConfig;
pub use encode::{SchemaIds, WireRecord, encode_for_wire, register_schemas};
pub use error::RelayError;
pub use event_store::outbox::{
    Backlog, OUTBOX_SHARDS, PendingEvent, backlog, delete_published, fetch_batch,
};
pub use leases::ShardLeases;
pub use relay::{OutboxRelay, PublishedBatch};
pub use topics::ensure_topics;
