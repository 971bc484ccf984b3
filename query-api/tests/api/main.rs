//! Integration tests of the query API: the real application on port 0, each test with its
//! own PostgreSQL database (created from `DATABASE_URL` / `KEEL_DATABASE_URL`, default the
//! local stack) migrated by the projector's own `read_model::migrate`, read-model rows
//! inserted with SQL, driven over HTTP.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod consistency;
mod console;
mod customers;
mod edge;
mod helpers;
mod orders;
mod payments;
mod security;
mod service;
mod stock;
