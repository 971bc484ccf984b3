//! Rebuilds against the real stack: the command API and the outbox relay write real events,
//! live projectors keep consuming Kafka while a rebuild from the event store runs, swaps and
//! hands over. Each result is compared, table by table and row by row, with a reference
//! read model built by a fresh projector (its own consumer group) in a database of its own.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../projector/support.rs"]
mod support;

mod helpers;

mod cli;
mod rebuild;
mod refusals;
