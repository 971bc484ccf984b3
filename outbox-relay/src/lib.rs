//! The outbox relay (binary `outbox-relay`): publishes the events the append trigger queued in `outbox`
//! to Kafka, in per-aggregate order, deleting a row only after the broker acknowledged it.
//! Design and guarantees: `docs/adr/0002-outbox-and-global-position.md`.
//!
//! The queue itself (its SQL and shard count) belongs to `event_store::outbox`; this crate
//! owns what a relay adds: shard leases between relay instances (`outbox_relays`), Avro
//! encoding through the registry, the Kafka producer, and waiting on an empty outbox until
//! a writer rings the doorbell (`event_store::doorbell`) or the poll interval passes.

mod config;
mod encode;
mod error;
mod leases;
mod relay;
mod wakeups;

pub use config::RelayConfig;
pub use encode::{SchemaIds, WireRecord, encode_for_wire, register_schemas};
pub use error::RelayError;
pub use event_store::outbox::{
    Backlog, OUTBOX_SHARDS, PendingEvent, backlog, delete_published, fetch_batch,
};
pub use leases::{ShardLeases, relay_id_for};
pub use relay::{OutboxRelay, PublishedBatch};
