//! Typed configuration: defaults, overridden by `KEEL_*` environment variables, read with
//! `ops::env::Env` (a blank value counts as unset). The server and database settings are
//! `ops::settings`', shared with the query API.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KEEL_HTTP_ADDR` | `127.0.0.1:8080` | listen address (port 0 picks a free port) |
//! | `KEEL_HTTP_BODY_LIMIT_BYTES` | `65536` | largest accepted request body |
//! | `KEEL_HTTP_REQUEST_TIMEOUT_SECS` | `10` | a request still running after this is answered 503 |
//! | `KEEL_SHUTDOWN_GRACE_SECS` | `20` | after SIGTERM/Ctrl-C, how long in-flight requests may drain |
//! | `KEEL_DATABASE_URL` | `postgres://keel:keel@127.0.0.1:5432/keel` | the event store (secret: never logged) |
//! | `KEEL_DB_MAX_CONNECTIONS` | `10` | connection pool size |
//! | `KEEL_DB_ACQUIRE_TIMEOUT_SECS` | `3` | how long a request waits for a pooled connection |
//! | `KEEL_INVENTORY_SNAPSHOT_EVERY` | `100` | inventory items are snapshotted every N events |
//! | `KEEL_GROUP_COMMIT_MAX_BATCH` | `64` | most commands appended in one transaction (1–64; ADR 0010) |
//! | `KEEL_GROUP_COMMIT_WAIT_US` | `500` | how long a batch waits for more commands after its first (µs); 0 = take what is queued |
//! | `KEEL_AGGREGATE_CACHE_ENTRIES` | `10000` | recent aggregate states kept per aggregate type; commands on one aggregate take turns in the process (ADR 0010); `0` = no cache, no turns |
//! | `KEEL_GROUP_COMMIT_IN_FLIGHT` | `2` | batches committing at once (each holds a pooled connection) |
//! | `KEEL_OUTBOX_DOORBELL_MS` | `5` | after a commit, wake idle relays with a `NOTIFY` (`event_store::doorbell`), at most once per this many ms; `0` = never (relays find events at their next poll) |
//! | `KEEL_PAYMENT_GATEWAY` | `simulated` | payment gateway adapter (only `simulated` exists) |
//! | `KEEL_GATEWAY_CALL_TIMEOUT_MS` | `2000` | upper bound on one payment-gateway call |
//! | `KEEL_GATEWAY_MAX_RETRIES` | `2` | retries of a failed gateway call (transient failures only) |
//! | `KEEL_GATEWAY_BACKOFF_BASE_MS` | `100` | first retry's backoff ceiling (doubles, full jitter) |
//! | `KEEL_GATEWAY_BACKOFF_MAX_MS` | `2000` | largest backoff ceiling |
//! | `KEEL_GATEWAY_BREAKER_THRESHOLD` | `5` | consecutive failed calls that open the circuit |
//! | `KEEL_GATEWAY_BREAKER_OPEN_MS` | `30000` | how long the open circuit fails fast before a trial call |
//! | `KEEL_AUTH` | `jwt` | `jwt`: bearer tokens required (a key below must be set); `disabled`: local development only |
//! | `KEEL_AUTH_HS256_SECRET` / `_FILE` | — | HS256 key (≥ 32 bytes), inline or from a file (secret: never logged) |
//! | `KEEL_AUTH_RS256_PUBLIC_KEY` / `_FILE` | — | RS256 public key (PEM), inline or from a file |
//! | `KEEL_MASTER_KEY` / `_FILE` | — | master key of personal data (base64 of 32 bytes; ADR 0009); unset = orders with personal data are refused (503) |
//! | `KEEL_MASTER_KEY_PREVIOUS` / `_FILE` | — | master keys that still unwrap during a rotation (comma-separated) |
//! | `KEEL_AUTH_ISSUER`, `KEEL_AUTH_AUDIENCE` | — | required `iss` / `aud` claims, if set |
//! | `KEEL_AUTH_LEEWAY_SECS` | `30` | clock skew tolerated on `exp` / `nbf` |
//! | `KEEL_RATE_LIMIT_PER_SECOND` | `200` | requests per second per client (token subject, else IP); `0` = off |
//! | `KEEL_RATE_LIMIT_BURST` | twice the rate | requests a client may send at once |
//! | `KEEL_GATEWAY_MAX_CONCURRENCY` | `32` | payment-gateway calls in flight at once; more wait, within the call timeout |
//! | `KEEL_LOG_FORMAT` | `json` | `json` or `pretty` |
//! | `RUST_LOG` | `info` | log filter (`tracing_subscriber::EnvFilter` syntax) |
//! | `KEEL_OTLP_ENDPOINT` | — | OTLP/HTTP traces endpoint (e.g. `http://otel-collector:4318/v1/traces`); unset = no trace export |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use event_store::customer_keys::Keyring;

pub use ops::ConfigError;
pub use ops::env::DatabaseUrl;
use ops::env::Env;
pub use ops::settings::{DatabaseSettings, HttpSettings};
use ops::telemetry::{LogFormat, TelemetrySettings};

use crate::gateway::GatewayGuardSettings;
use crate::store::group_commit::{GroupCommitSettings, MAX_BATCH_LIMIT};

/// This service's name in logs and exported traces.
pub const SERVICE: &str = "command-api";

/// Everything the command API needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The HTTP server.
    pub http: HttpSettings,
    /// The event store's database.
    pub database: DatabaseSettings,
    /// Event store tuning.
    pub event_store: EventStoreSettings,
    /// Which payment gateway adapter to wire in.
    pub payment_gateway: PaymentGatewayKind,
    /// Timeout, retries and circuit breaker around every payment-gateway call.
    pub gateway_guard: GatewayGuardSettings,
    /// Logging and trace export.
    pub telemetry: TelemetrySettings,
    /// The master keys that wrap customers' data keys; `None`: personal data is refused.
    pub keyring: Option<Arc<Keyring>>,
}

/// Event store settings.
#[derive(Debug, Clone)]
pub struct EventStoreSettings {
    /// Snapshot an inventory item every this many events (its stream grows with every
    /// reservation, so it is the long one).
    pub inventory_snapshot_every: usize,
    /// How concurrent appends are batched into transactions.
    pub group_commit: GroupCommitSettings,
    /// Recent aggregate states kept per aggregate type; 0 = no cache and no turns.
    pub aggregate_cache_entries: usize,
    /// Least time between two wake-ups of the relays after commits; `None`: no wake-ups.
    pub doorbell_spacing: Option<Duration>,
}

/// The payment gateway adapter behind the `PaymentGateway` port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentGatewayKind {
    /// The deterministic in-process simulator of the `aggregates` crate.
    Simulated,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 8080))),
            database: DatabaseSettings::default(),
            event_store: EventStoreSettings {
                inventory_snapshot_every: 100,
                group_commit: GroupCommitSettings::default(),
                aggregate_cache_entries: 10_000,
                doorbell_spacing: Some(Duration::from_millis(5)),
            },
            payment_gateway: PaymentGatewayKind::Simulated,
            gateway_guard: GatewayGuardSettings::default(),
            telemetry: TelemetrySettings::new(SERVICE, LogFormat::Json),
            keyring: None,
        }
    }
}

impl Settings {
    /// Defaults overridden by the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        ops::env::from_process(Self::read)
    }

    /// Defaults overridden by whatever `lookup` returns for each variable name.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(Env::new(&lookup))
    }

    fn read(env: Env<'_>) -> Result<Self, ConfigError> {
        let mut settings = Self::default();
        settings.http = settings.http.read(env)?;
        settings.database = settings.database.read(env)?;
        settings.keyring = env.master_keys(Keyring::from_config)?.map(Arc::new);
        if let Some(every) = env.positive("KEEL_INVENTORY_SNAPSHOT_EVERY")? {
            settings.event_store.inventory_snapshot_every = every;
        }
        let group_commit = &mut settings.event_store.group_commit;
        if let Some(max_batch) = env.positive::<usize>("KEEL_GROUP_COMMIT_MAX_BATCH")? {
            if max_batch > MAX_BATCH_LIMIT {
                return Err(ConfigError {
                    var: "KEEL_GROUP_COMMIT_MAX_BATCH",
                    reason: format!(
                        "{max_batch} is above {MAX_BATCH_LIMIT}: a larger transaction overflows \
                         PostgreSQL's cache of subtransactions, which slows every reader"
                    ),
                });
            }
            group_commit.max_batch = max_batch;
        }
        if let Some(micros) = env.parsed::<u64>("KEEL_GROUP_COMMIT_WAIT_US")? {
            group_commit.max_wait = Duration::from_micros(micros);
        }
        if let Some(in_flight) = env.positive("KEEL_GROUP_COMMIT_IN_FLIGHT")? {
            group_commit.in_flight = in_flight;
        }
        if let Some(entries) = env.parsed("KEEL_AGGREGATE_CACHE_ENTRIES")? {
            settings.event_store.aggregate_cache_entries = entries;
        }
        if let Some(millis) = env.parsed::<u64>("KEEL_OUTBOX_DOORBELL_MS")? {
            settings.event_store.doorbell_spacing =
                (millis > 0).then(|| Duration::from_millis(millis));
        }
        if let Some(gateway) = env.text("KEEL_PAYMENT_GATEWAY") {
            settings.payment_gateway = match gateway.as_str() {
                "simulated" => PaymentGatewayKind::Simulated,
                other => {
                    return Err(ConfigError {
                        var: "KEEL_PAYMENT_GATEWAY",
                        reason: format!("unknown gateway {other:?}; supported: simulated"),
                    });
                }
            };
        }
        let guard = &mut settings.gateway_guard;
        if let Some(timeout) = env.positive_millis("KEEL_GATEWAY_CALL_TIMEOUT_MS")? {
            guard.call_timeout = timeout;
        }
        if let Some(retries) = env.parsed("KEEL_GATEWAY_MAX_RETRIES")? {
            guard.max_retries = retries;
        }
        if let Some(base) = env.millis("KEEL_GATEWAY_BACKOFF_BASE_MS")? {
            guard.backoff_base = base;
        }
        if let Some(max) = env.millis("KEEL_GATEWAY_BACKOFF_MAX_MS")? {
            guard.backoff_max = max;
        }
        if let Some(threshold) = env.positive("KEEL_GATEWAY_BREAKER_THRESHOLD")? {
            guard.failure_threshold = threshold;
        }
        if let Some(open_for) = env.positive_millis("KEEL_GATEWAY_BREAKER_OPEN_MS")? {
            guard.open_for = open_for;
        }
        if let Some(calls) = env.positive("KEEL_GATEWAY_MAX_CONCURRENCY")? {
            guard.max_concurrent_calls = calls;
        }
        settings.telemetry =
            TelemetrySettings::from_lookup(SERVICE, LogFormat::Json, env.lookup())?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use ops::auth::AuthSettings;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| {
            vars.get(name)
                .cloned()
                .or_else(|| (name == "KEEL_AUTH").then(|| "disabled".to_owned()))
        })
    }

    #[test]
    fn defaults_apply_without_environment() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.http.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.database.url.expose(), ops::env::LOCAL_DATABASE_URL);
        assert_eq!(s.database.max_connections, 10);
        assert_eq!(s.event_store.inventory_snapshot_every, 100);
        assert_eq!(s.payment_gateway, PaymentGatewayKind::Simulated);
        assert_eq!(s.gateway_guard, GatewayGuardSettings::default());
        assert_eq!(s.telemetry.format, LogFormat::Json);
        let limit = s.http.rate_limit.unwrap();
        assert_eq!((limit.per_second.get(), limit.burst.get()), (200, 400));
    }

    #[test]
    fn authentication_is_required_unless_disabled() {
        let err = Settings::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().starts_with("KEEL_AUTH:"), "{err}");
        let secret = "a-32-byte-long-hs256-secret-value";
        let s = settings(&[("KEEL_AUTH", "jwt"), ("KEEL_AUTH_HS256_SECRET", secret)]).unwrap();
        assert!(matches!(s.http.auth, AuthSettings::Jwt(_)));
        assert!(!format!("{s:?}").contains(secret));
    }

    #[test]
    fn gateway_guard_settings_come_from_the_environment() {
        let s = settings(&[
            ("KEEL_GATEWAY_CALL_TIMEOUT_MS", "750"),
            ("KEEL_GATEWAY_MAX_RETRIES", "0"),
            ("KEEL_GATEWAY_BACKOFF_BASE_MS", "10"),
            ("KEEL_GATEWAY_BACKOFF_MAX_MS", "80"),
            ("KEEL_GATEWAY_BREAKER_THRESHOLD", "3"),
            ("KEEL_GATEWAY_BREAKER_OPEN_MS", "1500"),
        ])
        .unwrap();
        assert_eq!(
            s.gateway_guard,
            GatewayGuardSettings {
                call_timeout: Duration::from_millis(750),
                max_retries: 0,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(80),
                failure_threshold: 3,
                open_for: Duration::from_millis(1500),
                max_concurrent_calls: 32,
            }
        );
        let err = settings(&[("KEEL_GATEWAY_BREAKER_THRESHOLD", "0")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("KEEL_GATEWAY_BREAKER_THRESHOLD:"),
            "{err}"
        );
    }

    #[test]
    fn group_commit_settings_come_from_the_environment() {
        assert_eq!(
            settings(&[]).unwrap().event_store.group_commit,
            GroupCommitSettings::default()
        );
        let s = settings(&[
            ("KEEL_GROUP_COMMIT_MAX_BATCH", "16"),
            ("KEEL_GROUP_COMMIT_WAIT_US", "500"),
            ("KEEL_GROUP_COMMIT_IN_FLIGHT", "3"),
            ("KEEL_AGGREGATE_CACHE_ENTRIES", "0"),
        ])
        .unwrap();
        assert_eq!(s.event_store.aggregate_cache_entries, 0);
        assert_eq!(
            settings(&[]).unwrap().event_store.doorbell_spacing,
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            settings(&[("KEEL_OUTBOX_DOORBELL_MS", "20")])
                .unwrap()
                .event_store
                .doorbell_spacing,
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            settings(&[("KEEL_OUTBOX_DOORBELL_MS", "0")])
                .unwrap()
                .event_store
                .doorbell_spacing,
            None
        );
        assert_eq!(
            s.event_store.group_commit,
            GroupCommitSettings {
                max_batch: 16,
                max_wait: Duration::from_micros(500),
                in_flight: 3,
            }
        );
        for (var, value) in [
            ("KEEL_GROUP_COMMIT_MAX_BATCH", "65"),
            ("KEEL_GROUP_COMMIT_MAX_BATCH", "0"),
            ("KEEL_GROUP_COMMIT_IN_FLIGHT", "0"),
            ("KEEL_GROUP_COMMIT_WAIT_US", "soon"),
            ("KEEL_AGGREGATE_CACHE_ENTRIES", "-1"),
            ("KEEL_OUTBOX_DOORBELL_MS", "-5"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{var}:")), "{err}");
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = settings(&[
            ("KEEL_HTTP_ADDR", "0.0.0.0:9000"),
            ("KEEL_HTTP_BODY_LIMIT_BYTES", "1024"),
            ("KEEL_HTTP_REQUEST_TIMEOUT_SECS", "5"),
            ("KEEL_SHUTDOWN_GRACE_SECS", "0"),
            ("KEEL_DATABASE_URL", "postgres://u:p@db:5433/x"),
            ("KEEL_DB_MAX_CONNECTIONS", "3"),
            ("KEEL_DB_ACQUIRE_TIMEOUT_SECS", "1"),
            ("KEEL_INVENTORY_SNAPSHOT_EVERY", "7"),
            ("KEEL_LOG_FORMAT", "pretty"),
            ("RUST_LOG", "debug"),
        ])
        .unwrap();
        assert_eq!(s.http.addr.port(), 9000);
        assert_eq!(s.http.body_limit_bytes, 1024);
        assert_eq!(s.http.request_timeout, Duration::from_secs(5));
        assert_eq!(s.http.shutdown_grace, Duration::ZERO);
        assert_eq!(s.database.url.expose(), "postgres://u:p@db:5433/x");
        assert_eq!(s.database.max_connections, 3);
        assert_eq!(s.database.acquire_timeout, Duration::from_secs(1));
        assert_eq!(s.event_store.inventory_snapshot_every, 7);
        assert_eq!(s.telemetry.format, LogFormat::Pretty);
        assert_eq!(s.telemetry.filter, "debug");
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = settings(&[("KEEL_DB_MAX_CONNECTIONS", "many")]).unwrap_err();
        assert!(
            err.to_string().starts_with("KEEL_DB_MAX_CONNECTIONS:"),
            "{err}"
        );
        let err = settings(&[("KEEL_INVENTORY_SNAPSHOT_EVERY", "0")]).unwrap_err();
        assert!(err.to_string().contains("greater than zero"), "{err}");
        let err = settings(&[("KEEL_PAYMENT_GATEWAY", "stripe")]).unwrap_err();
        assert!(
            err.to_string().starts_with("KEEL_PAYMENT_GATEWAY:"),
            "{err}"
        );
    }

    #[test]
    fn database_url_secret_never_shows() {
        let err = settings(&[("KEEL_DATABASE_URL", "mysql://root:hunter2@x")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let s = settings(&[("KEEL_DATABASE_URL", "postgres://keel:hunter2@db:5432/keel")]).unwrap();
        let shown = format!("{s:?} {}", s.database.url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://keel:***@db:5432/keel"),
            "{shown}"
        );
    }
}
