//! The audit trail: read-only access to the event store itself (`public.events`, owned and
//! migrated by the command API), the one place the query API reads the write model.
//!
//! - [`store`]: the SQL — a stream's history, the global log in commit order with filters,
//!   the rows the hash chain covers. Reads only.
//! - [`hash`]: the per-stream hash chain's definition, recomputed in Rust (the database
//!   seals each append with a trigger, `command-api/migrations/0011_hash_chain.sql`).
//! - [`verify`]: finds the first event whose stored content no longer matches its link.
//! - [`state`]: time travel — folds a stream up to a version with the domain's `apply`.
//!
//! Served by [`crate::http::audit`] and by the `keel-audit` CLI.

pub mod hash;
pub mod state;
pub mod store;
pub mod verify;
