use std::env;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::RelayError;

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
    /// Outbox rows read, published and deleted per round.
    pub batch_size: i64,
    /// Pause between polls when the outbox is empty.
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
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("database", &"<redacted>")
            .field("kafka_brokers", &self.kafka_brokers)
            .field("schema_registry_url", &self.schema_registry_url)
            .field("topic_prefix", &self.topic_prefix)
            .field("topic_partitions", &self.topic_partitions)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("linger_ms", &self.linger_ms)
            .field("producer_batch_bytes", &self.producer_batch_bytes)
            .field("message_timeout", &self.message_timeout)
            .field("backlog_report_interval", &self.backlog_report_interval)
            .field("metrics_addr", &self.metrics_addr)
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
            batch_size: 1_000,
            poll_interval: Duration::from_millis(20),
            linger_ms: 5,
            producer_batch_bytes: 1_000_000,
            message_timeout: Duration::from_secs(30),
            backlog_report_interval: Duration::from_secs(10),
            metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9101)),
        }
    }

    /// Defaults suit the local stack; each `KEEL_*` variable overrides one setting.
    pub fn from_env() -> Result<Self, RelayError> {
        let text = |name: &str, default: &str| env::var(name).unwrap_or_else(|_| default.into());
        let database_url = text(
            "KEEL_DATABASE_URL",
            "postgres://keel:keel@127.0.0.1:5432/keel",
        );
        let database = PgConnectOptions::from_str(&database_url)
            .map_err(|error| RelayError::Config(format!("KEEL_DATABASE_URL: {error}")))?;
        let mut config = Self::new(
            database,
            text("KEEL_KAFKA_BROKERS", "127.0.0.1:9092"),
            text(
                "KEEL_SCHEMA_REGISTRY_URL",
                "http://127.0.0.1:8081/apis/ccompat/v7",
            ),
        );
        config.topic_prefix = text("KEEL_TOPIC_PREFIX", &config.topic_prefix);
        config.topic_partitions = number("KEEL_TOPIC_PARTITIONS", config.topic_partitions)?;
        config.batch_size = number("KEEL_RELAY_BATCH_SIZE", config.batch_size)?;
        config.poll_interval = millis("KEEL_RELAY_POLL_MS", config.poll_interval)?;
        config.linger_ms = number("KEEL_RELAY_LINGER_MS", config.linger_ms)?;
        config.producer_batch_bytes =
            number("KEEL_RELAY_BATCH_BYTES", config.producer_batch_bytes)?;
        config.message_timeout = millis("KEEL_RELAY_MESSAGE_TIMEOUT_MS", config.message_timeout)?;
        config.backlog_report_interval = millis(
            "KEEL_RELAY_BACKLOG_REPORT_MS",
            config.backlog_report_interval,
        )?;
        config.metrics_addr = number("KEEL_METRICS_ADDR", config.metrics_addr)?;
        if config.batch_size < 1 || config.topic_partitions < 1 {
            return Err(RelayError::Config(
                "KEEL_RELAY_BATCH_SIZE and KEEL_TOPIC_PARTITIONS must be at least 1".into(),
            ));
        }
        Ok(config)
    }
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, RelayError> {
    match env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| RelayError::Config(format!("{name}={value:?} is not a valid number"))),
        Err(_) => Ok(default),
    }
}

fn millis(name: &str, default: Duration) -> Result<Duration, RelayError> {
    let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    number(name, default_ms).map(Duration::from_millis)
}
