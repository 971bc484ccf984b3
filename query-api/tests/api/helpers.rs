//! `spawn_app`: the real application on port 0 over its own, freshly created database, and
//! helpers that write read-model rows the way the projectors do.

use std::collections::HashMap;
use std::ops::Deref;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use projections::checkpoint;
use projections::event::AggregateKey;
use query_api::config::Settings;
use query_api::startup::Application;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use test_support::http::{Client, Servers};
use test_support::{ScratchDatabase, Stack};
use uuid::Uuid;

/// Base time of every row in tests.
pub const T0_MICROS: i64 = 1_714_564_800_123_456;

/// `T0` plus `seconds`.
pub fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(T0_MICROS + seconds * 1_000_000).expect("valid timestamp")
}

/// How `at(seconds)` serializes.
pub fn at_json(seconds: i64) -> String {
    at(seconds).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Settings for tests: port 0, a short drain, the given read-your-writes timings.
pub fn test_settings(read_wait: Duration, recheck: Duration) -> Settings {
    let mut settings = Settings::default();
    settings.http.addr = "127.0.0.1:0".parse().expect("address");
    settings.http.shutdown_grace = Duration::from_secs(10);
    settings.database.max_connections = 8;
    settings.read_wait.timeout = read_wait;
    settings.read_wait.recheck_interval = recheck;
    settings
}

/// How a test wants its application built.
pub struct TestOptions {
    pub settings: Settings,
    /// Apply the read-model migrations (as the projector would have).
    pub migrate: bool,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            settings: test_settings(Duration::from_secs(2), Duration::from_millis(100)),
            migrate: true,
        }
    }
}

/// The application on port 0, over a scratch database of its own unless built from
/// settings alone. It derefs to the HTTP client bound to its address.
pub struct TestApp {
    http: Client,
    /// For writing read-model rows, separate from the application's pool.
    pub db: PgPool,
    database: Option<ScratchDatabase>,
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
    let database = ScratchDatabase::create("keel_query_test")
        .await
        .expect("scratch database");
    let db = database.pool(3).await.expect("connect test pool");
    if options.migrate {
        read_model::migrate(&db)
            .await
            .expect("read-model migrations apply");
    }
    let app_pool = database
        .pool(options.settings.database.max_connections)
        .await
        .expect("connect application pool");
    let application = Application::build_with_pool(&options.settings, app_pool)
        .await
        .expect("application builds");
    start(application, db, Some(database))
}

/// The application built by `Application::build` from `settings` alone (no test database).
pub async fn spawn_app_from_settings(settings: &Settings) -> TestApp {
    let application = Application::build(settings)
        .await
        .expect("application builds without its database");
    let admin = PgConnectOptions::from_str(&Stack::from_env().database_url)
        .expect("KEEL_DATABASE_URL parses");
    let db = PgPoolOptions::new().connect_lazy_with(admin);
    start(application, db, None)
}

fn start(application: Application, db: PgPool, database: Option<ScratchDatabase>) -> TestApp {
    let http = Client::new(application.local_addr());
    let mut servers = Servers::default();
    servers.spawn(|shutdown| application.run_until_stopped(shutdown));
    TestApp {
        http,
        db,
        database,
        servers,
    }
}

impl TestApp {
    /// Signals shutdown and waits for the server to stop, bounded.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.servers.stop().await
    }

    /// Stops the server and drops the test database (best effort). Call at the end of every
    /// test; a failed test leaves its database behind for inspection.
    pub async fn finish(mut self) {
        self.stop().await.expect("server stopped cleanly");
        self.db.close().await;
        if let Some(database) = self.database.take() {
            database.drop_database().await;
        }
    }

    /// What a projector does after applying events: notify `<projection>:<type>:<seq>:<id>`
    /// with the projector's own function, delivered on commit.
    pub async fn notify_with(
        db: &PgPool,
        projection: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
    ) {
        let mut tx = db.begin().await.expect("begin");
        let advanced = HashMap::from([(
            AggregateKey {
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
            },
            sequence,
        )]);
        checkpoint::notify(&mut tx, projection, &advanced)
            .await
            .expect("notify");
        tx.commit().await.expect("commit");
    }

    /// An order view row (no lines).
    pub async fn insert_order(&self, order: &OrderRow) {
        sqlx::query(
            "INSERT INTO read_model.order_view (order_id, customer_id, status, currency, \
                 total_minor, line_count, created_at, updated_at, version) \
             VALUES ($1, $2, $3, 'EUR', $4, $5, $6, $6, $7)",
        )
        .bind(order.order_id)
        .bind(order.customer_id)
        .bind(order.status)
        .bind(order.total_minor)
        .bind(order.line_count)
        .bind(order.created_at)
        .bind(order.version)
        .execute(&self.db)
        .await
        .expect("insert order_view");
    }

    /// A `customer_orders` row.
    pub async fn insert_customer_order(&self, order: &OrderRow) {
        sqlx::query(
            "INSERT INTO read_model.customer_orders (order_id, customer_id, status, currency, \
                 total_minor, line_count, created_at, updated_at, version) \
             VALUES ($1, $2, $3, 'EUR', $4, $5, $6, $6, $7)",
        )
        .bind(order.order_id)
        .bind(order.customer_id)
        .bind(order.status)
        .bind(order.total_minor)
        .bind(order.line_count)
        .bind(order.created_at)
        .bind(order.version)
        .execute(&self.db)
        .await
        .expect("insert customer_orders");
    }

    /// A `stock_levels` row created at `T0` and updated at `at(updated)`.
    pub async fn insert_stock(
        &self,
        sku: &str,
        on_hand: i64,
        reserved: i64,
        updated: i64,
        version: i64,
    ) {
        sqlx::query(
            "INSERT INTO read_model.stock_levels (sku, on_hand, reserved, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(sku)
        .bind(on_hand)
        .bind(reserved)
        .bind(at(0))
        .bind(at(updated))
        .bind(version)
        .execute(&self.db)
        .await
        .expect("insert stock_levels");
    }

    /// A `payments` row: authorized `amount_minor` EUR at `at(created)`, version 1.
    pub async fn insert_payment(
        &self,
        payment_id: Uuid,
        order_id: Uuid,
        amount_minor: i64,
        created: i64,
    ) {
        sqlx::query(
            "INSERT INTO read_model.payments (payment_id, order_id, status, currency, amount_minor, \
                 authorization_code, created_at, updated_at, version) \
             VALUES ($1, $2, 'authorized', 'EUR', $3, 'AUTH-1', $4, $4, 1)",
        )
        .bind(payment_id)
        .bind(order_id)
        .bind(amount_minor)
        .bind(at(created))
        .execute(&self.db)
        .await
        .expect("insert payments");
    }
}

/// The columns a test chooses for an order row.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub status: &'static str,
    pub total_minor: i64,
    pub line_count: i32,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

impl OrderRow {
    pub fn new(customer_id: Uuid, created: i64) -> Self {
        Self {
            order_id: Uuid::new_v4(),
            customer_id,
            status: "placed",
            total_minor: 2500,
            line_count: 1,
            created_at: at(created),
            version: 3,
        }
    }
}
