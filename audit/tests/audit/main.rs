//! Integration tests of the audit trail: the real command API writes events into a fresh
//! PostgreSQL database (created from `DATABASE_URL` / `KEEL_DATABASE_URL`, default the local
//! stack, and migrated by the command API itself, hash chain included); the real query API
//! reads them back through `/audit/…`; the `keel-audit` binary runs against the same
//! database.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod helpers;
mod history;
mod log;
mod personal_data;
mod state;
mod verify;
