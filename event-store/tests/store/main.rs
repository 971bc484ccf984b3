//! The event store against real PostgreSQL: the commit-order reader, stream reads, and the
//! Rust definitions that must agree with the SQL (hash chain, outbox shards).

mod hash_chain;
mod log;
mod outbox;
mod support;
