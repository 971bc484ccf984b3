//! Projectors against the real stack: commands go through the command API, the outbox
//! relay publishes them to Kafka (Avro, schema registry), and projectors fold them into
//! the read model. Every test has its own database (event store and `read_model` schema),
//! its own topic prefix and its own consumer groups, so tests run in parallel.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod support;

mod batching;
mod crash;
mod fenced;
mod happy_path;
mod held;
mod outage;
mod personal_data;
mod poison;
mod poison_flood;
mod redelivery;
mod shutdown;
