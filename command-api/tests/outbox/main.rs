//! The transactional outbox and its relay against the real broker and schema registry:
//! what reaches Kafka, in which order, and what survives crashes and broker outages.
//! Every test has its own database (the command API's test helpers) and its own topic
//! prefix, so tests run in parallel against the shared stack.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod support;

mod broker_outage;
mod ordering;
mod wire_contract;
