//! Probes, OpenAPI, `/projections`, outages, unknown routes, graceful shutdown.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use query_api::config::DatabaseUrl;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    TestOptions, at, at_json, spawn_app, spawn_app_from_settings, spawn_app_with, test_settings,
};

#[tokio::test]
async fn openapi_documents_every_route() {
    let app = spawn_app().await;

    let response = app.get("/openapi.json").await;

    let document = response.assert_ok();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let paths: BTreeSet<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "/orders/{order_id}",
        "/orders/{order_id}/payments",
        "/customers/{customer_id}/orders",
        "/payments/{payment_id}",
        "/stock",
        "/stock/{sku}",
        "/projections",
        "/audit/streams/{aggregate_type}/{aggregate_id}/events",
        "/audit/streams/{aggregate_type}/{aggregate_id}/state",
        "/audit/streams/{aggregate_type}/{aggregate_id}/verify",
        "/audit/events",
        "/audit/verify",
        "/console/api/overview",
        "/console/api/projections",
        "/console/api/dead-letters",
        "/console/api/sagas",
        "/console/api/sagas/{order_id}",
        "/health/live",
        "/health/ready",
        "/openapi.json",
    ]
    .into_iter()
    .collect();
    // The console's two actions are the only routes that change anything.
    let actions: BTreeSet<&str> = [
        "/console/api/dead-letters/{id}/retry",
        "/console/api/dead-letters/{id}/skip",
    ]
    .into_iter()
    .collect();
    assert_eq!(paths, expected.union(&actions).copied().collect());
    for (routes, method) in [(&expected, "get"), (&actions, "post")] {
        for path in routes {
            let item = &document["paths"][path];
            assert!(item[method].is_object(), "{path} has a {method} operation");
            assert_eq!(
                item.as_object().expect("path item").len(),
                1,
                "{path} is {method} only"
            );
        }
    }
    // Every documented route is served (not the fallback 404).
    for path in &expected {
        let concrete = path
            .replace("{order_id}", &Uuid::nil().to_string())
            .replace("{customer_id}", &Uuid::nil().to_string())
            .replace("{payment_id}", &Uuid::nil().to_string())
            .replace("{sku}", "SKU-1")
            .replace("{aggregate_type}", "order")
            .replace("{aggregate_id}", &Uuid::nil().to_string());
        let served = app.get(&concrete).await;
        assert_ne!(
            served.body["code"], "http.not_found",
            "{concrete}: {}",
            served.text
        );
    }

    let get_order = &document["paths"]["/orders/{order_id}"]["get"];
    let parameters: Vec<&str> = get_order["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(parameters, ["order_id", "min_version"]);
    for status in ["200", "400", "404", "503"] {
        assert!(
            get_order["responses"][status].is_object(),
            "get_order {status}"
        );
    }
    let listing = &document["paths"]["/customers/{customer_id}/orders"]["get"];
    let parameters: Vec<&str> = listing["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(parameters, ["customer_id", "status", "limit", "cursor"]);
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert!(document["components"]["schemas"]["OrderView"].is_object());
    app.finish().await;
}

#[tokio::test]
async fn probes_answer_when_the_read_model_schema_exists() {
    let app = spawn_app().await;

    let live = app.get("/health/live").await;
    assert_eq!(live.assert_ok(), &json!({"status": "ok"}));
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.assert_ok(), &json!({"status": "ok"}));
    assert!(
        ready
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    app.finish().await;
}

#[tokio::test]
async fn not_ready_while_the_read_model_schema_is_missing() {
    let app = spawn_app_with(TestOptions {
        migrate: false,
        ..TestOptions::default()
    })
    .await;

    let ready = app.get("/health/ready").await;
    let body = ready.assert_problem(503, "service.not_ready");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("read_model.checkpoints")),
        "{body}"
    );
    assert_eq!(ready.header("retry-after"), Some("1"));
    assert_eq!(app.get("/health/live").await.status, 200);

    // Queries meanwhile are "try later", not errors of the client or the server.
    let query = app.get(&format!("/orders/{}", Uuid::new_v4())).await;
    query.assert_problem(503, "service.unavailable");
    assert_eq!(query.header("retry-after"), Some("1"));

    // Once the projector has migrated, the same running service becomes ready.
    read_model::migrate(&app.db)
        .await
        .expect("migrations apply");
    assert_eq!(
        app.get("/health/ready").await.assert_ok(),
        &json!({"status": "ok"})
    );
    app.finish().await;
}

#[tokio::test]
async fn database_down_is_503_with_retry_after_and_no_internals() {
    // Nothing listens on port 1: the service starts anyway and answers 503.
    let mut settings = test_settings(Duration::from_millis(500), Duration::from_millis(100));
    settings.database.url = DatabaseUrl::new("postgres://keel:hunter2@127.0.0.1:1/keel");
    settings.database.acquire_timeout = Duration::from_secs(1);
    let app = spawn_app_from_settings(&settings).await;

    let started = Instant::now();
    for path in [
        format!("/orders/{}", Uuid::new_v4()),
        format!("/orders/{}?min_version=2", Uuid::new_v4()),
        "/stock".to_owned(),
        "/projections".to_owned(),
    ] {
        let response = app.get(&path).await;
        let body = response.assert_problem(503, "service.unavailable");
        assert_eq!(response.header("retry-after"), Some("1"), "{path}");
        assert_eq!(
            body["detail"],
            "the read models are unavailable; retry later"
        );
        for secret in ["hunter2", "127.0.0.1", "refused", "connect"] {
            assert!(
                !response.text.contains(secret),
                "{path} leaks {secret}: {}",
                response.text
            );
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let ready = app.get("/health/ready").await;
    ready.assert_problem(503, "service.not_ready");
    app.finish().await;
}

#[tokio::test]
async fn projections_summarise_checkpoints_and_dead_letters() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/projections").await.assert_ok(),
        &json!({"projections": []})
    );
    sqlx::query(
        "INSERT INTO read_model.checkpoints (projection, aggregate_type, aggregate_id, last_sequence, parked_by, updated_at, retry_at) \
         VALUES ('orders', 'order', 'a', 3, NULL, $1, NULL), ('orders', 'inventory', 'SKU-1', 2, NULL, $2, NULL), \
                ('orders', 'payment', 'p', 1, 1, $1, NULL), ('stock', 'inventory', 'SKU-1', 2, NULL, $1, $1)",
    )
    .bind(at(10))
    .bind(at(20))
    .execute(&app.db)
    .await
    .expect("insert checkpoints");
    sqlx::query(
        "INSERT INTO read_model.dead_letters (projection, topic, kafka_partition, kafka_offset, reason, \
             error, attempts, dead_lettered_at, published_at, resolution, resolved_at, resolved_by) \
         VALUES ('orders', 'keel.payment', 0, 7, 'poison', 'bad', 5, $1, $2, NULL, NULL, NULL), \
                ('orders', 'keel.payment', 0, 8, 'parked', 'behind 7', 0, $2, NULL, NULL, NULL, NULL), \
                ('orders', 'keel.payment', 0, 9, 'parked', 'behind 7', 0, $3, NULL, NULL, NULL, NULL), \
                ('payments', 'keel.payment', 1, 3, 'poison', 'bad', 5, $1, NULL, 'skipped', $3, 'ops')",
    )
    .bind(at(30))
    .bind(at(31))
    .bind(at(32))
    .execute(&app.db)
    .await
    .expect("insert dead letters");

    let response = app.get("/projections").await;

    assert_eq!(
        response.assert_ok(),
        &json!({"projections": [
            {
                "projection": "orders", "aggregates": 3, "parked_aggregates": 1,
                "retrying_aggregates": 0, "events_applied": 6,
                "last_checkpoint_at": at_json(20),
                "dead_letters": [
                    {"reason": "parked", "count": 2, "unpublished": 2, "unresolved": 2, "last_dead_lettered_at": at_json(32)},
                    {"reason": "poison", "count": 1, "unpublished": 0, "unresolved": 1, "last_dead_lettered_at": at_json(30)},
                ],
            },
            {
                "projection": "payments", "aggregates": 0, "parked_aggregates": 0,
                "retrying_aggregates": 0, "events_applied": 0,
                "last_checkpoint_at": null,
                "dead_letters": [
                    {"reason": "poison", "count": 1, "unpublished": 1, "unresolved": 0, "last_dead_lettered_at": at_json(30)},
                ],
            },
            {
                "projection": "stock", "aggregates": 1, "parked_aggregates": 0,
                "retrying_aggregates": 1, "events_applied": 2,
                "last_checkpoint_at": at_json(10),
                "dead_letters": [],
            },
        ]})
    );
    app.finish().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;

    app.get("/nope").await.assert_problem(404, "http.not_found");
    let post = app
        .inner()
        .post(app.url("/stock/SKU-1"))
        .send()
        .await
        .expect("request sent");
    assert_eq!(post.status(), 405);
    assert_eq!(
        post.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    app.finish().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_wait_finish() {
    let mut app = spawn_app_with(TestOptions {
        settings: test_settings(Duration::from_secs(1), Duration::from_millis(100)),
        migrate: true,
    })
    .await;
    app.insert_stock("SKU-W", 1, 0, 0, 1).await;
    let request = app
        .inner()
        .get(app.url("/stock/SKU-W?min_version=2"))
        .send();
    let (response, stopped) = tokio::join!(request, async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.stop().await
    });

    stopped.expect("server stopped cleanly");
    let response = response.expect("the in-flight request is answered");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("problem body");
    assert_eq!(body["code"], "not_yet_consistent");
    app.finish().await;
}

#[test]
fn the_channel_is_the_projectors() {
    assert_eq!(
        query_api::changes::CHANGES_CHANNEL,
        projections::checkpoint::CHANGES_CHANNEL
    );
    assert_eq!(
        read_model::orders::PROJECTION,
        projections::Projection::Orders.name()
    );
    assert_eq!(
        read_model::stock::PROJECTION,
        projections::Projection::Stock.name()
    );
    assert_eq!(
        read_model::payments::PROJECTION,
        projections::Projection::Payments.name()
    );
}
