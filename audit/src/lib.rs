//! The audit trail: read-only access to the event store itself (`public.events`, owned by
//! the `event-store` crate) for auditors — another source, audience and reason to change
//! than the read models. The query API serves it over HTTP (`/audit/...`); the
//! `keel-audit` CLI from a terminal.
//!
//! - [`store`]: a stream's history, the global log in commit order with filters, the rows
//!   the hash chain covers, read through `event_store` and shaped for the API.
//! - The hash chain's definition is `event_store::hash_chain`, next to the trigger that
//!   seals each append.
//! - [`verify`]: finds the first event whose stored content no longer matches its link.
//! - [`state`]: time travel — folds a stream up to a version with the domain's `apply`.
//! - [`http`]: the `/audit/…` routes with their OpenAPI operations, mounted by the query
//!   API; the `keel-audit` binary (`src/bin`) is the same trail from a terminal.

pub mod http;
pub mod personal_data;
pub mod state;
pub mod store;
pub mod verify;
