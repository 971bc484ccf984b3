//! The whole platform in one test process: command API, outbox relay, the three
//! projectors and the query API, on a database and topic prefix of their own, talking to
//! the real PostgreSQL, broker and registry.

use std::sync::Arc;
use std::time::Duration;

use event_store::customer_keys::Keyring;
use outbox_relay::{OutboxRelay, RelayConfig};
use projections::{Projection, Projector};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use test_support::ScratchDatabase;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Stack, unique_name};

/// The master key of personal data (ADR 0009) of every component the platform starts:
/// base64 of 32 bytes of 3.
pub const MASTER_KEY: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

/// A running platform. Call [`Platform::stop`] at the end of a test.
#[derive(Debug)]
pub struct Platform {
    /// `http://127.0.0.1:<port>` of the command API.
    pub command_url: String,
    /// `http://127.0.0.1:<port>` of the query API.
    pub query_url: String,
    /// The platform's database (event store and read models), for assertions.
    pub db: PgPool,
    /// The topic prefix of this platform's event topics.
    pub topic_prefix: String,
    client: reqwest::Client,
    database: ScratchDatabase,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `version` of a command's answer.
    pub fn version(&self) -> u64 {
        self.body["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("answer has a version: {self:?}"))
    }

    /// The `aggregate_id` of a command's answer.
    pub fn aggregate_id(&self) -> String {
        self.body["aggregate_id"]
            .as_str()
            .unwrap_or_else(|| panic!("answer has an aggregate id: {self:?}"))
            .to_owned()
    }

    /// Panics unless the status is `expected`.
    pub fn expect_status(self, expected: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected answer: {self:?}"
        );
        self
    }
}

impl Platform {
    /// Starts everything and waits until the query API is ready.
    ///
    /// # Panics
    /// If a component cannot start; the message names it.
    pub async fn start() -> Self {
        let keyring = Keyring::from_config(Some(MASTER_KEY), None)
            .expect("test master key")
            .map(Arc::new);
        let stack = Stack::from_env();
        let database = ScratchDatabase::create_on(&stack.database_url, "keel_e2e")
            .await
            .expect("scratch database");
        let options = database.connect_options();
        let url = database.url().to_owned();
        let db = database
            .pool(4)
            .await
            .expect("connect to the test database");

        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();

        // Write side.
        let mut settings = command_api::config::Settings::default();
        settings.http.addr = "127.0.0.1:0".parse().expect("address");
        settings.database.url = command_api::config::DatabaseUrl::new(url.clone());
        settings.database.max_connections = 8;
        settings.keyring = keyring.clone();
        let dependencies = command_api::startup::Dependencies::from_settings(&settings);
        let command_api = command_api::startup::Application::build(&settings, dependencies)
            .await
            .expect("command API starts");
        let command_url = format!("http://{}", command_api.local_addr());
        let shutdown = stop.clone();
        tasks.spawn(async move {
            command_api
                .run_until_stopped(async move { shutdown.cancelled().await })
                .await
                .expect("command API serves");
        });

        // Outbox relay.
        let topic_prefix = format!("{}.", unique_name("e2e"));
        let mut relay_config = RelayConfig::new(
            options.clone(),
            stack.kafka_brokers.clone(),
            stack.registry_url.clone(),
        );
        relay_config.topic_prefix = topic_prefix.clone();
        relay_config.topic_partitions = 2;
        relay_config.poll_interval = Duration::from_millis(5);
        let relay = OutboxRelay::prepare(relay_config)
            .await
            .expect("relay prepares (registry and broker reachable)");
        let cancel = stop.clone();
        tasks.spawn(async move { relay.run(cancel).await });

        // Projectors.
        let group_prefix = unique_name("e2e-projector");
        let projector_settings = projections::Settings::from_lookup(|name| match name {
            "KEEL_READ_MODEL_DATABASE_URL" => Some(url.clone()),
            "KEEL_KAFKA_BROKERS" => Some(stack.kafka_brokers.clone()),
            "KEEL_SCHEMA_REGISTRY_URL" => Some(stack.registry_url.clone()),
            "KEEL_TOPIC_PREFIX" => Some(topic_prefix.clone()),
            "KEEL_TOPIC_PARTITIONS" => Some("4".into()),
            "KEEL_PROJECTOR_GROUP_PREFIX" => Some(group_prefix.clone()),
            "KEEL_KAFKA_SESSION_TIMEOUT_MS" => Some("6000".into()),
            "KEEL_PROJECTOR_BATCH_LINGER_MS" => Some("2".into()),
            "KEEL_MASTER_KEY" => Some(MASTER_KEY.to_owned()),
            _ => None,
        })
        .expect("projector settings");
        read_model::migrate(&db)
            .await
            .expect("read-model migrations");
        for projection in Projection::ALL {
            let projector = Projector::start(
                projection,
                db.clone(),
                &projector_settings.kafka,
                &projector_settings.projector,
            )
            .await
            .unwrap_or_else(|e| panic!("projector {projection} starts: {e}"));
            tasks.spawn(projector.run(stop.child_token()));
        }

        // Read side.
        let mut settings = query_api::config::Settings::default();
        settings.http.addr = "127.0.0.1:0".parse().expect("address");
        settings.database.url = query_api::config::DatabaseUrl::new(url);
        settings.keyring = keyring;
        let query_api = query_api::startup::Application::build(&settings)
            .await
            .expect("query API starts");
        let query_url = format!("http://{}", query_api.local_addr());
        let shutdown = stop.clone();
        tasks.spawn(async move {
            query_api
                .run_until_stopped(async move { shutdown.cancelled().await })
                .await
                .expect("query API serves");
        });

        let platform = Self {
            command_url,
            query_url,
            db,
            topic_prefix,
            client: reqwest::Client::new(),
            database,
            stop,
            tasks,
        };
        let ready = platform.query("/health/ready").await;
        assert_eq!(ready.status, StatusCode::OK, "query API ready: {ready:?}");
        platform
    }

    async fn send(&self, method: Method, url: String, body: Option<Value>) -> Answer {
        self.send_with_headers(method, url, body, &[]).await
    }

    async fn send_with_headers(
        &self,
        method: Method,
        url: String,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is answered");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body is read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// POSTs a command (`Value::Null`: no body).
    pub async fn command(&self, path: &str, body: Value) -> Answer {
        let body = (!body.is_null()).then_some(body);
        self.send(Method::POST, format!("{}{path}", self.command_url), body)
            .await
    }

    /// [`Platform::command`] with extra request headers.
    pub async fn command_with_headers(
        &self,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Answer {
        let body = (!body.is_null()).then_some(body);
        self.send_with_headers(
            Method::POST,
            format!("{}{path}", self.command_url),
            body,
            headers,
        )
        .await
    }

    /// GETs from the query API.
    pub async fn query(&self, path: &str) -> Answer {
        self.send(Method::GET, format!("{}{path}", self.query_url), None)
            .await
    }

    /// Stops every component, waits for them, and drops the database.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(result) = self.tasks.join_next().await {
                result.expect("component task");
            }
        })
        .await;
        assert!(stopped.is_ok(), "platform did not stop within 30 s");
        crate::delete_topics_with_prefix(
            &crate::Stack::from_env().kafka_brokers,
            &self.topic_prefix,
        )
        .await
        .expect("delete the platform's topics");
        self.db.close().await;
        self.database.drop_database().await;
    }
}
