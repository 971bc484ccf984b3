//! The settings every HTTP service shares, read with [`Env`]: its server and its database
//! pool. Each service keeps its own `Settings` with these two inside, its own defaults
//! where they differ (the listen address), and its own variables for the rest.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KEEL_HTTP_ADDR` | per service | listen address (port 0 picks a free port) |
//! | `KEEL_HTTP_BODY_LIMIT_BYTES` | `65536` | largest accepted request body |
//! | `KEEL_HTTP_MAX_HEADER_BYTES` | `16384` | largest accepted request headers, all lines together (more: 431) |
//! | `KEEL_HTTP_MAX_URI_BYTES` | `8192` | longest accepted request target (more: 414) |
//! | `KEEL_HTTP_REQUEST_TIMEOUT_SECS` | `10` | a request still running after this is answered 503 |
//! | `KEEL_SHUTDOWN_GRACE_SECS` | `20` | after SIGTERM/Ctrl-C, how long in-flight requests may drain |
//! | `KEEL_AUTH…`, `KEEL_RATE_LIMIT…` | see [`AuthSettings`], [`RateLimitSettings`] | bearer tokens, per-client quotas |
//! | `KEEL_DATABASE_URL` | `postgres://keel:keel@127.0.0.1:5432/keel` | the database (secret: never logged) |
//! | `KEEL_DB_MAX_CONNECTIONS` | `10` | connection pool size |
//! | `KEEL_DB_ACQUIRE_TIMEOUT_SECS` | `3` | how long a request waits for a pooled connection |

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::auth::AuthSettings;
use crate::env::{ConfigError, DatabaseUrl, Env, LOCAL_DATABASE_URL};
use crate::rate_limit::RateLimitSettings;

/// An HTTP server's settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Largest accepted request headers, in bytes (names, values and line framing).
    pub max_header_bytes: usize,
    /// Longest accepted request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// Upper bound on handling one request.
    pub request_timeout: Duration,
    /// How long in-flight requests may drain after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Bearer-token authentication (`Disabled` by default in code; the environment's
    /// default is `jwt`, which needs a key).
    pub auth: AuthSettings,
    /// Per-client rate limit; `None` = off.
    pub rate_limit: Option<RateLimitSettings>,
}

impl HttpSettings {
    /// The defaults, listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            body_limit_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            request_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
            auth: AuthSettings::Disabled,
            rate_limit: None,
        }
    }

    /// These settings overridden by `env`. Authentication comes from the environment
    /// only: its default there is `jwt`, so a service never starts open by accident.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that cannot be used.
    pub fn read(mut self, env: Env<'_>) -> Result<Self, ConfigError> {
        if let Some(addr) = env.parsed("KEEL_HTTP_ADDR")? {
            self.addr = addr;
        }
        if let Some(limit) = env.positive("KEEL_HTTP_BODY_LIMIT_BYTES")? {
            self.body_limit_bytes = limit;
        }
        if let Some(limit) = env.positive("KEEL_HTTP_MAX_HEADER_BYTES")? {
            self.max_header_bytes = limit;
        }
        if let Some(limit) = env.positive("KEEL_HTTP_MAX_URI_BYTES")? {
            self.max_uri_bytes = limit;
        }
        if let Some(timeout) = env.positive_secs("KEEL_HTTP_REQUEST_TIMEOUT_SECS")? {
            self.request_timeout = timeout;
        }
        if let Some(grace) = env.secs("KEEL_SHUTDOWN_GRACE_SECS")? {
            self.shutdown_grace = grace;
        }
        self.auth = AuthSettings::from_lookup(env.lookup())?;
        self.rate_limit = RateLimitSettings::from_lookup(env.lookup())?;
        Ok(self)
    }
}

/// A service's database pool.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Connection URL (contains the password).
    pub url: DatabaseUrl,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection before failing with 503.
    pub acquire_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::new(LOCAL_DATABASE_URL),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl DatabaseSettings {
    /// These settings overridden by `env`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that cannot be used.
    pub fn read(mut self, env: Env<'_>) -> Result<Self, ConfigError> {
        if let Some(url) = env.database_url("KEEL_DATABASE_URL")? {
            self.url = url;
        }
        if let Some(size) = env.positive("KEEL_DB_MAX_CONNECTIONS")? {
            self.max_connections = size;
        }
        if let Some(timeout) = env.positive_secs("KEEL_DB_ACQUIRE_TIMEOUT_SECS")? {
            self.acquire_timeout = timeout;
        }
        Ok(self)
    }

    /// Pool options with this size and acquire timeout; connect them with
    /// [`DatabaseUrl::connect_options`].
    pub fn pool_options(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`crate::env::tests::read`] with authentication disabled unless `vars` set it.
    fn read<T>(vars: &[(&str, &str)], f: impl FnOnce(Env<'_>) -> T) -> T {
        let mut all = vec![("KEEL_AUTH", "disabled")];
        all.extend_from_slice(vars);
        crate::env::tests::read(&all, f)
    }

    #[test]
    fn defaults_apply_without_environment() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let http = read(&[], |env| HttpSettings::new(addr).read(env)).unwrap();
        assert_eq!(http.addr, addr);
        assert_eq!(http.body_limit_bytes, 65536);
        assert_eq!(http.max_header_bytes, 16384);
        assert_eq!(http.max_uri_bytes, 8192);
        assert_eq!(http.request_timeout, Duration::from_secs(10));
        assert_eq!(http.shutdown_grace, Duration::from_secs(20));
        let limit = http.rate_limit.unwrap();
        assert_eq!((limit.per_second.get(), limit.burst.get()), (200, 400));
        let db = read(&[], |env| DatabaseSettings::default().read(env)).unwrap();
        assert_eq!(db.url.expose(), LOCAL_DATABASE_URL);
        assert_eq!(db.max_connections, 10);
        assert_eq!(db.acquire_timeout, Duration::from_secs(3));
    }

    #[test]
    fn environment_overrides_defaults() {
        let vars = [
            ("KEEL_HTTP_ADDR", "0.0.0.0:9000"),
            ("KEEL_HTTP_BODY_LIMIT_BYTES", "1024"),
            ("KEEL_HTTP_MAX_HEADER_BYTES", "4096"),
            ("KEEL_HTTP_MAX_URI_BYTES", "2048"),
            ("KEEL_HTTP_REQUEST_TIMEOUT_SECS", "5"),
            ("KEEL_SHUTDOWN_GRACE_SECS", "0"),
            ("KEEL_RATE_LIMIT_PER_SECOND", "0"),
            ("KEEL_DATABASE_URL", "postgres://u:p@db:5433/x"),
            ("KEEL_DB_MAX_CONNECTIONS", "3"),
            ("KEEL_DB_ACQUIRE_TIMEOUT_SECS", "1"),
        ];
        let addr = "127.0.0.1:1".parse().unwrap();
        let http = read(&vars, |env| HttpSettings::new(addr).read(env)).unwrap();
        assert_eq!(http.addr.port(), 9000);
        assert_eq!(http.body_limit_bytes, 1024);
        assert_eq!((http.max_header_bytes, http.max_uri_bytes), (4096, 2048));
        assert_eq!(http.request_timeout, Duration::from_secs(5));
        assert_eq!(http.shutdown_grace, Duration::ZERO);
        assert!(http.rate_limit.is_none());
        let db = read(&vars, |env| DatabaseSettings::default().read(env)).unwrap();
        assert_eq!(db.url.expose(), "postgres://u:p@db:5433/x");
        assert_eq!(db.max_connections, 3);
        assert_eq!(db.acquire_timeout, Duration::from_secs(1));
    }

    #[test]
    fn unusable_values_name_the_variable_and_hide_the_password() {
        let addr = "127.0.0.1:1".parse().unwrap();
        for (var, value) in [
            ("KEEL_HTTP_ADDR", "nowhere"),
            ("KEEL_HTTP_REQUEST_TIMEOUT_SECS", "0"),
            ("KEEL_HTTP_BODY_LIMIT_BYTES", "big"),
            ("KEEL_HTTP_MAX_HEADER_BYTES", "0"),
            ("KEEL_HTTP_MAX_URI_BYTES", "long"),
        ] {
            let error = read(&[(var, value)], |env| HttpSettings::new(addr).read(env)).unwrap_err();
            assert_eq!(error.var, var, "{error}");
        }
        for (var, value) in [
            ("KEEL_DB_MAX_CONNECTIONS", "many"),
            ("KEEL_DB_ACQUIRE_TIMEOUT_SECS", "0"),
            ("KEEL_DATABASE_URL", "mysql://root:hunter2@x"),
        ] {
            let error =
                read(&[(var, value)], |env| DatabaseSettings::default().read(env)).unwrap_err();
            assert_eq!(error.var, var, "{error}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let db = read(
            &[("KEEL_DATABASE_URL", "postgres://keel:hunter2@db:5432/keel")],
            |env| DatabaseSettings::default().read(env),
        )
        .unwrap();
        let shown = format!("{db:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://keel:***@db:5432/keel"),
            "{shown}"
        );
    }

    #[test]
    fn authentication_is_required_unless_disabled() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let error = HttpSettings::new(addr)
            .read(Env::new(&|_| None))
            .unwrap_err();
        assert_eq!(error.var, "KEEL_AUTH");
    }
}
