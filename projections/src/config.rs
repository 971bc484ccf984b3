//! Typed settings of the projector binary: defaults, overridden by environment variables,
//! read with `ops::env::Env` (a blank value counts as unset).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KEEL_READ_MODEL_DATABASE_URL` | `KEEL_DATABASE_URL`, else `postgres://keel:keel@127.0.0.1:5432/keel` | database of the `read_model` schema |
//! | `KEEL_DATABASE_MAX_CONNECTIONS` | `5` | pool size |
//! | `KEEL_KAFKA_BROKERS` | `127.0.0.1:9092` | bootstrap servers |
//! | `KEEL_SCHEMA_REGISTRY_URL` | `http://127.0.0.1:8081/apis/ccompat/v7` | Confluent-compatible registry |
//! | `KEEL_TOPIC_PREFIX` | `keel.` | topics are `<prefix>order`, `<prefix>payment`, `<prefix>inventory`; dead letters go to `<prefix>dlq.<projection>` |
//! | `KEEL_TOPIC_PARTITIONS` | `8` | partitions of topics the projector creates when missing (same default as the relay) |
//! | `KEEL_TOPIC_REPLICATION_FACTOR` | `1` | brokers each partition of those topics is kept on (3 in `deploy/`) |
//! | `KEEL_PROJECTIONS` | `orders,stock,payments` | projections this process runs |
//! | `KEEL_PROJECTOR_GROUP_PREFIX` | `keel-projector` | consumer group of a projection: `<prefix>.<projection>` |
//! | `KEEL_PROJECTOR_BATCH_SIZE` | `500` | most events applied in one transaction |
//! | `KEEL_PROJECTOR_BATCH_LINGER_MS` | `20` | how long a started batch waits for more messages |
//! | `KEEL_PROJECTOR_MAX_ATTEMPTS` | `5` | attempts at an event that fails for a reason that may pass, before it is dead-lettered |
//! | `KEEL_PROJECTOR_RETRY_BACKOFF_MS` | `200` | first retry delay; doubles per attempt |
//! | `KEEL_PROJECTOR_RETRY_BACKOFF_MAX_MS` | `10000` | longest retry delay |
//! | `KEEL_PROJECTOR_LOCK_TIMEOUT_MS` | `2000` | longest wait for a read-model row lock; past it the event's aggregate is held for a retry |
//! | `KEEL_PROJECTOR_INSTANCE_ID` | — | static group membership: a name unique to this instance and stable across its restarts (`group.instance.id` = `<id>.<projection>`); unset = dynamic membership |
//! | `KEEL_MASTER_KEY` / `_FILE` | — | master key that opens customers' personal data for the order view (ADR 0009); unset = shown as `unavailable` |
//! | `KEEL_MASTER_KEY_PREVIOUS` / `_FILE` | — | master keys that still unwrap during a rotation (comma-separated) |
//! | `KEEL_KAFKA_SESSION_TIMEOUT_MS` | `10000` | consumer group session timeout: how long a killed instance's partitions wait when it does not come back |
//! | `KEEL_KAFKA_FETCH_WAIT_MS` | `500` | `fetch.wait.max.ms`: how long the broker holds an empty fetch. The broker answers as soon as a message arrives, so this is what an idle consumer costs (one fetch per wait per broker connection), not the read side's latency |
//! | `KEEL_KAFKA_AUTO_COMMIT_INTERVAL_MS` | `1000` | how often stored (applied) offsets are committed |
//! | `KEEL_SHUTDOWN_TIMEOUT_SECS` | `15` | hard bound on a graceful shutdown |
//! | `KEEL_METRICS_ADDR` | `127.0.0.1:9103` | `/metrics` listener (port 0 picks a free port) |
//! | `KEEL_OTLP_ENDPOINT` | — | OTLP/HTTP traces endpoint; unset = no trace export |
//! | `KEEL_LOG_FORMAT` | `pretty` | `pretty` or `json`; the level comes from `RUST_LOG` (default `info`) |
//!
//! The database URL may hold a password: [`DatabaseUrl`] never prints it.

use std::sync::Arc;
use std::time::Duration;

use event_store::customer_keys::Keyring;

use crate::projection::Projection;
use ops::env::{Env, LOCAL_DATABASE_URL};
use ops::telemetry::{LogFormat, TelemetrySettings};

pub use ops::ConfigError;
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
    /// Brokers each partition of a topic created at start-up is kept on.
    pub topic_replication_factor: i32,
    /// `session.timeout.ms` of the consumer groups.
    pub session_timeout: Duration,
    /// `auto.commit.interval.ms`: stored offsets (of applied messages only) are committed
    /// this often, and synchronously on rebalance and shutdown.
    pub auto_commit_interval: Duration,
    /// `fetch.wait.max.ms`: how long the broker holds a fetch that finds nothing new.
    pub fetch_wait: Duration,
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
    /// Retry policy for events that may pass later, and backoff for outages.
    pub retry: RetryPolicy,
    /// Longest wait for a row lock while applying (`lock_timeout`).
    pub lock_timeout: Duration,
    /// This instance's stable name, for static group membership (see
    /// [`ProjectorSettings::group_instance_id`]); `None` = dynamic membership.
    pub instance_id: Option<String>,
    /// Opens customers' sealed personal data for the order view (ADR 0009); `None`: it
    /// shows as `unavailable`.
    pub keyring: Option<Arc<Keyring>>,
}

impl ProjectorSettings {
    /// The consumer group of `projection`.
    pub fn group_id(&self, projection: Projection) -> String {
        format!("{}.{}", self.group_prefix, projection.name())
    }

    /// `group.instance.id` of `projection`'s consumer, when the instance has a stable name.
    /// A member with one is *static*: restarted after a crash, it takes its partitions back
    /// at once, where a dynamic member's replacement waits for the dead member's session to
    /// expire. The price: a static member that stops for good keeps its partitions until
    /// its session times out, even after a clean shutdown (it does not leave the group).
    /// The name is `<instance>.<projection>.<topics>`
    /// ([`schemas::subscription::static_member_id`]): a version that reads other topics
    /// joins under a new name and gets a fresh assignment.
    pub fn group_instance_id(&self, projection: Projection) -> Option<String> {
        self.instance_id.as_ref().map(|id| {
            schemas::subscription::static_member_id(
                &format!("{id}.{}", projection.name()),
                projection.sources(),
            )
        })
    }
}

/// Backoff between attempts. An event that fails for a reason that may pass gets
/// `max_attempts` attempts (its aggregate held meanwhile), then it is dead-lettered; an
/// outage (database, registry or broker unreachable) is retried with the same backoff until
/// it ends or the process shuts down, and never dead-letters anything.
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

impl Settings {
    /// Defaults overridden by the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        ops::env::from_process(Self::read)
    }

    /// Defaults overridden by `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(Env::new(&lookup))
    }

    fn read(env: Env<'_>) -> Result<Self, ConfigError> {
        let database_url = match env.database_url("KEEL_READ_MODEL_DATABASE_URL")? {
            Some(url) => url,
            None => env
                .database_url("KEEL_DATABASE_URL")?
                .unwrap_or_else(|| DatabaseUrl::new(LOCAL_DATABASE_URL)),
        };
        let retry = RetryPolicy {
            max_attempts: env.positive("KEEL_PROJECTOR_MAX_ATTEMPTS")?.unwrap_or(5),
            initial_backoff: env
                .millis("KEEL_PROJECTOR_RETRY_BACKOFF_MS")?
                .unwrap_or(Duration::from_millis(200)),
            max_backoff: env
                .millis("KEEL_PROJECTOR_RETRY_BACKOFF_MAX_MS")?
                .unwrap_or(Duration::from_secs(10)),
        };
        let text = |var, default: &str| env.text(var).unwrap_or_else(|| default.to_owned());
        Ok(Self {
            database_url,
            database_max_connections: env.positive("KEEL_DATABASE_MAX_CONNECTIONS")?.unwrap_or(5),
            kafka: KafkaSettings {
                brokers: text("KEEL_KAFKA_BROKERS", "127.0.0.1:9092"),
                schema_registry_url: text(
                    "KEEL_SCHEMA_REGISTRY_URL",
                    "http://127.0.0.1:8081/apis/ccompat/v7",
                ),
                topic_prefix: text("KEEL_TOPIC_PREFIX", schemas::DEFAULT_TOPIC_PREFIX),
                topic_partitions: env.positive("KEEL_TOPIC_PARTITIONS")?.unwrap_or(8),
                topic_replication_factor: env
                    .positive("KEEL_TOPIC_REPLICATION_FACTOR")?
                    .unwrap_or(1),
                session_timeout: env
                    .millis("KEEL_KAFKA_SESSION_TIMEOUT_MS")?
                    .unwrap_or(Duration::from_secs(10)),
                auto_commit_interval: env
                    .millis("KEEL_KAFKA_AUTO_COMMIT_INTERVAL_MS")?
                    .unwrap_or(Duration::from_secs(1)),
                fetch_wait: env
                    .positive_millis("KEEL_KAFKA_FETCH_WAIT_MS")?
                    .unwrap_or(Duration::from_millis(500)),
            },
            projector: ProjectorSettings {
                group_prefix: text("KEEL_PROJECTOR_GROUP_PREFIX", "keel-projector"),
                batch_size: env.positive("KEEL_PROJECTOR_BATCH_SIZE")?.unwrap_or(500),
                batch_linger: env
                    .millis("KEEL_PROJECTOR_BATCH_LINGER_MS")?
                    .unwrap_or(Duration::from_millis(20)),
                retry,
                lock_timeout: env
                    .positive_millis("KEEL_PROJECTOR_LOCK_TIMEOUT_MS")?
                    .unwrap_or(Duration::from_secs(2)),
                instance_id: env.text("KEEL_PROJECTOR_INSTANCE_ID"),
                keyring: env.master_keys(Keyring::from_config)?.map(Arc::new),
            },
            projections: projections(env, "KEEL_PROJECTIONS")?,
            shutdown_timeout: env
                .positive_secs("KEEL_SHUTDOWN_TIMEOUT_SECS")?
                .unwrap_or(Duration::from_secs(15)),
            telemetry: TelemetrySettings::from_lookup(
                "projector",
                LogFormat::Pretty,
                env.lookup(),
            )?,
            metrics_addr: env
                .parsed("KEEL_METRICS_ADDR")?
                .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 9103))),
        })
    }
}

/// The comma-separated projection names in `var` (duplicates ignored); all of them if
/// unset.
fn projections(env: Env<'_>, var: &'static str) -> Result<Vec<Projection>, ConfigError> {
    let Some(value) = env.text(var) else {
        return Ok(Projection::ALL.to_vec());
    };
    let mut projections = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let projection = item.parse().map_err(|reason| ConfigError { var, reason })?;
        if !projections.contains(&projection) {
            projections.push(projection);
        }
    }
    if projections.is_empty() {
        return Err(ConfigError {
            var,
            reason: format!("{value:?} names no projection"),
        });
    }
    Ok(projections)
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
        assert_eq!(s.database_url.expose(), LOCAL_DATABASE_URL);
        assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(
            s.kafka.schema_registry_url,
            "http://127.0.0.1:8081/apis/ccompat/v7"
        );
        assert_eq!(s.kafka.topic_prefix, "keel.");
        assert_eq!(s.kafka.fetch_wait, Duration::from_millis(500));
        assert_eq!(s.projections, Projection::ALL.to_vec());
        assert_eq!(s.projector.batch_size, 500);
        assert_eq!(
            s.projector.group_id(Projection::Stock),
            "keel-projector.stock"
        );
        assert_eq!(s.projector.retry, RetryPolicy::default());
        assert_eq!(s.projector.lock_timeout, Duration::from_secs(2));
        assert_eq!(s.projector.group_instance_id(Projection::Stock), None);
        assert_eq!(s.kafka.topic_replication_factor, 1);
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
            ("KEEL_TOPIC_REPLICATION_FACTOR", "3"),
            ("KEEL_PROJECTIONS", "stock, payments,stock"),
            ("KEEL_PROJECTOR_BATCH_SIZE", "42"),
            ("KEEL_PROJECTOR_MAX_ATTEMPTS", "2"),
            ("KEEL_PROJECTOR_LOCK_TIMEOUT_MS", "250"),
            ("KEEL_PROJECTOR_INSTANCE_ID", "projections-0"),
            ("KEEL_LOG_FORMAT", "json"),
            ("KEEL_KAFKA_FETCH_WAIT_MS", "10"),
        ])
        .unwrap();
        assert_eq!(s.database_url.expose(), "postgres://r:secret@replica/rm");
        assert_eq!(s.kafka.topic_prefix, "prod.");
        assert_eq!(s.kafka.topic_replication_factor, 3);
        assert_eq!(s.kafka.fetch_wait, Duration::from_millis(10));
        assert_eq!(s.projections, vec![Projection::Stock, Projection::Payments]);
        assert_eq!(s.projector.batch_size, 42);
        assert_eq!(s.projector.retry.max_attempts, 2);
        assert_eq!(s.projector.lock_timeout, Duration::from_millis(250));
        assert_eq!(
            s.projector.group_instance_id(Projection::Stock).as_deref(),
            Some("projections-0.stock.inventory")
        );
        assert_eq!(s.telemetry.format, LogFormat::Json);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let error = settings(&[("KEEL_PROJECTOR_BATCH_SIZE", "lots")]).unwrap_err();
        assert_eq!(error.var, "KEEL_PROJECTOR_BATCH_SIZE");
        let error = settings(&[("KEEL_PROJECTOR_BATCH_SIZE", "0")]).unwrap_err();
        assert!(error.to_string().contains("greater than zero"), "{error}");
        let error = settings(&[("KEEL_PROJECTIONS", "orders,audit")]).unwrap_err();
        assert_eq!(error.var, "KEEL_PROJECTIONS");
        assert!(error.reason.contains("audit"), "{error}");
        let error =
            settings(&[("KEEL_READ_MODEL_DATABASE_URL", "mysql://u:hunter2@db/x")]).unwrap_err();
        assert_eq!(error.var, "KEEL_READ_MODEL_DATABASE_URL");
        assert!(!error.to_string().contains("hunter2"), "{error}");
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
