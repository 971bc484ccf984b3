//! The event store against real PostgreSQL: the commit-order reader and its horizon, stream
//! reads, the Rust definitions that must agree with the SQL (hash chain, outbox shards), and
//! the customer key table.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod append;
mod customer_keys;
mod doorbell;
mod hash_chain;
mod horizon;
mod log;
mod outbox;
mod support;
