//! Typed configuration: defaults, overridden by `KEEL_*` environment variables, read with
//! `ops::env::Env` (a blank value counts as unset). The server and database settings are
//! `ops::settings`', shared with the command API.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KEEL_HTTP_ADDR` | `127.0.0.1:8090` | listen address (port 0 picks a free port) |
//! | `KEEL_HTTP_BODY_LIMIT_BYTES` | `65536` | largest accepted request body |
//! | `KEEL_HTTP_REQUEST_TIMEOUT_SECS` | `10` | a request still running after this is answered 503 |
//! | `KEEL_SHUTDOWN_GRACE_SECS` | `20` | after SIGTERM/Ctrl-C, how long in-flight requests may drain |
//! | `KEEL_DATABASE_URL` | `postgres://keel:keel@127.0.0.1:5432/keel` | the database holding schema `read_model` and, for the audit trail, the event store (secret: never logged; also read by `keel-audit`) |
//! | `KEEL_DB_MAX_CONNECTIONS` | `10` | connection pool size |
//! | `KEEL_DB_ACQUIRE_TIMEOUT_SECS` | `3` | how long a request waits for a pooled connection |
//! | `KEEL_READ_WAIT_TIMEOUT_MS` | `2000` | longest wait of a `?min_version=` read for the read model to catch up |
//! | `KEEL_READ_WAIT_RECHECK_MS` | `100` | while waiting, re-read at least this often (in case a notification is lost) |
//! | `KEEL_AUTH` | `jwt` | `jwt`: bearer tokens required (a key below must be set); `disabled`: local development only |
//! | `KEEL_AUTH_HS256_SECRET` / `_FILE` | — | HS256 key (≥ 32 bytes), inline or from a file (secret: never logged) |
//! | `KEEL_AUTH_RS256_PUBLIC_KEY` / `_FILE` | — | RS256 public key (PEM), inline or from a file |
//! | `KEEL_MASTER_KEY` / `_FILE` | — | master key that opens personal data in the audit trail for the `auditor` role (ADR 0009); unset = shown as `unavailable` |
//! | `KEEL_MASTER_KEY_PREVIOUS` / `_FILE` | — | master keys that still unwrap during a rotation (comma-separated) |
//! | `KEEL_AUTH_ISSUER`, `KEEL_AUTH_AUDIENCE` | — | required `iss` / `aud` claims, if set |
//! | `KEEL_AUTH_LEEWAY_SECS` | `30` | clock skew tolerated on `exp` / `nbf` |
//! | `KEEL_RATE_LIMIT_PER_SECOND` | `200` | requests per second per client (token subject, else IP); `0` = off |
//! | `KEEL_RATE_LIMIT_BURST` | twice the rate | requests a client may send at once |
//! | `KEEL_CONSOLE_DIR` | `console/web/dist` | the operator console's built web app, served at `/console` (relative to the working directory) |
//! | `KEEL_CONSOLE_SAGA_STUCK_SECS` | `60` | the console lists a saga flow that is not settled and has not moved for this long as stuck |
//! | `KEEL_LOG_FORMAT` | `json` | `json` or `pretty` |
//! | `RUST_LOG` | `info` | log filter (`tracing_subscriber::EnvFilter` syntax) |
//! | `KEEL_OTLP_ENDPOINT` | — | OTLP/HTTP traces endpoint (e.g. `http://otel-collector:4318/v1/traces`); unset = no trace export |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use audit::personal_data::Keyring;
use console::ConsoleSettings;

pub use ops::ConfigError;
pub use ops::env::DatabaseUrl;
use ops::env::Env;
pub use ops::settings::{DatabaseSettings, HttpSettings};
use ops::telemetry::{LogFormat, TelemetrySettings};

/// This service's name in logs and exported traces.
pub const SERVICE: &str = "query-api";

/// Everything the query API needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The HTTP server.
    pub http: HttpSettings,
    /// The read-model database.
    pub database: DatabaseSettings,
    /// Read-your-writes waits.
    pub read_wait: ReadWaitSettings,
    /// Logging and trace export.
    pub telemetry: TelemetrySettings,
    /// Opens personal data in the audit trail for auditors; `None`: `unavailable`.
    pub keyring: Option<Arc<Keyring>>,
    /// The operator console's web app.
    pub console_dir: PathBuf,
    /// The operator console's JSON routes.
    pub console: ConsoleSettings,
}

/// How `?min_version=` reads wait for the read model.
#[derive(Debug, Clone)]
pub struct ReadWaitSettings {
    /// Longest wait before answering 503 `read_model.not_caught_up`.
    pub timeout: Duration,
    /// Re-read at least this often while waiting, whether or not a notification came.
    pub recheck_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 8090))),
            database: DatabaseSettings::default(),
            read_wait: ReadWaitSettings {
                timeout: Duration::from_millis(2000),
                recheck_interval: Duration::from_millis(100),
            },
            telemetry: TelemetrySettings::new(SERVICE, LogFormat::Json),
            keyring: None,
            console_dir: PathBuf::from("console/web/dist"),
            console: ConsoleSettings::default(),
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
    /// [`ConfigError`] naming the first variable that does not parse, or
    /// `KEEL_READ_WAIT_TIMEOUT_MS` when a wait could outlast the request timeout.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(Env::new(&lookup))
    }

    fn read(env: Env<'_>) -> Result<Self, ConfigError> {
        let mut settings = Self::default();
        settings.http = settings.http.read(env)?;
        settings.database = settings.database.read(env)?;
        settings.keyring = env.master_keys(Keyring::from_config)?.map(Arc::new);
        if let Some(timeout) = env.positive_millis("KEEL_READ_WAIT_TIMEOUT_MS")? {
            settings.read_wait.timeout = timeout;
        }
        if let Some(every) = env.positive_millis("KEEL_READ_WAIT_RECHECK_MS")? {
            settings.read_wait.recheck_interval = every;
        }
        if let Some(dir) = env.text("KEEL_CONSOLE_DIR") {
            settings.console_dir = PathBuf::from(dir);
        }
        if let Some(stuck) = env.positive_secs("KEEL_CONSOLE_SAGA_STUCK_SECS")? {
            settings.console.saga_stuck_after = stuck;
        }
        settings.telemetry =
            TelemetrySettings::from_lookup(SERVICE, LogFormat::Json, env.lookup())?;
        settings.validate()?;
        Ok(settings)
    }

    /// A wait cut off by the request timeout would answer the generic timeout instead of
    /// the precise `read_model.not_caught_up`, so the wait must end first.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.read_wait.timeout >= self.http.request_timeout {
            return Err(ConfigError {
                var: "KEEL_READ_WAIT_TIMEOUT_MS",
                reason: format!(
                    "must be shorter than the request timeout ({:?})",
                    self.http.request_timeout
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
        assert_eq!(s.http.addr, "127.0.0.1:8090".parse().unwrap());
        assert_eq!(s.database.url.expose(), ops::env::LOCAL_DATABASE_URL);
        assert_eq!(s.database.max_connections, 10);
        assert_eq!(s.read_wait.timeout, Duration::from_millis(2000));
        assert_eq!(s.read_wait.recheck_interval, Duration::from_millis(100));
        assert_eq!(s.telemetry.format, LogFormat::Json);
        assert_eq!(s.console_dir, PathBuf::from("console/web/dist"));
        assert_eq!(s.console.saga_stuck_after, Duration::from_secs(60));
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = settings(&[
            ("KEEL_HTTP_ADDR", "0.0.0.0:9000"),
            ("KEEL_HTTP_REQUEST_TIMEOUT_SECS", "5"),
            ("KEEL_SHUTDOWN_GRACE_SECS", "0"),
            ("KEEL_DATABASE_URL", "postgres://u:p@db:5433/x"),
            ("KEEL_DB_MAX_CONNECTIONS", "3"),
            ("KEEL_DB_ACQUIRE_TIMEOUT_SECS", "1"),
            ("KEEL_READ_WAIT_TIMEOUT_MS", "500"),
            ("KEEL_READ_WAIT_RECHECK_MS", "25"),
            ("KEEL_LOG_FORMAT", "pretty"),
            ("RUST_LOG", "debug"),
            ("KEEL_CONSOLE_DIR", "/srv/console"),
            ("KEEL_CONSOLE_SAGA_STUCK_SECS", "300"),
        ])
        .unwrap();
        assert_eq!(s.http.addr.port(), 9000);
        assert_eq!(s.http.request_timeout, Duration::from_secs(5));
        assert_eq!(s.http.shutdown_grace, Duration::ZERO);
        assert_eq!(s.database.url.expose(), "postgres://u:p@db:5433/x");
        assert_eq!(s.database.max_connections, 3);
        assert_eq!(s.database.acquire_timeout, Duration::from_secs(1));
        assert_eq!(s.read_wait.timeout, Duration::from_millis(500));
        assert_eq!(s.read_wait.recheck_interval, Duration::from_millis(25));
        assert_eq!(s.telemetry.format, LogFormat::Pretty);
        assert_eq!(s.telemetry.filter, "debug");
        assert_eq!(s.console_dir, PathBuf::from("/srv/console"));
        assert_eq!(s.console.saga_stuck_after, Duration::from_secs(300));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = settings(&[("KEEL_DB_MAX_CONNECTIONS", "many")]).unwrap_err();
        assert!(
            err.to_string().starts_with("KEEL_DB_MAX_CONNECTIONS:"),
            "{err}"
        );
        let err = settings(&[("KEEL_READ_WAIT_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(err.to_string().contains("greater than zero"), "{err}");
        let err = settings(&[("KEEL_LOG_FORMAT", "xml")]).unwrap_err();
        assert!(err.to_string().starts_with("KEEL_LOG_FORMAT:"), "{err}");
    }

    #[test]
    fn read_wait_must_end_before_the_request_timeout() {
        let err = settings(&[
            ("KEEL_HTTP_REQUEST_TIMEOUT_SECS", "2"),
            ("KEEL_READ_WAIT_TIMEOUT_MS", "2000"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("KEEL_READ_WAIT_TIMEOUT_MS:"),
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
