//! Write side of keel: every domain command over HTTP, recorded in the PostgreSQL event
//! store with optimistic concurrency and idempotency keys.
//!
//! - [`http`]: routes (table in its docs), extractors whose rejections are problem
//!   documents, responses with `ETag`, the OpenAPI document.
//! - [`store`]: the write path on postgres-es — load, check `If-Match`, decide, append,
//!   read back the event ids — and the idempotency keys recorded in the append transaction.
//! - [`startup`]: wiring, migrations at start-up, graceful shutdown; [`startup::Application`]
//!   binds to any port (0 in tests) so tests run the real service.
//! - [`gateway`]: timeout, retries and circuit breaker around the payment-gateway port.
//! - [`config`]: typed settings (time and ids come from `ops::clock` and `ops::ids`;
//!   logging, tracing and metrics are set up by the binary through `ops`).
//!
//! The event store's schema is `event_store`'s; the relay and the saga that follow this
//! service are their own crates (`outbox-relay`, `saga`).
//!
//! Design notes: `docs/adr/0003-command-api-concurrency-and-idempotency.md`.

pub mod config;
pub mod gateway;
pub mod http;
pub mod startup;
pub mod store;
pub mod vault;
