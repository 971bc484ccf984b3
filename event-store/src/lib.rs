//! The event store: the PostgreSQL schema every append goes into, and everything that must
//! agree with its SQL, in one crate so that a change to a table and to its readers is one
//! change.
//!
//! - [`MIGRATOR`] / [`migrate`]: events, snapshots, idempotency keys, outbox, hash chain
//!   and the appender marker the log's horizon reads (`migrations/`). The command API applies them at start-up; every other reader
//!   only reads.
//! - [`log`]: the one reader of the global log in commit order, which never steps over an
//!   event that commits late (invariant 4, `docs/adr/0002-outbox-and-global-position.md`)
//!   and waits only for transactions that append (`docs/adr/0008-global-log-horizon.md`).
//!   The replay, the audit trail and the tests read through it.
//! - [`append`]: many commands' events in one transaction, each command all or nothing
//!   (the group commit's statement, `docs/adr/0010-group-commit.md`).
//! - [`stream`]: one aggregate's events in sequence order, its version now or at a time.
//! - [`hash_chain`]: the per-stream hash chain's definition in Rust, next to the trigger
//!   that seals each append (`migrations/0011_hash_chain.sql`), and the rows it covers.
//! - [`outbox`]: the queue the append trigger fills and the relay drains, and its shard
//!   count, which must equal the trigger's modulus.
//! - [`doorbell`]: the `NOTIFY` a writer sends after a commit that queued events, so an
//!   idle relay wakes at once instead of at its next poll.
//! - [`customer_keys`]: per-customer data keys wrapped by the master key, sealing and
//!   opening personal data, master-key rotation (`docs/adr/0009-crypto-shredding.md`).
//! - [`activity`]: events and commands recorded per time bucket, the log's head.
//! - `seed` (feature `seed`): bulk rows for rebuild benchmarks.
//!
//! Migration files are frozen once applied: sqlx keeps a checksum of each, so even a comment
//! in one cannot change (several still name the crate that owned them before this one).

pub mod activity;
pub mod append;
pub mod customer_keys;
pub mod doorbell;
pub mod hash_chain;
pub mod log;
pub mod outbox;
#[cfg(feature = "seed")]
pub mod seed;
pub mod stream;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

pub use log::{LogFilter, LogPosition, RecordedEvent};
pub use stream::StreamRef;

/// The event store's migrations, embedded at compile time.
///
/// Versions 1–19 are the event store's. The saga's own migrator records its versions
/// (20–29) in the same `public._sqlx_migrations`, so each migrator ignores versions it does
/// not know instead of refusing to run (`ignore_missing`).
pub static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!()
};

/// Applies [`MIGRATOR`]; concurrent callers are serialized by sqlx's advisory lock.
///
/// # Errors
/// The database is unreachable, or a migration fails (nothing of it is kept).
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}
