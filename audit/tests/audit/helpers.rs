//! `spawn_stack`: the real command API and the real query API on port 0 over one freshly
//! created database (migrated by the command API, hash chain included), so events are
//! written the real way and read back through the audit routes.

use std::time::Duration;

use command_api::startup::Dependencies;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Executor, PgPool};
use test_support::ScratchDatabase;
pub use test_support::http::TestResponse;
use test_support::http::{Client, Servers};
use uuid::Uuid;

pub struct Stack {
    /// The command API.
    pub commands: Client,
    /// The query API.
    pub queries: Client,
    /// For direct SQL (tampering, assertions), separate from the applications' pools.
    pub db: PgPool,
    /// The test database's URL, for the CLI.
    pub database_url: String,
    database: ScratchDatabase,
    servers: Servers,
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(StackOptions::default()).await
}

/// What a test changes in the stack: personal data needs a master key; the auditor/other
/// distinction needs tokens on the query API.
#[derive(Default)]
pub struct StackOptions {
    /// Master key of both APIs (ADR 0009).
    pub keyring: Option<std::sync::Arc<audit::personal_data::Keyring>>,
    /// Authentication of the query API (the command API stays open).
    pub query_auth: Option<ops::auth::AuthSettings>,
}

pub async fn spawn_stack_with(options: StackOptions) -> Stack {
    let database = ScratchDatabase::create("keel_audit_test")
        .await
        .expect("scratch database");

    let mut command_settings = command_api::config::Settings::default();
    command_settings.http.addr = "127.0.0.1:0".parse().expect("address");
    command_settings.http.shutdown_grace = Duration::from_secs(10);
    command_settings.database.max_connections = 4;
    command_settings.keyring = options.keyring.clone();
    // Migrates the event store, hash chain included.
    let command_app = command_api::startup::Application::build_with_pool(
        &command_settings,
        database.pool(4).await.expect("connect command pool"),
        Dependencies::from_settings(&command_settings),
    )
    .await
    .expect("command API builds");

    let mut query_settings = query_api::config::Settings::default();
    query_settings.http.addr = "127.0.0.1:0".parse().expect("address");
    query_settings.http.shutdown_grace = Duration::from_secs(10);
    query_settings.keyring = options.keyring;
    if let Some(auth) = options.query_auth {
        query_settings.http.auth = auth;
    }
    let query_app = query_api::startup::Application::build_with_pool(
        &query_settings,
        database.pool(4).await.expect("connect query pool"),
    )
    .await
    .expect("query API builds");

    let commands = Client::new(command_app.local_addr());
    let queries = Client::new(query_app.local_addr());
    let mut servers = Servers::default();
    servers.spawn(|shutdown| command_app.run_until_stopped(shutdown));
    servers.spawn(|shutdown| query_app.run_until_stopped(shutdown));
    Stack {
        commands,
        queries,
        db: database.pool(3).await.expect("connect test pool"),
        database_url: database.url().to_owned(),
        database,
        servers,
    }
}

impl Stack {
    /// A POST command that must succeed; returns its body.
    pub async fn post_ok(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Value {
        self.commands
            .send(Method::POST, path, body, headers)
            .await
            .assert_success()
            .clone()
    }

    /// A GET on the query API.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.queries.get(path).await
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
        self.servers.stop().await.expect("servers stopped cleanly");
        self.db.close().await;
        self.database.drop_database().await;
    }
}
