//! Probes, the OpenAPI document, infrastructure failures and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{HoldGate, TestOptions, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_and_readiness() {
    let app = spawn_app().await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status, 200);
    assert_eq!(live.body, json!({"status": "ok"}));
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_command() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    let doc = &response.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let expected = [
        ("/orders", "post"),
        ("/orders/{order_id}/lines", "post"),
        ("/orders/{order_id}/lines/{sku}", "patch"),
        ("/orders/{order_id}/lines/{sku}", "delete"),
        ("/orders/{order_id}/place", "post"),
        ("/orders/{order_id}/confirm", "post"),
        ("/orders/{order_id}/cancel", "post"),
        ("/orders/{order_id}/ship", "post"),
        ("/orders/{order_id}/deliver", "post"),
        ("/payments", "post"),
        ("/payments/{payment_id}/capture", "post"),
        ("/payments/{payment_id}/void", "post"),
        ("/payments/{payment_id}/refunds", "post"),
        ("/inventory/{sku}/stock", "post"),
        ("/inventory/{sku}/adjustments", "post"),
        ("/inventory/{sku}/reservations", "post"),
        ("/inventory/{sku}/reservations/{order_id}/release", "post"),
        ("/inventory/{sku}/reservations/{order_id}/commit", "post"),
        ("/customers/{customer_id}/forget", "post"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "{}",
        serde_json::to_string_pretty(&doc["paths"]).unwrap()
    );
    for (path, method) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        if method != "get" {
            let headers: Vec<&str> = operation["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "header")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for header in ["If-Match", "Idempotency-Key", "X-Correlation-Id", "X-Actor"] {
                assert!(
                    headers.contains(&header),
                    "{method} {path} documents {header}"
                );
            }
            for status in ["400", "404", "409", "412", "422", "503"] {
                assert_eq!(
                    operation["responses"][status]["content"]["application/problem+json"]["schema"]
                        ["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} documents {status}"
                );
            }
        }
    }
    for schema in [
        "Problem",
        "CommandResult",
        "CreateOrderRequest",
        "MoneyBody",
        "ReserveStockRequest",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_database_is_gone_commands_and_readiness_are_503_without_details() {
    let mut options = TestOptions::default();
    options.settings.database.max_connections = 2;
    let app = spawn_app_with(options).await;
    app.add_stock("SKU-1", 1).await.assert_accepted(200, 1);
    app.db.close().await;
    app.drop_database().await;

    let command = app.add_stock("SKU-1", 1).await;
    let problem = command.assert_problem(503, "service.unavailable");
    assert_eq!(command.header("retry-after"), Some("1"));
    assert!(
        problem["detail"].as_str().unwrap().contains("retry later"),
        "{problem}"
    );
    assert!(
        !command.text.contains("keel_cmd_test"),
        "no internals: {}",
        command.text
    );

    let ready = app.get("/health/ready").await;
    ready.assert_problem(503, "service.not_ready");
    assert_eq!(ready.header("retry-after"), Some("1"));
    let live = app.get("/health/live").await;
    assert_eq!(live.status, 200, "liveness does not depend on the database");

    let mut app = app;
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_drains_in_flight_requests() {
    let gate = Arc::new(HoldGate::default());
    let mut app = spawn_app_with(TestOptions {
        append_hook: Some(gate.clone()),
        ..TestOptions::default()
    })
    .await;
    gate.arm();

    let client = app.inner().clone();
    let url = app.url("/inventory/SKU-1/stock");
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .header("content-type", "application/json")
            .body(r#"{"quantity": 5}"#)
            .send()
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), gate.entered.notified())
        .await
        .expect("the request reached the append");

    let server = app.take_server().expect("server running");
    app.stop_token().cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.is_finished(),
        "the server waits for the in-flight request"
    );

    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(
        fresh.get(app.url("/health/live")).send().await.is_err(),
        "no new connections are accepted after the signal"
    );

    gate.release();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops once drained")
        .unwrap()
        .expect("clean stop");
    assert_eq!(
        app.event_count().await,
        1,
        "the drained command was recorded"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_requests_that_outlive_the_grace_period() {
    let gate = Arc::new(HoldGate::default());
    let mut options = TestOptions {
        append_hook: Some(gate.clone()),
        ..TestOptions::default()
    };
    options.settings.http.shutdown_grace = Duration::from_millis(300);
    let mut app = spawn_app_with(options).await;
    gate.arm();

    let client = app.inner().clone();
    let url = app.url("/inventory/SKU-1/stock");
    let _stuck = tokio::spawn(async move {
        client
            .post(url)
            .header("content-type", "application/json")
            .body(r#"{"quantity": 5}"#)
            .send()
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), gate.entered.notified())
        .await
        .expect("the request reached the append");

    let started = std::time::Instant::now();
    app.stop()
        .await
        .expect("stop returns after the grace period");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    gate.release();
    app.finish().await;
}
