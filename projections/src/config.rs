//! Typed settings of the projector binary: defaults, overridden by environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KEEL_READ_MODEL_DATABASE_URL` | `KEEL_DATABASE_URL`, else `postgres://keel:keel@127.0.0.1:5432/keel` | database of the `read_model` schema |
//! | `KEEL_DATABASE_MAX_CONNECTIONS` | `5` | pool size |
//! | `KEEL_KAFKA_BROKERS` | `127.0.0.1:9092` | bootstrap servers |
//! | `KEEL_SCHEMA_REGISTRY_URL` | `http://127.0.0.1:8081/apis/ccompat/v7` | Confluent-compatible registry |
//! | `KEEL_TOPIC_PREFIX` | `keel.` | topics are `<prefix>order`, `<prefix>payment`, `<prefix>inventory`; dead letters go to `<prefix>dlq.<projection>` |
//! | `KEEL_TOPIC_PARTITIONS` | `8` | partitions of topics the projector creates when missing (same default as the relay) |
//! | `KEEL_PROJECTIONS` | `orders,stock,payments` | projections this process runs |
//! | `KEEL_PROJECTOR_GROUP_PREFIX` | `keel-projector` | consumer group of a projection: `<prefix>.<projection>` |
//! | `KEEL_PROJECTOR_BATCH_SIZE` | `500` | most events applied in one transaction |
//! | `KEEL_PROJECTOR_BATCH_LINGER_MS` | `20` | how long a started batch waits for more messages |
//! | `KEEL_PROJECTOR_MAX_ATTEMPTS` | `5` | attempts at a poison message before it is dead-lettered |
//! | `KEEL_PROJECTOR_RETRY_BACKOFF_MS` | `200` | first retry delay; doubles per attempt |
//! | `KEEL_PROJECTOR_RETRY_BACKOFF_MAX_MS` | `10000` | longest retry delay |
//! | `KEEL_KAFKA_SESSION_TIMEOUT_MS` | `10000` | consumer group session timeout |
//! | `KEEL_KAFKA_AUTO_COMMIT_INTERVAL_MS` | `1000` | how often stored (applied) offsets are committed |
//! | `KEEL_SHUTDOWN_TIMEOUT_SECS` | `15` | hard bound on a graceful shutdown |
//! | `KEEL_METRICS_ADDR` | `127.0.0.1:9103` | `/metrics` listener (port 0 picks a free port) |
//! | `KEEL_OTLP_ENDPOINT` | — | OTLP/HTTP traces endpoint; unset = no trace export |
//! | `KEEL_LOG_FORMAT` | `pretty` | `pretty` or `json`; the level comes from `RUST_LOG` (default `info`) |
//!
//! The database URL may hold a password: [`DatabaseUrl`] never prints it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::projection::Projection;
use ops::telemetry::{LogFormat, TelemetrySettings};

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("configuration variable {variable}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// The value found.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

pub use ops::env::DatabaseUrl;

/// Where the Kafka cluster and the schema registry are.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Base URL of the schema registry.
    pub schema_registry_url: String,
    /// Prefix of every topic name.
    pub topic_prefix: String,
    /// Partitions of topics created at start-up when missing.
    pub topic_partitions: i32,
    /// `session.timeout.ms` of the consumer groups.
    pub session_timeout: Duration,
    /// `auto.commit.interval.ms`: stored offsets (of applied messages only) are committed
    /// this often, and synchronously on rebalance and shutdown.
    pub auto_commit_interval: Duration,
}

/// How a projector batches and retries.
#[derive(Debug, Clone)]
pub struct ProjectorSettings {
    /// Consumer group of projection `p` is `<group_prefix>.<p>`.
    pub group_prefix: String,
    /// Most events per transaction.
    pub batch_size: usize,
    /// How long a batch that has its first message waits for more.
    pub batch_linger: Duration,
    /// Retry policy for poison messages and for outages.
    pub retry: RetryPolicy,
}

impl ProjectorSettings {
    /// The consumer group of `projection`.
    pub fn group_id(&self, projection: Projection) -> String {
        format!("{}.{}", self.group_prefix, projection.name())
    }
}

/// Backoff between attempts. A poison message gets `max_attempts` attempts, then it is
/// dead-lettered; an outage (database, registry or broker unreachable) is retried with the
/// same backoff until it ends or the process shuts down, and never dead-letters anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts at a poison message, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempt` (2 for the first retry): doubles from
    /// `initial_backoff`, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(20);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Everything the projector binary needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Read-model database.
    pub database_url: DatabaseUrl,
    /// Pool size.
    pub database_max_connections: u32,
    /// Kafka and registry.
    pub kafka: KafkaSettings,
    /// Batching and retries.
    pub projector: ProjectorSettings,
    /// Projections run by this process.
    pub projections: Vec<Projection>,
    /// Hard bound on a graceful shutdown.
    pub shutdown_timeout: Duration,
    /// Logging and trace export.
    pub telemetry: TelemetrySettings,
    /// Where `/metrics` is served.
    pub metrics_addr: std::net::SocketAddr,
}

/// Default read-model database, as started by `cargo xtask up`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://keel:keel@127.0.0.1:5432/keel";

impl Settings {
    /// Defaults overridden by the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Defaults overridden by `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let database_url = env
            .string("KEEL_READ_MODEL_DATABASE_URL")
            .or_else(|| env.string("KEEL_DATABASE_URL"))
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let retry = RetryPolicy {
            max_attempts: env.parse_at_least("KEEL_PROJECTOR_MAX_ATTEMPTS", 5, 1)?,
            initial_backoff: env.millis("KEEL_PROJECTOR_RETRY_BACKOFF_MS", 200)?,
            max_backoff: env.millis("KEEL_PROJECTOR_RETRY_BACKOFF_MAX_MS", 10_000)?,
        };
        Ok(Self {
            database_url: DatabaseUrl::new(database_url),
            database_max_connections: env.parse_at_least("KEEL_DATABASE_MAX_CONNECTIONS", 5, 1)?,
            kafka: KafkaSettings {
                brokers: env.string_or("KEEL_KAFKA_BROKERS", "127.0.0.1:9092"),
                schema_registry_url: env.string_or(
                    "KEEL_SCHEMA_REGISTRY_URL",
                    "http://127.0.0.1:8081/apis/ccompat/v7",
                ),
                topic_prefix: env.string_or("KEEL_TOPIC_PREFIX", schemas::DEFAULT_TOPIC_PREFIX),
                topic_partitions: env.parse_at_least("KEEL_TOPIC_PARTITIONS", 8, 1)?,
                session_timeout: env.millis("KEEL_KAFKA_SESSION_TIMEOUT_MS", 10_000)?,
                auto_commit_interval: env.millis("KEEL_KAFKA_AUTO_COMMIT_INTERVAL_MS", 1_000)?,
            },
            projector: ProjectorSettings {
                group_prefix: env.string_or("KEEL_PROJECTOR_GROUP_PREFIX", "keel-projector"),
                batch_size: env.parse_at_least("KEEL_PROJECTOR_BATCH_SIZE", 500, 1)?,
                batch_linger: env.millis("KEEL_PROJECTOR_BATCH_LINGER_MS", 20)?,
                retry,
            },
            projections: env.projections("KEEL_PROJECTIONS")?,
            shutdown_timeout: Duration::from_secs(env.parse_at_least(
                "KEEL_SHUTDOWN_TIMEOUT_SECS",
                15,
                1,
            )?),
            telemetry: TelemetrySettings::from_lookup("projector", LogFormat::Pretty, &lookup)
                .map_err(|e| ConfigError {
                    variable: e.var,
                    value: lookup(e.var).unwrap_or_default(),
                    reason: e.reason,
                })?,
            metrics_addr: env.parse(
                "KEEL_METRICS_ADDR",
                std::net::SocketAddr::from(([127, 0, 0, 1], 9103)),
            )?,
        })
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn string(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    fn string_or(&self, name: &str, default: &str) -> String {
        self.string(name).unwrap_or_else(|| default.to_owned())
    }

    fn parse<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.string(name) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|e: T::Err| ConfigError {
                variable: name,
                reason: e.to_string(),
                value,
            }),
        }
    }

    fn parse_at_least<T>(&self, name: &'static str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parse(name, default)?;
        if value < min {
            return Err(ConfigError {
                variable: name,
                value: value.to_string(),
                reason: format!("must be at least {min}"),
            });
        }
        Ok(value)
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse(name, default).map(Duration::from_millis)
    }

    fn projections(&self, name: &'static str) -> Result<Vec<Projection>, ConfigError> {
        let Some(value) = self.string(name) else {
            return Ok(Projection::ALL.to_vec());
        };
        let mut projections = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let projection = item.parse().map_err(|reason| ConfigError {
                variable: name,
                value: value.clone(),
                reason,
            })?;
            if !projections.contains(&projection) {
                projections.push(projection);
            }
        }
        if projections.is_empty() {
            return Err(ConfigError {
                variable: name,
                value,
                reason: "names no projection".into(),
            });
        }
        Ok(projections)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_local_stack() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(
            s.kafka.schema_registry_url,
            "http://127.0.0.1:8081/apis/ccompat/v7"
        );
        assert_eq!(s.kafka.topic_prefix, "keel.");
        assert_eq!(s.projections, Projection::ALL.to_vec());
        assert_eq!(s.projector.batch_size, 500);
        assert_eq!(
            s.projector.group_id(Projection::Stock),
            "keel-projector.stock"
        );
        assert_eq!(s.projector.retry, RetryPolicy::default());
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = settings(&[
            ("KEEL_DATABASE_URL", "postgres://a:b@db/x"),
            (
                "KEEL_READ_MODEL_DATABASE_URL",
                "postgres://r:secret@replica/rm",
            ),
            ("KEEL_TOPIC_PREFIX", "prod."),
            ("KEEL_PROJECTIONS", "stock, payments,stock"),
            ("KEEL_PROJECTOR_BATCH_SIZE", "42"),
            ("KEEL_PROJECTOR_MAX_ATTEMPTS", "2"),
            ("KEEL_LOG_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(s.database_url.expose(), "postgres://r:secret@replica/rm");
        assert_eq!(s.kafka.topic_prefix, "prod.");
        assert_eq!(s.projections, vec![Projection::Stock, Projection::Payments]);
        assert_eq!(s.projector.batch_size, 42);
        assert_eq!(s.projector.retry.max_attempts, 2);
        assert_eq!(s.telemetry.format, LogFormat::Json);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let error = settings(&[("KEEL_PROJECTOR_BATCH_SIZE", "lots")]).unwrap_err();
        assert_eq!(error.variable, "KEEL_PROJECTOR_BATCH_SIZE");
        let error = settings(&[("KEEL_PROJECTOR_BATCH_SIZE", "0")]).unwrap_err();
        assert!(error.to_string().contains("at least 1"), "{error}");
        let error = settings(&[("KEEL_PROJECTIONS", "orders,audit")]).unwrap_err();
        assert_eq!(error.variable, "KEEL_PROJECTIONS");
        assert!(error.reason.contains("audit"), "{error}");
    }

    #[test]
    fn the_password_never_shows() {
        let url = DatabaseUrl::new("postgres://keel:hunter2@127.0.0.1:5432/keel");
        assert_eq!(url.to_string(), "postgres://keel:***@127.0.0.1:5432/keel");
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1_000),
        };
        let delays: Vec<_> = (2..=7).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
    }
}
