//! `spawn_app`: the real application on port 0 over its own, freshly created database.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::payment::{PaymentGateway, SimulatedPaymentGateway};
use chrono::{DateTime, Utc};
use command_api::config::Settings;
use command_api::startup::{Application, Dependencies};
use command_api::store::AppendHook;
use ops::clock::FixedClock;
use ops::ids::SequentialIds;
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use test_support::ScratchDatabase;
pub use test_support::http::TestResponse;
use test_support::http::{Client, Servers};
use tokio::sync::{Barrier, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// `occurred_at` of every event in tests.
pub const NOW_MICROS: i64 = 1_714_564_800_123_456;
pub const NOW_RFC3339: &str = "2024-05-01T12:00:00.123456Z";

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(NOW_MICROS).expect("valid timestamp")
}

/// How a test wants its application built.
pub struct TestOptions {
    pub settings: Settings,
    pub gateway: Arc<dyn PaymentGateway>,
    pub append_hook: Option<Arc<dyn AppendHook>>,
}

impl Default for TestOptions {
    fn default() -> Self {
        let mut settings = Settings::default();
        settings.http.addr = "127.0.0.1:0".parse().expect("address");
        settings.http.shutdown_grace = Duration::from_secs(10);
        settings.database.max_connections = 8;
        Self {
            settings,
            gateway: Arc::new(SimulatedPaymentGateway::new()),
            append_hook: None,
        }
    }
}

impl TestOptions {
    /// Commands on one aggregate that race as if sent to two command-API processes: the
    /// gate lines them up at the append, and the process does not make them take turns
    /// (turns would serialize the race away: ADR 0010).
    pub fn racing(gate: Arc<RaceGate>) -> Self {
        let mut options = Self {
            append_hook: Some(gate),
            ..Self::default()
        };
        options.settings.event_store.aggregate_cache_entries = 0;
        options
    }
}

/// The application on port 0 over a scratch database of its own. It derefs to the HTTP
/// client bound to its address (`app.post(..)`, `app.get(..)`, `app.url(..)`).
pub struct TestApp {
    http: Client,
    /// For assertions on the database, separate from the application's pool.
    pub db: PgPool,
    database: ScratchDatabase,
    servers: Servers,
}

impl Deref for TestApp {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.http
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(options: TestOptions) -> TestApp {
    let database = ScratchDatabase::create("keel_cmd_test")
        .await
        .expect("scratch database");
    let app_pool = database
        .pool(options.settings.database.max_connections)
        .await
        .expect("connect application pool");
    let dependencies = Dependencies {
        clock: Arc::new(FixedClock(now())),
        ids: Arc::new(SequentialIds::new(0x7e57)),
        payment_gateway: options.gateway,
        append_hook: options.append_hook,
    };
    let application = Application::build_with_pool(&options.settings, app_pool, dependencies)
        .await
        .expect("application builds");
    let http = Client::new(application.local_addr());
    let mut servers = Servers::default();
    servers.spawn(|shutdown| application.run_until_stopped(shutdown));
    TestApp {
        http,
        db: database.pool(3).await.expect("connect assertion pool"),
        database,
        servers,
    }
}

/// One row of `events`.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub sequence: i64,
    pub event_type: String,
    pub event_id: Uuid,
    pub payload: Value,
    pub metadata: Value,
}

impl TestApp {
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db)
            .await
            .expect("count events")
    }

    pub async fn idempotency_key_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
            .fetch_one(&self.db)
            .await
            .expect("count idempotency keys")
    }

    pub async fn events_of(&self, aggregate_type: &str, aggregate_id: &str) -> Vec<StoredEvent> {
        sqlx::query(
            "SELECT sequence, event_type, event_id, payload::jsonb AS payload,
                    metadata::jsonb AS metadata
               FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(&self.db)
        .await
        .expect("read events")
        .into_iter()
        .map(|row| StoredEvent {
            sequence: row.get("sequence"),
            event_type: row.get("event_type"),
            event_id: row.get("event_id"),
            payload: row.get("payload"),
            metadata: row.get("metadata"),
        })
        .collect()
    }

    /// A new draft order in EUR; returns its id.
    pub async fn create_order(&self) -> String {
        let response = self
            .post(
                "/orders",
                json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
            )
            .await;
        response.assert_accepted(201, 1);
        response.body["aggregate_id"]
            .as_str()
            .expect("order id")
            .to_owned()
    }

    /// A new order with one line (version 2).
    pub async fn order_with_line(&self, sku: &str) -> String {
        let order_id = self.create_order().await;
        self.post(
            &format!("/orders/{order_id}/lines"),
            json!({"sku": sku, "quantity": 2, "unit_price": {"amount_minor": 1250, "currency": "EUR"}}),
        )
        .await
        .assert_accepted(201, 2);
        order_id
    }

    /// Receives `quantity` units of `sku`.
    pub async fn add_stock(&self, sku: &str, quantity: u32) -> TestResponse {
        self.post(
            &format!("/inventory/{sku}/stock"),
            json!({"quantity": quantity}),
        )
        .await
    }

    /// An authorized payment of 50.00 EUR; returns its id.
    pub async fn authorized_payment(&self) -> String {
        let response = self
            .post(
                "/payments",
                json!({"order_id": Uuid::new_v4(), "amount": {"amount_minor": 5000, "currency": "EUR"}, "payment_method": "tok_visa"}),
            )
            .await;
        response.assert_accepted(201, 1);
        assert_eq!(response.event_types(), ["PaymentAuthorized"]);
        response.body["aggregate_id"]
            .as_str()
            .expect("payment id")
            .to_owned()
    }

    /// Signals shutdown and waits for the server to stop, bounded.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.servers.stop().await
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.servers.stop_token()
    }

    pub fn take_server(&mut self) -> Option<JoinHandle<std::io::Result<()>>> {
        self.servers.take_first()
    }

    /// Stops the server and drops the test database. Call at the end of every test; a
    /// failed test leaves its database behind for inspection.
    pub async fn finish(mut self) {
        self.stop().await.expect("server stopped cleanly");
        self.db.close().await;
        self.drop_database().await;
    }

    pub async fn drop_database(&self) {
        self.database.drop_database().await;
    }
}

/// Holds the first `parties` commands that reach the append for one aggregate until all of
/// them are there, so they all decide on the same version and then race to append.
#[derive(Debug, Default)]
pub struct RaceGate {
    armed: Mutex<Option<(String, Arc<Barrier>)>>,
}

impl RaceGate {
    pub fn arm(&self, aggregate_id: &str, parties: usize) {
        *self.armed.lock().expect("gate lock") =
            Some((aggregate_id.to_owned(), Arc::new(Barrier::new(parties))));
    }
}

impl AppendHook for RaceGate {
    fn before_append<'a>(
        &'a self,
        _aggregate_type: &'static str,
        aggregate_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let barrier = self
                .armed
                .lock()
                .expect("gate lock")
                .as_ref()
                .filter(|(id, _)| id == aggregate_id)
                .map(|(_, barrier)| Arc::clone(barrier));
            if let Some(barrier) = barrier
                && barrier.wait().await.is_leader()
            {
                *self.armed.lock().expect("gate lock") = None;
            }
        })
    }
}

/// Holds every command at the append while armed, until released.
#[derive(Debug, Default)]
pub struct HoldGate {
    armed: AtomicBool,
    pub entered: Notify,
    release: Notify,
    released: AtomicBool,
}

impl HoldGate {
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.release.notify_waiters();
    }
}

impl AppendHook for HoldGate {
    fn before_append<'a>(
        &'a self,
        _aggregate_type: &'static str,
        _aggregate_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if !self.armed.load(Ordering::SeqCst) {
                return;
            }
            let released = self.release.notified();
            self.entered.notify_one();
            if !self.released.load(Ordering::SeqCst) {
                released.await;
            }
        })
    }
}
