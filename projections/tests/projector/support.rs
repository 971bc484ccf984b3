//! One test's world: a database holding the event store and the `read_model` schema, the
//! real command API and outbox relay publishing to its own topics, and projectors in
//! consumer groups of its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use aggregates::payment::SimulatedPaymentGateway;
use chrono::{DateTime, Utc};
use command_api::startup::{Application, Dependencies};
use event_store::customer_keys::{Keyring, MasterKey};
use ops::clock::FixedClock;
use ops::ids::RandomIds;
use outbox_relay::{OutboxRelay, RelayConfig};
use projections::config::{KafkaSettings, ProjectorSettings, RetryPolicy};
use projections::{Progress, Projection, Projector};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use test_support::{ScratchDatabase, Stack};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest wait for anything to arrive (group joins on a shared broker take seconds).
pub const WAIT: Duration = Duration::from_secs(90);

/// `occurred_at` of every event the command API records in these tests.
pub const NOW_MICROS: i64 = 1_714_564_800_123_456;
/// [`NOW_MICROS`] as PostgreSQL renders a `timestamptz` in JSON (sessions are UTC).
pub const NOW_JSON: &str = "2024-05-01T12:00:00.123456+00:00";

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(NOW_MICROS).expect("valid timestamp")
}

pub use test_support::unique_name;

/// The master key of every test's command API and projectors (ADR 0009).
pub fn test_keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(MasterKey::from_bytes(&[5; 32]), vec![]))
}

/// Logs of the code under test, when `RUST_LOG` asks for them.
fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_test_writer()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .try_init();
        }
    });
}

/// The command API on port 0 and an outbox relay publishing under the test's prefix.
pub struct Harness {
    /// The event store in `public`, the read models in `read_model`, as in a
    /// single-database deployment.
    database: ScratchDatabase,
    /// The read-model pool the projectors use (migrated).
    pub read_model: PgPool,
    /// The event store (for counting what was written).
    pub event_store: PgPool,
    /// Where the projectors find the broker, the registry and the test's topics.
    pub kafka: KafkaSettings,
    api_address: String,
    client: reqwest::Client,
    api_stop: CancellationToken,
    api_task: JoinHandle<std::io::Result<()>>,
    relay_stop: CancellationToken,
    relay_task: JoinHandle<()>,
}

impl Harness {
    /// Everything a test needs, with topics of `partitions` partitions (created by the
    /// relay before any event is written).
    pub async fn start(partitions: i32) -> Self {
        init_tracing();
        let Stack {
            kafka_brokers: brokers,
            registry_url,
            ..
        } = Stack::from_env();
        let database = ScratchDatabase::create("keel_proj_test")
            .await
            .expect("scratch database");

        let read_model = database.pool(8).await.expect("connect read-model pool");
        read_model::migrate(&read_model)
            .await
            .expect("read-model migrations");

        let mut settings = command_api::config::Settings::default();
        settings.http.addr = "127.0.0.1:0".parse().expect("address");
        settings.http.shutdown_grace = Duration::from_secs(5);
        settings.keyring = Some(test_keyring());
        let api_pool = database.pool(6).await.expect("connect command API pool");
        let dependencies = Dependencies {
            clock: Arc::new(FixedClock(now())),
            ids: Arc::new(RandomIds),
            payment_gateway: Arc::new(SimulatedPaymentGateway::new()),
            append_hook: None,
        };
        let application = Application::build_with_pool(&settings, api_pool, dependencies)
            .await
            .expect("command API builds");
        let api_address = format!("http://{}", application.local_addr());
        let api_stop = CancellationToken::new();
        let api_task =
            tokio::spawn(application.run_until_stopped(api_stop.clone().cancelled_owned()));
        let event_store = database.pool(2).await.expect("connect event-store pool");

        let topic_prefix = format!("{}.", unique_name("proj"));
        let mut relay_config = RelayConfig::new(
            database.connect_options(),
            brokers.clone(),
            registry_url.clone(),
        );
        relay_config.topic_prefix = topic_prefix.clone();
        relay_config.topic_partitions = partitions;
        relay_config.poll_interval = Duration::from_millis(10);
        relay_config.message_timeout = Duration::from_secs(10);
        let relay = OutboxRelay::prepare(relay_config)
            .await
            .expect("relay prepares (schema registry and broker reachable)");
        let relay_stop = CancellationToken::new();
        let relay_task = tokio::spawn({
            let stop = relay_stop.clone();
            async move { relay.run(stop).await }
        });

        let kafka = KafkaSettings {
            brokers,
            schema_registry_url: registry_url,
            topic_prefix,
            topic_partitions: partitions,
            topic_replication_factor: 1,
            session_timeout: Duration::from_secs(6),
            auto_commit_interval: Duration::from_millis(200),
            fetch_wait: Duration::from_millis(500),
        };
        Self {
            database,
            read_model,
            event_store,
            kafka,
            api_address,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("HTTP client"),
            api_stop,
            api_task,
            relay_stop,
            relay_task,
        }
    }

    /// The name of the test's database.
    pub fn database_name(&self) -> &str {
        self.database.name()
    }

    /// The URL of the test's database (credentials included; never print it).
    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// The topic of `kind` under this test's prefix.
    pub fn topic(&self, kind: schemas::AggregateKind) -> String {
        kind.topic(&self.kafka.topic_prefix)
    }

    /// Stops the relay and the command API, and drops the database (best effort).
    pub async fn finish(self) {
        self.relay_stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.relay_task)
            .await
            .expect("relay stops in time")
            .expect("relay task");
        self.api_stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.api_task)
            .await
            .expect("command API stops in time")
            .expect("command API task")
            .expect("command API stopped cleanly");
        self.read_model.close().await;
        self.event_store.close().await;
        self.database.drop_database().await;
        test_support::delete_topics_with_prefix(&self.kafka.brokers, &self.kafka.topic_prefix)
            .await
            .expect("delete the test's topics");
    }

    // --- the write side -----------------------------------------------------------------

    /// POSTs `body` (nothing for `Null`) and returns the JSON answer, asserting `status`.
    pub async fn post(&self, path: &str, body: Value, status: u16) -> Value {
        let mut request = self.client.post(format!("{}{path}", self.api_address));
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.expect("command API answers");
        let actual = response.status().as_u16();
        let text = response.text().await.expect("response body");
        assert_eq!(actual, status, "POST {path} {body}: answered {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A draft order in EUR (event 1); returns its id.
    pub async fn create_order(&self, customer_id: Uuid) -> Uuid {
        let body = self
            .post(
                "/orders",
                json!({"customer_id": customer_id, "currency": "EUR"}),
                201,
            )
            .await;
        id_of(&body)
    }

    pub async fn add_line(&self, order_id: Uuid, sku: &str, quantity: u32, unit_price_minor: i64) {
        self.post(
            &format!("/orders/{order_id}/lines"),
            json!({
                "sku": sku,
                "quantity": quantity,
                "unit_price": {"amount_minor": unit_price_minor, "currency": "EUR"},
            }),
            201,
        )
        .await;
    }

    pub async fn place_order(&self, order_id: Uuid) {
        self.post(&format!("/orders/{order_id}/place"), Value::Null, 200)
            .await;
    }

    pub async fn confirm_order(&self, order_id: Uuid) {
        self.post(&format!("/orders/{order_id}/confirm"), Value::Null, 200)
            .await;
    }

    pub async fn add_stock(&self, sku: &str, quantity: u32) {
        self.post(
            &format!("/inventory/{sku}/stock"),
            json!({"quantity": quantity}),
            200,
        )
        .await;
    }

    pub async fn reserve_stock(&self, sku: &str, order_id: Uuid, quantity: u32) {
        self.post(
            &format!("/inventory/{sku}/reservations"),
            json!({"order_id": order_id, "quantity": quantity}),
            201,
        )
        .await;
    }

    /// An approved payment of `amount_minor` EUR for `order_id`; returns its id.
    pub async fn authorize_payment(&self, order_id: Uuid, amount_minor: i64) -> Uuid {
        let body = self
            .post(
                "/payments",
                json!({
                    "order_id": order_id,
                    "amount": {"amount_minor": amount_minor, "currency": "EUR"},
                    "payment_method": "tok_visa",
                }),
                201,
            )
            .await;
        id_of(&body)
    }

    pub async fn capture_payment(&self, payment_id: Uuid, amount_minor: i64) {
        self.post(
            &format!("/payments/{payment_id}/capture"),
            json!({"amount": {"amount_minor": amount_minor, "currency": "EUR"}}),
            200,
        )
        .await;
    }

    /// Events in the event store per aggregate type.
    pub async fn event_counts(&self) -> EventCounts {
        let rows = sqlx::query("SELECT aggregate_type, count(*) AS n FROM events GROUP BY 1")
            .fetch_all(&self.event_store)
            .await
            .expect("count events");
        let mut counts = EventCounts::default();
        for row in rows {
            let n: i64 = row.get("n");
            let n = u64::try_from(n).expect("non-negative count");
            match row.get::<String, _>("aggregate_type").as_str() {
                "order" => counts.order = n,
                "inventory" => counts.inventory = n,
                "payment" => counts.payment = n,
                "customer" => counts.customer = n,
                other => panic!("unexpected aggregate type {other} in the event store"),
            }
        }
        counts
    }

    /// The stored payload of one event, as JSON.
    pub async fn stored_payload(&self, aggregate_id: Uuid, sequence: i64) -> Value {
        sqlx::query_scalar(
            "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND sequence = $2",
        )
        .bind(aggregate_id.to_string())
        .bind(sequence)
        .fetch_one(&self.event_store)
        .await
        .expect("stored event")
    }

    /// Waits until the relay has published everything written so far.
    pub async fn wait_for_empty_outbox(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(&self.event_store)
                .await
                .expect("count outbox rows");
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the relay did not publish {left} outbox rows within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // --- projectors ---------------------------------------------------------------------

    /// Projector settings in consumer groups no other test (or earlier run) uses.
    pub fn projector_settings(&self, batch_size: usize) -> ProjectorSettings {
        ProjectorSettings {
            group_prefix: unique_name("proj-test"),
            batch_size,
            batch_linger: Duration::from_millis(20),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
            },
            lock_timeout: Duration::from_secs(2),
            instance_id: None,
            keyring: Some(test_keyring()),
        }
    }

    pub async fn start_projector(
        &self,
        projection: Projection,
        settings: &ProjectorSettings,
    ) -> RunningProjector {
        RunningProjector::start(projection, self.read_model.clone(), &self.kafka, settings).await
    }
}

pub fn id_of(body: &Value) -> Uuid {
    body["aggregate_id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .unwrap_or_else(|| panic!("no aggregate id in {body}"))
}

/// How many events the event store holds per aggregate type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    pub order: u64,
    pub inventory: u64,
    pub payment: u64,
    pub customer: u64,
}

impl EventCounts {
    /// The events `projection` reads (and applies: every event of its topics counts).
    pub fn read_by(&self, projection: Projection) -> u64 {
        match projection {
            Projection::Orders => self.order + self.inventory + self.payment + self.customer,
            Projection::Stock => self.inventory,
            Projection::Payments => self.payment,
        }
    }
}

/// A projector running in the background until stopped.
pub struct RunningProjector {
    pub projection: Projection,
    pub group_id: String,
    pub dead_letter_topic: String,
    progress: watch::Receiver<Progress>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningProjector {
    pub async fn start(
        projection: Projection,
        pool: PgPool,
        kafka: &KafkaSettings,
        settings: &ProjectorSettings,
    ) -> Self {
        let projector = Projector::start(projection, pool, kafka, settings)
            .await
            .expect("projector starts (broker and registry reachable)");
        let group_id = projector.group_id().to_owned();
        let dead_letter_topic = projector.dead_letter_topic().to_owned();
        let progress = projector.progress();
        let stop = CancellationToken::new();
        let task = tokio::spawn(projector.run(stop.clone()));
        Self {
            projection,
            group_id,
            dead_letter_topic,
            progress,
            stop,
            task,
        }
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits (bounded) until `done` holds for the projector's progress.
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Progress) -> bool,
    ) -> Progress {
        let outcome = tokio::time::timeout(WAIT, self.progress.wait_for(|p| done(p)))
            .await
            .map(|waited| waited.map(|progress| progress.clone()));
        match outcome {
            Ok(Ok(progress)) => progress,
            Ok(Err(_)) => panic!(
                "projector {} ended before {what}; progress: {:?}",
                self.projection,
                self.progress()
            ),
            Err(_) => panic!(
                "projector {}: {what} did not happen within {WAIT:?}; progress: {:?}",
                self.projection,
                self.progress()
            ),
        }
    }

    /// Waits until `applied` events were applied.
    pub async fn wait_for_applied(&mut self, applied: u64) -> Progress {
        self.wait_for(&format!("{applied} events applied"), |p| {
            p.applied >= applied
        })
        .await
    }

    /// Cancels the projector, waits (bounded) for it to commit and leave, and returns its
    /// final progress.
    pub async fn stop(self) -> Progress {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap_or_else(|_| panic!("projector {} stops within 30 s", self.projection))
            .expect("projector task did not panic");
        self.progress.borrow().clone()
    }
}

// --- the read model -----------------------------------------------------------------------

/// Rows of `read_model.<table>` whose `<column>` is `key`, as JSON objects, ordered.
pub async fn rows(
    pool: &PgPool,
    table: &str,
    column: &str,
    key: impl ToString,
    order_by: &str,
) -> Vec<Value> {
    sqlx::query_scalar(&format!(
        "SELECT to_jsonb(t) FROM read_model.{table} t WHERE t.{column}::text = $1 \
         ORDER BY {order_by}"
    ))
    .bind(key.to_string())
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("read read_model.{table}: {e}"))
}

/// The single row of `read_model.<table>` whose `<column>` is `key`.
pub async fn row(pool: &PgPool, table: &str, column: &str, key: impl ToString) -> Value {
    let key = key.to_string();
    let mut found = rows(pool, table, column, &key, "1").await;
    assert_eq!(
        found.len(),
        1,
        "expected one row in read_model.{table} with {column} = {key}, found {found:?}"
    );
    found.remove(0)
}

/// Every table of the read-model schema, each as the exact JSON text of all its rows in
/// a canonical order.
pub async fn dump_read_model(pool: &PgPool) -> BTreeMap<String, String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'read_model' AND table_type = 'BASE TABLE' \
           AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("list read-model tables");
    assert!(
        tables.len() >= 9,
        "read-model tables missing: found {tables:?}"
    );
    let mut dump = BTreeMap::new();
    for table in tables {
        let rows: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(json_agg(t ORDER BY t::text), '[]'::json)::text \
             FROM read_model.\"{table}\" t"
        ))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("dump read_model.{table}: {e}"));
        dump.insert(table, rows);
    }
    dump
}

/// A projector process, killed (SIGKILL) when dropped, so a failed test leaves none behind.
pub struct ProjectorProcess(std::process::Child);

impl ProjectorProcess {
    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the projector");
        self.0.wait().expect("reap the projector");
    }
}

impl Drop for ProjectorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The projector binary on the test's database and topics, projection `stock` only, in
/// consumer group `<group_prefix>.stock`, as static member `<instance>.stock` when given;
/// `env` adds or overrides settings.
pub fn spawn_projector(
    harness: &Harness,
    group_prefix: &str,
    instance: Option<&str>,
    env: &[(&str, &str)],
) -> ProjectorProcess {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_projections"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "error")
        .env("KEEL_READ_MODEL_DATABASE_URL", harness.database_url())
        .env("KEEL_KAFKA_BROKERS", &harness.kafka.brokers)
        .env(
            "KEEL_SCHEMA_REGISTRY_URL",
            &harness.kafka.schema_registry_url,
        )
        .env("KEEL_TOPIC_PREFIX", &harness.kafka.topic_prefix)
        .env(
            "KEEL_TOPIC_PARTITIONS",
            harness.kafka.topic_partitions.to_string(),
        )
        .env("KEEL_PROJECTIONS", "stock")
        .env("KEEL_PROJECTOR_GROUP_PREFIX", group_prefix)
        .env("KEEL_KAFKA_AUTO_COMMIT_INTERVAL_MS", "200")
        .env("KEEL_METRICS_ADDR", "127.0.0.1:0");
    if let Some(instance) = instance {
        command.env("KEEL_PROJECTOR_INSTANCE_ID", instance);
    }
    ProjectorProcess(
        command
            .envs(env.iter().copied())
            .spawn()
            .expect("start the projector binary"),
    )
}

/// Events the `stock` projection has applied, by its checkpoints.
pub async fn stock_events_applied(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(last_sequence), 0)::bigint FROM read_model.checkpoints \
         WHERE projection = 'stock'",
    )
    .fetch_one(pool)
    .await
    .expect("sum checkpoints")
}

/// `on_hand` and `version` of `sku` in the stock read model, if it has a row.
pub async fn stock(pool: &PgPool, sku: &str) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT on_hand, version FROM read_model.stock_levels WHERE sku = $1")
        .bind(sku)
        .fetch_optional(pool)
        .await
        .expect("read stock level")
}

/// Held events of `projection`, per aggregate id.
pub async fn held_events(pool: &PgPool, projection: Projection) -> BTreeMap<String, i64> {
    sqlx::query_as(
        "SELECT aggregate_id, count(*) FROM read_model.retry_events \
         WHERE projection = $1 GROUP BY 1",
    )
    .bind(projection.name())
    .fetch_all(pool)
    .await
    .expect("read held events")
    .into_iter()
    .collect()
}

/// Polls `check` until it holds, or panics after [`WAIT`] naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A dead letter as the tests look at it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Letter {
    pub id: i64,
    pub aggregate_id: Option<String>,
    pub sequence: Option<i64>,
    pub reason: String,
    pub error: String,
    pub attempts: i32,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution_reason: Option<String>,
}

/// Every dead letter of the test's database, oldest first.
pub async fn letters(pool: &PgPool) -> Vec<Letter> {
    sqlx::query_as(
        "SELECT id, aggregate_id, sequence, reason, error, attempts, resolution, resolved_by, \
                resolution_reason \
         FROM read_model.dead_letters ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("read dead letters")
}

// --- Kafka ----------------------------------------------------------------------------------

/// A consumer in a group of its own, reading `topic` from the beginning.
pub fn subscribe_from_start(brokers: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_name("proj-test-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .expect("Kafka consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Receives until `count` messages arrived, or panics after [`WAIT`] naming `what`.
pub async fn receive(consumer: &StreamConsumer, count: usize, what: &str) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + WAIT;
    let mut messages = Vec::new();
    while messages.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: {} of {count} messages arrived within {WAIT:?}",
            messages.len()
        );
        match tokio::time::timeout(left.min(Duration::from_secs(1)), consumer.recv()).await {
            Ok(Ok(message)) => messages.push(message.detach()),
            Ok(Err(error)) => eprintln!("{what}: consumer error (retrying): {error}"),
            Err(_) => {}
        }
    }
    messages
}

/// An idempotent producer, every delivery bounded in time.
pub fn producer(brokers: &str) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("Kafka producer")
}

/// The value of header `name`, as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A little of everything: three orders (two placed), stock received and reserved, a
/// payment authorized and captured. Returns the order ids.
pub async fn write_sample(harness: &Harness) -> Vec<Uuid> {
    let customer_id = Uuid::new_v4();
    let mut order_ids = Vec::new();
    for (n, place) in [(1_u32, true), (2, true), (3, false)] {
        let order_id = harness.create_order(customer_id).await;
        harness.add_line(order_id, "SKU-A", n, 1000).await;
        harness
            .add_line(order_id, "SKU-B", 1, 250 * i64::from(n))
            .await;
        if place {
            harness.place_order(order_id).await;
        }
        order_ids.push(order_id);
    }
    harness.add_stock("SKU-A", 20).await;
    harness.reserve_stock("SKU-A", order_ids[0], 1).await;
    harness.reserve_stock("SKU-A", order_ids[1], 2).await;
    let payment_id = harness.authorize_payment(order_ids[0], 1250).await;
    harness.capture_payment(payment_id, 1250).await;
    order_ids
}

/// Asserts that `projection`'s checkpoints stand exactly at the last sequence of every
/// aggregate it reads in the event store: everything applied, nothing beyond.
pub async fn assert_checkpoints_match_event_store(harness: &Harness, projection: Projection) {
    let types: Vec<&str> = projection
        .sources()
        .iter()
        .map(|kind| kind.aggregate_type())
        .collect();
    let stored: BTreeMap<(String, String), i64> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, max(sequence) FROM events \
         WHERE aggregate_type = ANY($1) GROUP BY 1, 2",
    )
    .bind(&types)
    .fetch_all(&harness.event_store)
    .await
    .expect("last sequences in the event store")
    .into_iter()
    .map(|(t, id, s): (String, String, i64)| ((t, id), s))
    .collect();
    let checkpoints: BTreeMap<(String, String), i64> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, last_sequence FROM read_model.checkpoints \
         WHERE projection = $1",
    )
    .bind(projection.name())
    .fetch_all(&harness.read_model)
    .await
    .expect("read checkpoints")
    .into_iter()
    .map(|(t, id, s): (String, String, i64)| ((t, id), s))
    .collect();
    assert_eq!(
        checkpoints, stored,
        "checkpoints of {projection} against the event store"
    );
}
