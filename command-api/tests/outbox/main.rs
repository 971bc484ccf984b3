//! The transactional outbox and its relay against the real broker and schema registry:
//! what reaches Kafka, in which order, and what survives crashes and broker outages.
//! Every test has its own database (the command API's test helpers) and its own topic
//! prefix, so tests run in parallel against the shared stack.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod support;

mod broker_outage;
mod ordering;
mod wire_contract;
