//! `spawn_stack`: the real command API and the real query API on port 0 over one freshly
//! created database (migrated by the command API, hash chain included), so events are
//! written the real way and read back through the audit routes.

use std::str::FromStr;
use std::time::Duration;

use command_api::startup::Dependencies;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .or_else(|_| std::env::var("KEEL_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://keel:keel@127.0.0.1:5432/keel".to_owned())
}

/// `url` with its database name replaced by `db_name` (query parameters kept).
fn url_of_database(url: &str, db_name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL has a database path");
    match query {
        Some(query) => format!("{server}/{db_name}?{query}"),
        None => format!("{server}/{db_name}"),
    }
}

pub struct Stack {
    pub commands: String,
    pub queries: String,
    pub client: reqwest::Client,
    /// For direct SQL (tampering, assertions), separate from the applications' pools.
    pub db: PgPool,
    /// The test database's URL, for the CLI.
    pub database_url: String,
    db_name: String,
    admin: PgConnectOptions,
    stop: CancellationToken,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_stack() -> Stack {
    let url = database_url();
    let admin = PgConnectOptions::from_str(&url).expect("DATABASE_URL parses");
    let db_name = format!("keel_audit_test_{}", Uuid::new_v4().simple());
    let mut connection = PgConnection::connect_with(&admin)
        .await
        .expect("PostgreSQL is reachable (is the stack up? `cargo xtask up`)");
    connection
        .execute(format!(r#"CREATE DATABASE "{db_name}""#).as_str())
        .await
        .expect("create test database");
    connection.close().await.ok();
    let test_db = admin.clone().database(&db_name);
    let pool = |size| {
        PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(test_db.clone())
    };

    let mut command_settings = command_api::config::Settings::default();
    command_settings.http.addr = "127.0.0.1:0".parse().expect("address");
    command_settings.http.shutdown_grace = Duration::from_secs(10);
    command_settings.database.max_connections = 4;
    // Migrates the event store, hash chain included.
    let command_app = command_api::startup::Application::build_with_pool(
        &command_settings,
        pool(4).await.expect("connect command pool"),
        Dependencies::from_settings(&command_settings),
    )
    .await
    .expect("command API builds");

    let mut query_settings = query_api::config::Settings::default();
    query_settings.http.addr = "127.0.0.1:0".parse().expect("address");
    query_settings.http.shutdown_grace = Duration::from_secs(10);
    let query_app = query_api::startup::Application::build_with_pool(
        &query_settings,
        pool(4).await.expect("connect query pool"),
    )
    .await
    .expect("query API builds");

    let stop = CancellationToken::new();
    let commands = format!("http://{}", command_app.local_addr());
    let queries = format!("http://{}", query_app.local_addr());
    let servers = vec![
        tokio::spawn(command_app.run_until_stopped(stop.clone().cancelled_owned())),
        tokio::spawn(query_app.run_until_stopped(stop.clone().cancelled_owned())),
    ];
    Stack {
        commands,
        queries,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client"),
        db: pool(3).await.expect("connect test pool"),
        database_url: url_of_database(&url, &db_name),
        db_name,
        admin,
        stop,
        servers,
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

    /// Asserts a 2xx command answer and returns its body.
    #[track_caller]
    pub fn assert_accepted(&self) -> &Value {
        assert!(self.status.is_success(), "status; body: {}", self.text);
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
        body
    }
}

impl Stack {
    /// A command to the command API with extra headers.
    pub async fn command(
        &self,
        method: Method,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.commands));
        if !body.is_null() {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.expect("command sent")).await
    }

    /// A POST command that must succeed; returns its body.
    pub async fn post_ok(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Value {
        self.command(Method::POST, path, body, headers)
            .await
            .assert_accepted()
            .clone()
    }

    /// A GET on the query API.
    pub async fn get(&self, path: &str) -> TestResponse {
        let response = self
            .client
            .get(format!("{}{path}", self.queries))
            .send()
            .await
            .expect("query sent");
        read(response).await
    }

    /// Every item of a paged listing, following `next_cursor` (`path` has a query string).
    pub async fn all_pages(&self, path: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut next = path.to_owned();
        loop {
            let body = self.get(&next).await.assert_ok().clone();
            pages += 1;
            items.extend(body["items"].as_array().expect("items").iter().cloned());
            match &body["next_cursor"] {
                Value::String(cursor) => next = format!("{path}&cursor={cursor}"),
                Value::Null => return (items, pages),
                other => panic!("next_cursor {other}"),
            }
        }
    }

    /// Waits (bounded) until the global log shows `count` events: it only shows an event
    /// once every older transaction of the cluster has finished, and other tests' writers
    /// share the cluster.
    pub async fn wait_for_log(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let body = self
                .get("/audit/events?limit=200")
                .await
                .assert_ok()
                .clone();
            let seen = body["items"].as_array().expect("items").len();
            if seen >= count {
                assert_eq!(seen, count, "{body}");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the global log shows {seen} of {count} events"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates an order with `headers`, returns its id.
    pub async fn create_order(&self, headers: &[(&str, &str)]) -> String {
        let body = self
            .post_ok(
                "/orders",
                json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
                headers,
            )
            .await;
        body["aggregate_id"].as_str().expect("order id").to_owned()
    }

    /// Adds a line of `quantity` × 12.50 EUR.
    pub async fn add_line(&self, order_id: &str, sku: &str, quantity: u32) -> Value {
        self.post_ok(
            &format!("/orders/{order_id}/lines"),
            json!({"sku": sku, "quantity": quantity, "unit_price": {"amount_minor": 1250, "currency": "EUR"}}),
            &[],
        )
        .await
    }

    /// Disables every user trigger (the append-only guard included), runs `sql`, re-enables
    /// them: what someone with the table owner's rights could do.
    pub async fn tamper(&self, sql: &str) {
        let mut tx = self.db.begin().await.expect("begin");
        tx.execute("ALTER TABLE events DISABLE TRIGGER USER")
            .await
            .expect("disable triggers");
        let done = tx.execute(sql).await.expect("tamper");
        assert_eq!(done.rows_affected(), 1, "{sql}");
        tx.execute("ALTER TABLE events ENABLE TRIGGER USER")
            .await
            .expect("enable triggers");
        tx.commit().await.expect("commit");
    }

    /// Stops both servers and drops the test database (best effort). A failed test leaves
    /// its database behind for inspection.
    pub async fn finish(mut self) {
        self.stop.cancel();
        for server in self.servers.drain(..) {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server stopped cleanly");
        }
        self.db.close().await;
        if let Ok(mut connection) = PgConnection::connect_with(&self.admin).await {
            let drop = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.db_name);
            if let Err(error) = connection.execute(drop.as_str()).await {
                eprintln!("cannot drop test database {}: {error}", self.db_name);
            }
            connection.close().await.ok();
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
