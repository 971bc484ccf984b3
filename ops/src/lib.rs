//! Operations and security shared by the platform's processes.
//!
//! - [`clock`], [`ids`]: where "now" and new ids come from, so tests can pin them; the
//!   only places allowed to read the system clock or draw a random id (`clippy.toml`).
//! - [`metrics`]: the Prometheus recorder every binary installs once, the `/metrics`
//!   endpoint, and HTTP request metrics per route and status.
//! - [`auth`]: JWT bearer tokens (HS256 or RS256 with a configured key) mapped to roles,
//!   and the access rule of each route.
//! - [`rate_limit`]: per-client request quotas answered with 429 and `Retry-After`.
//! - [`gate`]: the one HTTP middleware that applies the last two, in that order of checks.
//! - [`health`]: `/health/live` and the pieces of every `/health/ready`.
//! - [`lifecycle`]: shutdown signals, a cancellation token they fire, retry until a
//!   dependency is ready, the HTTP server loop with its drain; [`edge`]: the request head's
//!   bounds and problem documents for what is refused before routing.
//! - [`problem`]: the one problem document of every error answer, and the safety net that
//!   gives every error response one.
//! - [`params`]: strict path and query parameters of GET routes, page limits, cursors.
//! - [`env`]: the one settings reader of every process ([`env::Env`]); [`settings`]: the
//!   HTTP server and database pool settings both APIs share.
//! - [`telemetry`]: logs (JSON or pretty), OTLP trace export, W3C trace context.
//!
//! Libraries record metrics through the `metrics` facade; only binaries (and tests that
//! want to read them) install the exporter.

pub mod auth;
pub mod clock;
pub mod edge;
pub mod env;
pub mod gate;
pub mod health;
pub mod ids;
pub mod lifecycle;
pub mod metrics;
pub mod params;
pub mod problem;
pub mod rate_limit;
pub mod settings;
pub mod telemetry;

pub use self::env::ConfigError;
