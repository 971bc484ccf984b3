//! The order fulfilment saga running in-process next to a [`Platform`]: its own consumer
//! group and database pool, sending commands to the platform's command API, so a test can
//! stop it, kill it mid-flow and start a successor in the same group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga::store::read_saga;
use saga::{DispatchHook, Fulfilment, SagaConfig, SagaRunner, SagaStatus};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Platform, Stack, unique_name};

/// How a saga instance is set up.
#[derive(Debug, Clone)]
pub struct SagaOptions {
    /// Consumer group; a successor of a killed saga uses the same one.
    pub group_id: String,
    /// Deadline of the reservation and authorization steps.
    pub step_timeout: Duration,
    /// Test seam called before each command is sent.
    pub hook: Option<Arc<dyn DispatchHook>>,
}

impl Default for SagaOptions {
    fn default() -> Self {
        Self {
            group_id: unique_name("e2e-saga"),
            step_timeout: Duration::from_secs(30),
            hook: None,
        }
    }
}

/// A saga running as a task.
#[derive(Debug)]
pub struct RunningSaga {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

impl RunningSaga {
    /// Starts a saga for `platform`.
    ///
    /// # Panics
    /// If it cannot start.
    pub async fn start(platform: &Platform, options: SagaOptions) -> Self {
        let stack = Stack::from_env();
        let database = (*platform.db.connect_options()).clone();
        // A pool of its own: killing the saga must not leave connections to the others.
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(database.clone())
            .await
            .expect("saga connects to the platform database");
        saga::migrate(&pool).await.expect("saga migrations");
        let mut config = SagaConfig::new(database);
        config.kafka_brokers = stack.kafka_brokers;
        config.schema_registry_url = stack.registry_url;
        config.topic_prefix = platform.topic_prefix.clone();
        config.topic_partitions = 2;
        config.group_id = options.group_id;
        config.command_api_url = platform.command_url.clone();
        config.step_timeout = options.step_timeout;
        config.poll_interval = Duration::from_millis(50);
        config.retry_base = Duration::from_millis(100);
        config.retry_max = Duration::from_millis(500);
        config.session_timeout = Duration::from_secs(6);
        let runner = SagaRunner::start(config, pool, options.hook)
            .await
            .expect("saga starts (broker and registry reachable)");
        let stop = CancellationToken::new();
        let task = tokio::spawn(runner.run(stop.clone()));
        Self { task, stop }
    }

    /// Stops it the orderly way.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("saga stops within 30 s")
            .expect("saga task");
    }

    /// Kills it where it stands, as a crash would: nothing is committed or closed.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The saga of `order_id`, once `ready` holds for it; panics with its last state after
/// `within`.
pub async fn saga_when(
    db: &PgPool,
    order_id: Uuid,
    within: Duration,
    ready: impl Fn(&Fulfilment) -> bool,
) -> Fulfilment {
    let deadline = Instant::now() + within;
    loop {
        let saga = read_saga(db, order_id).await.expect("saga tables readable");
        if let Some(saga) = &saga
            && ready(saga)
        {
            return saga.clone();
        }
        assert!(
            Instant::now() < deadline,
            "saga of {order_id} never got there: {saga:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The saga of `order_id` once it reaches `status`.
pub async fn saga_reaches(db: &PgPool, order_id: Uuid, status: SagaStatus) -> Fulfilment {
    saga_when(db, order_id, Duration::from_secs(45), |saga| {
        saga.status == status
    })
    .await
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub payload: Value,
    pub metadata: Value,
}

impl StoredEvent {
    /// A metadata entry.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata[key].as_str()
    }
}

/// Every event in the store, in global order.
pub async fn all_events(db: &PgPool) -> Vec<StoredEvent> {
    sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, payload::jsonb AS payload, \
         metadata::jsonb AS metadata FROM events ORDER BY global_position",
    )
    .fetch_all(db)
    .await
    .expect("events readable")
    .into_iter()
    .map(|row| StoredEvent {
        aggregate_type: row.get("aggregate_type"),
        aggregate_id: row.get("aggregate_id"),
        sequence: row.get("sequence"),
        event_type: row.get("event_type"),
        payload: row.get("payload"),
        metadata: row.get("metadata"),
    })
    .collect()
}

/// The events that concern `order_id`: the order's, its payment's, and the inventory
/// events naming it.
pub async fn events_of_order(db: &PgPool, order_id: Uuid) -> Vec<StoredEvent> {
    let order = order_id.to_string();
    let payment = saga::payment_id_for(order_id).to_string();
    all_events(db)
        .await
        .into_iter()
        .filter(|event| match event.aggregate_type.as_str() {
            "order" => event.aggregate_id == order,
            "payment" => event.aggregate_id == payment,
            _ => event.payload[&event.event_type]["order_id"].as_str() == Some(order.as_str()),
        })
        .collect()
}

/// How many of `events` have type `event_type` (and, for inventory, SKU `sku`).
pub fn count(events: &[StoredEvent], event_type: &str, sku: Option<&str>) -> usize {
    events
        .iter()
        .filter(|event| event.event_type == event_type)
        .filter(|event| sku.is_none_or(|sku| event.aggregate_id == sku))
        .count()
}
