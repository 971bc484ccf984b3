//! Saga settings: defaults overridden by `KEEL_*` environment variables, read with
//! `ops::env::Env` (a blank value counts as unset).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KEEL_DATABASE_URL` | `postgres://keel:keel@127.0.0.1:5432/keel` | the event store database (saga tables live there) |
//! | `KEEL_KAFKA_BROKERS` | `127.0.0.1:9092` | bootstrap servers |
//! | `KEEL_SCHEMA_REGISTRY_URL` | `http://127.0.0.1:8081/apis/ccompat/v7` | Confluent-compatible registry |
//! | `KEEL_TOPIC_PREFIX` | `keel.` | event topics are `<prefix>order|payment|inventory` |
//! | `KEEL_TOPIC_PARTITIONS` | `8` | partitions of topics created if missing |
//! | `KEEL_TOPIC_REPLICATION_FACTOR` | `1` | brokers each partition of those topics is kept on (3 in `deploy/`) |
//! | `KEEL_SAGA_GROUP_ID` | `keel-saga` | the saga's own consumer group |
//! | `KEEL_SAGA_INSTANCE_ID` | — | static group membership: a name unique to this instance and stable across its restarts (`group.instance.id`), so a restarted saga takes its partitions back at once; unset = dynamic membership |
//! | `KEEL_SAGA_START_FROM` | `earliest` | where a new group starts: `earliest` or `latest` |
//! | `KEEL_COMMAND_API_URL` | `http://127.0.0.1:8080` | where commands are sent |
//! | `KEEL_SAGA_COMMAND_API_TOKEN` / `_FILE` | — | bearer token (role `writer`) for the command API, inline or from a file (secret: never logged) |
//! | `KEEL_METRICS_ADDR` | `127.0.0.1:9102` | `/metrics` listener (port 0 picks a free port) |
//! | `KEEL_OTLP_ENDPOINT` | — | OTLP/HTTP traces endpoint; unset = no trace export |
//! | `KEEL_SAGA_STEP_TIMEOUT_MS` | `30000` | reservation and authorization deadline |
//! | `KEEL_SAGA_POLL_MS` | `200` | how often due commands and deadlines are checked |
//! | `KEEL_SAGA_RETRY_BASE_MS` | `200` | first retry's backoff ceiling for a command (doubles, full jitter) |
//! | `KEEL_SAGA_RETRY_MAX_MS` | `5000` | largest retry backoff ceiling |
//! | `KEEL_SAGA_HTTP_TIMEOUT_MS` | `15000` | upper bound on one command request |
//! | `KEEL_KAFKA_SESSION_TIMEOUT_MS` | `10000` | consumer group session timeout |
//! | `KEEL_SAGA_BATCH_SIZE` | `500` | most events applied in one transaction |
//! | `KEEL_SAGA_BATCH_LINGER_MS` | `5` | how long a started batch waits for more events (`0`: only those already received) |
//! | `KEEL_KAFKA_FETCH_WAIT_MS` | `500` | `fetch.wait.max.ms`: how long the broker holds an empty fetch (it answers as soon as a message arrives, so this is the idle cost, not the flow's latency) |

use std::time::Duration;

use ops::env::{DatabaseUrl, Env};

use sqlx::postgres::PgConnectOptions;

use crate::client::BearerToken;

/// Settings of one saga process.
#[derive(Clone)]
pub struct SagaConfig {
    /// Database with the saga tables (holds the password; never logged).
    pub database: PgConnectOptions,
    /// Bootstrap servers.
    pub kafka_brokers: String,
    /// Registry URL.
    pub schema_registry_url: String,
    /// Topic prefix.
    pub topic_prefix: String,
    /// Partitions of topics the saga creates if they are missing.
    pub topic_partitions: i32,
    /// Brokers each partition of those topics is kept on.
    pub topic_replication_factor: i32,
    /// Consumer group.
    pub group_id: String,
    /// `group.instance.id`: this instance's stable name for static group membership. A
    /// restarted instance takes its partitions back at once, where a dynamic member's
    /// replacement waits for the dead member's session to time out; a static member that
    /// is gone for good keeps its partitions until its session times out.
    pub instance_id: Option<String>,
    /// `auto.offset.reset` of a new group.
    pub start_from: StartFrom,
    /// Command API base URL.
    pub command_api_url: String,
    /// Bearer token for the command API, when it requires one.
    pub command_api_token: Option<BearerToken>,
    /// Where `/metrics` is served.
    pub metrics_addr: std::net::SocketAddr,
    /// Deadline of the reservation and the authorization step.
    pub step_timeout: Duration,
    /// Dispatcher and deadline sweep period.
    pub poll_interval: Duration,
    /// Most events applied in one transaction.
    pub batch_size: usize,
    /// How long a started batch waits for more events.
    pub batch_linger: Duration,
    /// Backoff ceiling of a command's first retry.
    pub retry_base: Duration,
    /// Largest backoff ceiling.
    pub retry_max: Duration,
    /// Upper bound on one command request.
    pub http_timeout: Duration,
    /// Consumer group session timeout.
    pub session_timeout: Duration,
    /// `fetch.wait.max.ms`: how long the broker holds a fetch that finds nothing new.
    pub fetch_wait: Duration,
}

/// Where a consumer group without committed offsets starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The beginning of each topic.
    Earliest,
    /// Only new events.
    Latest,
}

impl StartFrom {
    /// librdkafka `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

impl std::fmt::Debug for SagaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaConfig")
            .field("database", &"<redacted>")
            .field("kafka_brokers", &self.kafka_brokers)
            .field("schema_registry_url", &self.schema_registry_url)
            .field("topic_prefix", &self.topic_prefix)
            .field("topic_partitions", &self.topic_partitions)
            .field("topic_replication_factor", &self.topic_replication_factor)
            .field("group_id", &self.group_id)
            .field("instance_id", &self.instance_id)
            .field("start_from", &self.start_from)
            .field("command_api_url", &self.command_api_url)
            .field("command_api_token", &self.command_api_token)
            .field("metrics_addr", &self.metrics_addr)
            .field("step_timeout", &self.step_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("batch_size", &self.batch_size)
            .field("batch_linger", &self.batch_linger)
            .field("retry_base", &self.retry_base)
            .field("retry_max", &self.retry_max)
            .field("http_timeout", &self.http_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("fetch_wait", &self.fetch_wait)
            .finish()
    }
}

/// A setting does not parse (the one configuration error of every process).
pub use ops::ConfigError;

impl SagaConfig {
    /// Defaults for the local stack, on `database`.
    pub fn new(database: PgConnectOptions) -> Self {
        Self {
            database,
            kafka_brokers: "127.0.0.1:9092".into(),
            schema_registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            topic_prefix: schemas::DEFAULT_TOPIC_PREFIX.into(),
            topic_partitions: 8,
            topic_replication_factor: 1,
            group_id: "keel-saga".into(),
            instance_id: None,
            start_from: StartFrom::Earliest,
            command_api_url: "http://127.0.0.1:8080".into(),
            command_api_token: None,
            metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9102)),
            step_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            batch_size: 500,
            batch_linger: Duration::from_millis(5),
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            http_timeout: Duration::from_secs(15),
            session_timeout: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(500),
        }
    }

    /// Defaults overridden by the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        ops::env::from_process(Self::read)
    }

    /// Defaults overridden by `lookup`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that does not parse.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(Env::new(&lookup))
    }

    fn read(env: Env<'_>) -> Result<Self, ConfigError> {
        let url = env
            .database_url("KEEL_DATABASE_URL")?
            .unwrap_or_else(|| DatabaseUrl::new(ops::env::LOCAL_DATABASE_URL));
        let mut config = Self::new(url.connect_options()?);
        let text = |var: &str, target: &mut String| {
            if let Some(value) = env.text(var) {
                *target = value;
            }
        };
        text("KEEL_KAFKA_BROKERS", &mut config.kafka_brokers);
        text("KEEL_SCHEMA_REGISTRY_URL", &mut config.schema_registry_url);
        text("KEEL_TOPIC_PREFIX", &mut config.topic_prefix);
        text("KEEL_SAGA_GROUP_ID", &mut config.group_id);
        config.instance_id = env.text("KEEL_SAGA_INSTANCE_ID");
        text("KEEL_COMMAND_API_URL", &mut config.command_api_url);
        config.command_api_token = env
            .secret(
                "KEEL_SAGA_COMMAND_API_TOKEN",
                "KEEL_SAGA_COMMAND_API_TOKEN_FILE",
            )?
            .map(BearerToken);
        if let Some(addr) = env.parsed("KEEL_METRICS_ADDR")? {
            config.metrics_addr = addr;
        }
        if let Some(partitions) = env.positive("KEEL_TOPIC_PARTITIONS")? {
            config.topic_partitions = partitions;
        }
        if let Some(factor) = env.positive("KEEL_TOPIC_REPLICATION_FACTOR")? {
            config.topic_replication_factor = factor;
        }
        if let Some(size) = env.positive("KEEL_SAGA_BATCH_SIZE")? {
            config.batch_size = size;
        }
        if let Some(linger) = env.millis("KEEL_SAGA_BATCH_LINGER_MS")? {
            config.batch_linger = linger;
        }
        let millis = |var, target: &mut Duration| -> Result<(), ConfigError> {
            if let Some(value) = env.positive_millis(var)? {
                *target = value;
            }
            Ok(())
        };
        millis("KEEL_SAGA_STEP_TIMEOUT_MS", &mut config.step_timeout)?;
        millis("KEEL_SAGA_POLL_MS", &mut config.poll_interval)?;
        millis("KEEL_SAGA_RETRY_BASE_MS", &mut config.retry_base)?;
        millis("KEEL_SAGA_RETRY_MAX_MS", &mut config.retry_max)?;
        millis("KEEL_SAGA_HTTP_TIMEOUT_MS", &mut config.http_timeout)?;
        millis("KEEL_KAFKA_SESSION_TIMEOUT_MS", &mut config.session_timeout)?;
        millis("KEEL_KAFKA_FETCH_WAIT_MS", &mut config.fetch_wait)?;
        if let Some(start) = env.text("KEEL_SAGA_START_FROM") {
            config.start_from = match start.as_str() {
                "earliest" => StartFrom::Earliest,
                "latest" => StartFrom::Latest,
                other => {
                    return Err(ConfigError {
                        var: "KEEL_SAGA_START_FROM",
                        reason: format!("{other:?}; expected earliest or latest"),
                    });
                }
            };
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<SagaConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SagaConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.group_id, "keel-saga");
        assert_eq!(defaults.command_api_url, "http://127.0.0.1:8080");
        assert_eq!(defaults.start_from, StartFrom::Earliest);
        assert_eq!(defaults.instance_id, None);
        assert_eq!(defaults.fetch_wait, Duration::from_millis(500));
        assert_eq!(defaults.batch_size, 500);
        assert_eq!(defaults.batch_linger, Duration::from_millis(5));

        let custom = config(&[
            ("KEEL_COMMAND_API_URL", "http://api:9000"),
            ("KEEL_SAGA_GROUP_ID", "saga-2"),
            ("KEEL_SAGA_INSTANCE_ID", "saga-pod-1"),
            ("KEEL_SAGA_STEP_TIMEOUT_MS", "1500"),
            ("KEEL_SAGA_START_FROM", "latest"),
            ("KEEL_TOPIC_PREFIX", "dev."),
            ("KEEL_TOPIC_REPLICATION_FACTOR", "3"),
            ("KEEL_KAFKA_FETCH_WAIT_MS", "10"),
            ("KEEL_SAGA_BATCH_SIZE", "64"),
            ("KEEL_SAGA_BATCH_LINGER_MS", "0"),
        ])
        .unwrap();
        assert_eq!(custom.batch_size, 64);
        assert_eq!(custom.batch_linger, Duration::ZERO);
        assert_eq!(custom.fetch_wait, Duration::from_millis(10));
        assert_eq!(custom.command_api_url, "http://api:9000");
        assert_eq!(custom.group_id, "saga-2");
        assert_eq!(custom.instance_id.as_deref(), Some("saga-pod-1"));
        assert_eq!(custom.step_timeout, Duration::from_millis(1500));
        assert_eq!(custom.start_from, StartFrom::Latest);
        assert_eq!(custom.topic_prefix, "dev.");
        assert_eq!(custom.topic_replication_factor, 3);
    }

    #[test]
    fn invalid_values_name_the_variable_and_hide_secrets() {
        let err = config(&[("KEEL_SAGA_STEP_TIMEOUT_MS", "0")]).unwrap_err();
        assert_eq!(err.var, "KEEL_SAGA_STEP_TIMEOUT_MS");
        let err = config(&[("KEEL_SAGA_BATCH_SIZE", "0")]).unwrap_err();
        assert_eq!(err.var, "KEEL_SAGA_BATCH_SIZE");
        let err = config(&[("KEEL_SAGA_BATCH_LINGER_MS", "soon")]).unwrap_err();
        assert_eq!(err.var, "KEEL_SAGA_BATCH_LINGER_MS");
        let err = config(&[("KEEL_SAGA_START_FROM", "middle")]).unwrap_err();
        assert_eq!(err.var, "KEEL_SAGA_START_FROM");
        let err = config(&[("KEEL_DATABASE_URL", "mysql://root:hunter2@x")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        let shown = format!("{:?}", config(&[]).unwrap());
        assert!(!shown.contains("keel:keel"), "{shown}");
    }
}
