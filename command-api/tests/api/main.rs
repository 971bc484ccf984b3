//! Integration tests of the command API: the real application on port 0, each test with
//! its own PostgreSQL database (created from `DATABASE_URL` / `KEEL_DATABASE_URL`, default
//! the local stack), driven over HTTP. Every test checks the answer and what the event
//! store holds afterwards.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod bad_input;
mod concurrency;
mod edge;
mod group_commit;
mod helpers;
mod idempotency;
mod inventory;
mod metadata;
mod orders;
mod payments;
mod personal_data;
mod security;
mod service;
