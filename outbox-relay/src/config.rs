//! Relay settings: defaults overridden by `KEEL_*` environment variables, read with
//! `ops::env::Env` (a blank value counts as unset).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KEEL_DATABASE_URL` | `postgres://keel:keel@127.0.0.1:5432/keel` | the event store (secret: never logged) |
//! | `KEEL_KAFKA_BROKERS` | `127.0.0.1:9092` | bootstrap servers |
//! | `KEEL_SCHEMA_REGISTRY_URL` | `http://127.0.0.1:8081/apis/ccompat/v7` | Confluent-compatible registry |
//! | `KEEL_TOPIC_PREFIX` | `keel.` | topics are `<prefix>order`, `<prefix>payment`, `<prefix>inventory` |
//! | `KEEL_TOPIC_PARTITIONS` | `8` | partitions of topics the relay creates when missing |
//! | `KEEL_TOPIC_REPLICATION_FACTOR` | `1` | brokers each partition of those topics is kept on (3 in `deploy/`) |
//! | `KEEL_RELAY_BATCH_SIZE` | `1000` | outbox rows read, published and deleted per round |
//! | `KEEL_RELAY_POLL_MS` | `1000` | longest pause between polls of an empty outbox; a ring of the doorbell (`event_store::doorbell`, rung by the command API after each commit) ends it at once |
//! | `KEEL_RELAY_LINGER_MS` | `5` | producer `linger.ms` |
//! | `KEEL_RELAY_BATCH_BYTES` | `1000000` | producer `batch.size` |
//! | `KEEL_RELAY_MESSAGE_TIMEOUT_MS` | `30000` | producer `message.timeout.ms` |
//! | `KEEL_RELAY_BACKLOG_REPORT_MS` | `10000` | how often the backlog is logged and exported |
//! | `KEEL_METRICS_ADDR` | `127.0.0.1:9101` | `/metrics` listener (port 0 picks a free port) |
//! | `KEEL_RELAY_INSTANCE_ID` | — | a name unique to this instance and stable across its restarts: a restarted relay takes its shards back at once instead of after the dead instance's heartbeat has aged out (10 s); unset = a new id per start |

use std::time::Duration;

pub use ops::ConfigError;
use ops::env::{DatabaseUrl, Env, LOCAL_DATABASE_URL};
use sqlx::postgres::PgConnectOptions;

/// Relay settings, from defaults overridden by `KEEL_*` environment variables.
#[derive(Clone)]
pub struct RelayConfig {
    /// Event store connection (holds the password; never logged).
    pub database: PgConnectOptions,
    pub kafka_brokers: String,
    pub schema_registry_url: String,
    /// Prepended to each aggregate's topic suffix (`keel.` → `keel.order`).
    pub topic_prefix: String,
    /// Partitions of topics the relay creates; bounds projector parallelism.
    pub topic_partitions: i32,
    /// Brokers each partition of a topic the relay creates is kept on.
    pub topic_replication_factor: i32,
    /// Outbox rows read, published and deleted per round.
    pub batch_size: i64,
    /// Longest pause between polls of an empty outbox (a ring of the doorbell ends it).
    pub poll_interval: Duration,
    /// librdkafka `linger.ms`: how long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// librdkafka `batch.size` in bytes.
    pub producer_batch_bytes: u32,
    /// librdkafka `message.timeout.ms`: after this an unacknowledged batch is retried.
    pub message_timeout: Duration,
    /// How often the backlog size and age are logged and exported as metrics.
    pub backlog_report_interval: Duration,
    /// Where `/metrics` is served (`KEEL_METRICS_ADDR`).
    pub metrics_addr: std::net::SocketAddr,
    /// This instance's stable name (`KEEL_RELAY_INSTANCE_ID`); see [`crate::relay_id_for`].
    pub instance_id: Option<String>,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("database", &"<redacted>")
            .field("kafka_brokers", &self.kafka_brokers)
            .field("schema_registry_url", &self.schema_registry_url)
            .field("topic_prefix", &self.topic_prefix)
            .field("topic_partitions", &self.topic_partitions)
            .field("topic_replication_factor", &self.topic_replication_factor)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("linger_ms", &self.linger_ms)
            .field("producer_batch_bytes", &self.producer_batch_bytes)
            .field("message_timeout", &self.message_timeout)
            .field("backlog_report_interval", &self.backlog_report_interval)
            .field("metrics_addr", &self.metrics_addr)
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

impl RelayConfig {
    pub fn new(
        database: PgConnectOptions,
        kafka_brokers: String,
        schema_registry_url: String,
    ) -> Self {
        Self {
            database,
            kafka_brokers,
            schema_registry_url,
            topic_prefix: schemas::DEFAULT_TOPIC_PREFIX.to_string(),
            topic_partitions: 8,
            topic_replication_factor: 1,
            batch_size: 1_000,
            poll_interval: Duration::from_millis(1_000),
            linger_ms: 5,
            producer_batch_bytes: 1_000_000,
            message_timeout: Duration::from_secs(30),
            backlog_report_interval: Duration::from_secs(10),
            metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9101)),
            instance_id: None,
        }
    }

    /// Defaults overridden by the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that cannot be used.
    pub fn from_env() -> Result<Self, ConfigError> {
        ops::env::from_process(Self::read)
    }

    /// Defaults overridden by `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that cannot be used.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(Env::new(&lookup))
    }

    fn read(env: Env<'_>) -> Result<Self, ConfigError> {
        let text = |var, default: &str| env.text(var).unwrap_or_else(|| default.to_owned());
        let url = env
            .database_url("KEEL_DATABASE_URL")?
            .unwrap_or_else(|| DatabaseUrl::new(LOCAL_DATABASE_URL));
        let mut config = Self::new(
            url.connect_options()?,
            text("KEEL_KAFKA_BROKERS", "127.0.0.1:9092"),
            text(
                "KEEL_SCHEMA_REGISTRY_URL",
                "http://127.0.0.1:8081/apis/ccompat/v7",
            ),
        );
        if let Some(prefix) = env.text("KEEL_TOPIC_PREFIX") {
            config.topic_prefix = prefix;
        }
        if let Some(partitions) = env.positive("KEEL_TOPIC_PARTITIONS")? {
            config.topic_partitions = partitions;
        }
        if let Some(factor) = env.positive("KEEL_TOPIC_REPLICATION_FACTOR")? {
            config.topic_replication_factor = factor;
        }
        if let Some(size) = env.positive("KEEL_RELAY_BATCH_SIZE")? {
            config.batch_size = size;
        }
        if let Some(poll) = env.positive_millis("KEEL_RELAY_POLL_MS")? {
            config.poll_interval = poll;
        }
        if let Some(linger) = env.parsed("KEEL_RELAY_LINGER_MS")? {
            config.linger_ms = linger;
        }
        if let Some(bytes) = env.positive("KEEL_RELAY_BATCH_BYTES")? {
            config.producer_batch_bytes = bytes;
        }
        if let Some(timeout) = env.positive_millis("KEEL_RELAY_MESSAGE_TIMEOUT_MS")? {
            config.message_timeout = timeout;
        }
        if let Some(every) = env.positive_millis("KEEL_RELAY_BACKLOG_REPORT_MS")? {
            config.backlog_report_interval = every;
        }
        if let Some(addr) = env.parsed("KEEL_METRICS_ADDR")? {
            config.metrics_addr = addr;
        }
        config.instance_id = env.text("KEEL_RELAY_INSTANCE_ID");
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<RelayConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RelayConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.kafka_brokers, "127.0.0.1:9092");
        assert_eq!(defaults.topic_prefix, "keel.");
        assert_eq!(defaults.topic_partitions, 8);
        assert_eq!(defaults.topic_replication_factor, 1);
        assert_eq!(defaults.batch_size, 1_000);
        assert_eq!(defaults.poll_interval, Duration::from_millis(1_000));
        assert_eq!(defaults.database.get_database(), Some("keel"));
        assert_eq!(defaults.instance_id, None);

        let custom = config(&[
            ("KEEL_DATABASE_URL", "postgres://u:p@db:5433/events"),
            ("KEEL_KAFKA_BROKERS", "kafka:9092"),
            ("KEEL_TOPIC_PREFIX", "dev."),
            ("KEEL_TOPIC_PARTITIONS", "3"),
            ("KEEL_TOPIC_REPLICATION_FACTOR", "3"),
            ("KEEL_RELAY_BATCH_SIZE", "50"),
            ("KEEL_RELAY_POLL_MS", "5"),
            ("KEEL_RELAY_LINGER_MS", "0"),
            ("KEEL_METRICS_ADDR", "0.0.0.0:9999"),
            ("KEEL_RELAY_INSTANCE_ID", "relay-0"),
        ])
        .unwrap();
        assert_eq!(custom.database.get_host(), "db");
        assert_eq!(custom.database.get_database(), Some("events"));
        assert_eq!(custom.kafka_brokers, "kafka:9092");
        assert_eq!(custom.topic_prefix, "dev.");
        assert_eq!(custom.topic_partitions, 3);
        assert_eq!(custom.topic_replication_factor, 3);
        assert_eq!(custom.batch_size, 50);
        assert_eq!(custom.poll_interval, Duration::from_millis(5));
        assert_eq!(custom.linger_ms, 0);
        assert_eq!(custom.metrics_addr.port(), 9999);
        assert_eq!(custom.instance_id.as_deref(), Some("relay-0"));
    }

    #[test]
    fn invalid_values_name_the_variable_and_hide_the_password() {
        for (var, value) in [
            ("KEEL_TOPIC_PARTITIONS", "0"),
            ("KEEL_RELAY_BATCH_SIZE", "-1"),
            ("KEEL_RELAY_POLL_MS", "soon"),
            ("KEEL_METRICS_ADDR", "everywhere"),
            ("KEEL_DATABASE_URL", "mysql://root:hunter2@x"),
        ] {
            let error = config(&[(var, value)]).unwrap_err();
            assert_eq!(error.var, var, "{error}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let shown = format!("{:?}", config(&[]).unwrap());
        assert!(!shown.contains("keel:keel"), "{shown}");
    }
}
