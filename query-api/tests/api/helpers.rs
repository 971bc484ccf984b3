//! `spawn_app`: the real application on port 0 over its own, freshly created database, and
//! helpers that write read-model rows the way the projectors do.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use projections::checkpoint;
use projections::event::AggregateKey;
use query_api::config::Settings;
use query_api::startup::Application;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
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

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .or_else(|_| std::env::var("KEEL_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://keel:keel@127.0.0.1:5432/keel".to_owned())
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

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// For writing read-model rows, separate from the application's pool.
    pub db: PgPool,
    db_name: Option<String>,
    admin: PgConnectOptions,
    stop: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(options: TestOptions) -> TestApp {
    let admin = PgConnectOptions::from_str(&database_url()).expect("DATABASE_URL parses");
    let db_name = format!("keel_query_test_{}", Uuid::new_v4().simple());
    let mut connection = PgConnection::connect_with(&admin)
        .await
        .expect("PostgreSQL is reachable (is the stack up? `cargo xtask up`)");
    connection
        .execute(format!(r#"CREATE DATABASE "{db_name}""#).as_str())
        .await
        .expect("create test database");
    connection.close().await.ok();

    let test_db = admin.clone().database(&db_name);
    let db = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(test_db.clone())
        .await
        .expect("connect test pool");
    if options.migrate {
        projections::db::migrate(&db)
            .await
            .expect("read-model migrations apply");
    }
    let app_pool = PgPoolOptions::new()
        .max_connections(options.settings.database.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(test_db)
        .await
        .expect("connect application pool");
    let application = Application::build_with_pool(&options.settings, app_pool)
        .await
        .expect("application builds");
    start(application, db, Some(db_name), admin)
}

/// The application built by `Application::build` from `settings` alone (no test database).
pub async fn spawn_app_from_settings(settings: &Settings) -> TestApp {
    let application = Application::build(settings)
        .await
        .expect("application builds without its database");
    let admin = PgConnectOptions::from_str(&database_url()).expect("DATABASE_URL parses");
    let db = PgPoolOptions::new().connect_lazy_with(admin.clone());
    start(application, db, None, admin)
}

fn start(
    application: Application,
    db: PgPool,
    db_name: Option<String>,
    admin: PgConnectOptions,
) -> TestApp {
    let address = format!("http://{}", application.local_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(application.run_until_stopped(stop.clone().cancelled_owned()));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client"),
        db,
        db_name,
        admin,
        stop,
        server: Some(server),
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a 200 JSON answer and returns its body.
    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "status; body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text
        );
        &self.body
    }

    /// Asserts a problem+json answer with `status` and `code`, and returns its body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type; body: {}",
            self.text
        );
        let body = &self.body;
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:keel:problem:")),
            "{body}"
        );
        assert!(
            body["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        body
    }

    /// Asserts a 400 naming `parameter`, and returns its body.
    #[track_caller]
    pub fn assert_bad_parameter(&self, code: &str, parameter: &str) -> &Value {
        let body = self.assert_problem(400, code);
        assert_eq!(body["parameter"], parameter, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("{parameter}: "))),
            "{body}"
        );
        body
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut request = self.client.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// Signals shutdown and waits for the server to stop, bounded.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        self.stop.cancel();
        match self.server.take() {
            Some(server) => tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("server stops in time")
                .expect("server task"),
            None => Ok(()),
        }
    }

    /// Stops the server and drops the test database (best effort). Call at the end of every
    /// test; a failed test leaves its database behind for inspection.
    pub async fn finish(mut self) {
        self.stop().await.expect("server stopped cleanly");
        self.db.close().await;
        let Some(db_name) = self.db_name.take() else {
            return;
        };
        if let Ok(mut connection) = PgConnection::connect_with(&self.admin).await {
            let drop = format!(r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#);
            if let Err(error) = connection.execute(drop.as_str()).await {
                eprintln!("cannot drop test database {db_name}: {error}");
            }
            connection.close().await.ok();
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

async fn read(response: reqwest::Response) -> TestResponse {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    TestResponse {
        status,
        headers,
        body,
        text,
    }
}
