//! Bad input gets a clear 4xx problem document and changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestOptions, spawn_app, spawn_app_with};

async fn raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> crate::helpers::TestResponse {
    let mut request = app.inner().post(app.url(path)).body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    crate::helpers::TestResponse::read(request.send().await.expect("request is sent")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for body in [
        "{\"quantity\": ",
        "{quantity: 1}",
        "{\"quantity\": 1} trailing",
        "'single'",
    ] {
        let response = raw(
            &app,
            "/inventory/SKU-1/stock",
            Some("application/json"),
            body,
        )
        .await;
        response.assert_problem(400, "request.malformed_json");
    }
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_wrong_types_and_missing_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let order_id = app.create_order().await;
    let lines = format!("/orders/{order_id}/lines");
    let cases = [
        (
            json!({"sku": "S", "quantity": 1, "unit_price": {"amount_minor": 1, "currency": "EUR"}, "colour": "red"}),
            "/colour",
            "unknown field",
        ),
        (
            json!({"sku": "S", "quantity": "three", "unit_price": {"amount_minor": 1, "currency": "EUR"}}),
            "/quantity",
            "invalid type",
        ),
        (
            json!({"sku": "S", "unit_price": {"amount_minor": 1, "currency": "EUR"}}),
            "/quantity",
            "missing field",
        ),
        (
            json!({"sku": "S", "quantity": 1, "unit_price": {"amount_minor": 1.5, "currency": "EUR"}}),
            "/unit_price/amount_minor",
            "invalid type",
        ),
        (
            json!({"sku": "S", "quantity": 1, "unit_price": {"amount_minor": 1, "currency": "eur"}}),
            "/unit_price/currency",
            "currency",
        ),
        (
            json!({"sku": "not a sku!", "quantity": 1, "unit_price": {"amount_minor": 1, "currency": "EUR"}}),
            "/sku",
            "SKU",
        ),
        (
            json!({"sku": "S", "quantity": 1, "unit_price": {"amount_minor": 1, "currency": "EUR", "scale": 2}}),
            "/unit_price/scale",
            "unknown field",
        ),
        (json!([1, 2]), "", "expected a JSON object"),
        (json!("text"), "", "expected a JSON object"),
    ];
    for (body, pointer, detail) in cases {
        let response = app.post(&lines, body.clone()).await;
        let problem = response.assert_problem(422, "request.invalid_body");
        let error = &problem["errors"][0];
        assert_eq!(error["pointer"], pointer, "{body} → {problem}");
        assert!(
            error["detail"].as_str().unwrap().contains(detail),
            "{body} → {problem}"
        );
    }
    assert_eq!(app.event_count().await, 1, "only the order's creation");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_and_zero_quantities_are_422() {
    let app = spawn_app().await;
    let negative = app.add_stock_raw(json!({"quantity": -3})).await;
    let problem = negative.assert_problem(422, "request.invalid_body");
    assert_eq!(problem["errors"][0]["pointer"], "/quantity");

    let zero = app.add_stock_raw(json!({"quantity": 0})).await;
    zero.assert_problem(422, "inventory.invalid_quantity");

    let huge = app
        .add_stock_raw(json!({"quantity": 4_294_967_296_u64}))
        .await;
    huge.assert_problem(422, "request.invalid_body");

    let order_id = app.create_order().await;
    app.post(
        &format!("/orders/{order_id}/lines"),
        json!({"sku": "S", "quantity": 0, "unit_price": {"amount_minor": 1, "currency": "EUR"}}),
    )
    .await
    .assert_problem(422, "order.invalid_quantity");
    app.post(
        &format!("/orders/{order_id}/lines"),
        json!({"sku": "S", "quantity": 1, "unit_price": {"amount_minor": -1, "currency": "EUR"}}),
    )
    .await
    .assert_problem(422, "order.invalid_unit_price");
    assert_eq!(app.event_count().await, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413() {
    let mut options = TestOptions::default();
    options.settings.http.body_limit_bytes = 1024;
    let app = spawn_app_with(options).await;
    let reason = "x".repeat(4096);
    let response = app
        .post(
            "/inventory/SKU-1/adjustments",
            json!({"delta": 1, "reason": reason}),
        )
        .await;
    response.assert_problem(413, "request.body_too_large");
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let response = raw(
            &app,
            "/inventory/SKU-1/stock",
            content_type,
            "{\"quantity\": 1}",
        )
        .await;
        response.assert_problem(415, "request.unsupported_media_type");
    }
    // `application/*+json` and parameters are fine.
    raw(
        &app,
        "/inventory/SKU-1/stock",
        Some("application/merge-patch+json; charset=utf-8"),
        "{\"quantity\": 1}",
    )
    .await
    .assert_accepted(200, 1);
    assert_eq!(app.event_count().await, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_path_parameters_are_400() {
    let app = spawn_app().await;
    let not_uuid = app.post("/orders/not-a-uuid/place", Value::Null).await;
    let problem = not_uuid.assert_problem(400, "request.invalid_path");
    assert!(
        problem["detail"].as_str().unwrap().contains("not a UUID"),
        "{problem}"
    );
    app.post("/inventory/bad%20sku/stock", json!({"quantity": 1}))
        .await
        .assert_problem(400, "request.invalid_path");
    app.post(
        &format!("/inventory/{}/stock", "A".repeat(65)),
        json!({"quantity": 1}),
    )
    .await
    .assert_problem(400, "request.invalid_path");
    app.post("/inventory/SKU-1/reservations/123/release", Value::Null)
        .await
        .assert_problem(400, "request.invalid_path");
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_headers_are_400() {
    let app = spawn_app().await;
    let body = json!({"quantity": 1});
    for (name, value) in [
        ("X-Correlation-Id", "not-a-uuid"),
        ("X-Causation-Id", "nope"),
        ("If-Match", "3"),
        ("X-Actor", ""),
    ] {
        let response = app
            .post_with("/inventory/SKU-1/stock", body.clone(), &[(name, value)])
            .await;
        let problem = response.assert_problem(400, "request.invalid_header");
        assert!(
            problem["detail"].as_str().unwrap().contains(name),
            "{problem}"
        );
        assert!(response.header("x-correlation-id").is_some());
    }
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_problem_documents() {
    let app = spawn_app().await;
    app.get("/nowhere")
        .await
        .assert_problem(404, "http.not_found");
    app.post(
        "/orders/00000000-0000-0000-0000-000000000001/teleport",
        Value::Null,
    )
    .await
    .assert_problem(404, "http.not_found");
    app.get("/orders")
        .await
        .assert_problem(405, "http.method_not_allowed");
    app.send(
        Method::PUT,
        "/inventory/SKU-1/stock",
        json!({"quantity": 1}),
        &[],
    )
    .await
    .assert_problem(405, "http.method_not_allowed");
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}

impl TestApp {
    async fn add_stock_raw(&self, body: Value) -> crate::helpers::TestResponse {
        self.post("/inventory/SKU-1/stock", body).await
    }
}
