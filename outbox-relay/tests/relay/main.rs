//! The transactional outbox and its relay against the real broker and schema registry:
//! what reaches Kafka, in which order, and what survives crashes and broker outages.
//! The events are written by the real command API (its own test helpers, shared by path
//! so both suites start it the same way). Every test has its own database and its own
//! topic prefix, so tests run in parallel against the shared stack.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../../../command-api/tests/api/helpers.rs"]
mod helpers;
mod support;

mod broker_outage;
mod leases;
mod ordering;
mod wakeups;
mod wire_contract;
