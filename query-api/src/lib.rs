//! Read side of keel: HTTP over the read models that the projectors maintain in PostgreSQL
//! schema `read_model` (migrated by the projector, never by this service), the audit trail
//! and the operator console. Every route is a GET but the console's two actions on dead
//! letters.
//!
//! | method | path | read model | notes |
//! |---|---|---|---|
//! | GET | `/orders/{order_id}` | `order_view` + `order_view_lines`, `order_reservations`, `order_payments` | `?min_version=`; `ETag` |
//! | GET | `/orders/{order_id}/payments` | `payments` | oldest first; 404 if neither order nor payment is known |
//! | GET | `/customers/{customer_id}/orders` | `customer_orders` | `?status=&limit=&cursor=`; newest first |
//! | GET | `/payments/{payment_id}` | `payments` | `?min_version=`; `ETag` |
//! | GET | `/stock` | `stock_levels` | `?limit=&cursor=`; by SKU |
//! | GET | `/stock/{sku}` | `stock_levels` | `?min_version=`; `ETag` |
//! | GET | `/projections` | `checkpoints`, `dead_letters` | per-projection progress, for operators |
//! | GET | `/audit/…` | `public.events` | the audit trail's routes, from `audit::http` (see there) |
//! | GET, POST | `/console`, `/console/api/…` | all of the above, the saga's tables | the operator console, from the `console` crate (see there) |
//! | GET | `/health/live`, `/health/ready` | — | ready = PostgreSQL answers and `read_model.checkpoints` exists |
//! | GET | `/openapi.json` | — | the OpenAPI 3 document of every route |
//!
//! Errors are `application/problem+json` ([`http::problem`]): 400 names the bad path or
//! query parameter (unknown and repeated parameters included), 404 an unknown id, 503 with
//! `Retry-After` a database outage (details only in the log) or a `min_version` the read
//! model did not reach in time (`not_yet_consistent`).
//!
//! - `read_model` (its own crate, shared with the projector that writes the tables): the
//!   SQL and the views it returns (which are the response bodies).
//! - `audit` (its own crate): the audit trail — reads of the event store itself (the only
//!   reads of the write model), hash-chain verification, time travel, its routes and the
//!   `keel-audit` CLI. This crate mounts the routes behind its `auditor` role.
//! - `console` (its own crate): the operator console's web app and JSON, mounted behind
//!   `auditor` (reads) and `operator` (actions); the web app itself is public.
//! - [`changes`]: read-your-writes — one `LISTEN keel_read_model` task per process fanning
//!   out to waiting requests, with a periodic re-read in case a notification is lost.
//! - [`http`]: routes, extractors on `ops::params`, keyset cursors ([`http::cursor`]),
//!   OpenAPI.
//! - [`startup`]: wiring and graceful shutdown; [`startup::Application`] binds any port
//!   (0 in tests) so tests run the real service. [`config`]: typed settings (the `KEEL_*`
//!   table); logging, tracing and metrics are set up by the binary through `ops`.

pub mod changes;
pub mod config;
pub mod http;
pub mod startup;
