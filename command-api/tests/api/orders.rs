//! `/orders`: every order command, its success answer and what it records.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_order_answers_201_with_location_etag_and_the_recorded_event() {
    let app = spawn_app().await;
    let customer_id = Uuid::new_v4();

    let response = app
        .post(
            "/orders",
            json!({"customer_id": customer_id, "currency": "EUR"}),
        )
        .await;

    let body = response.assert_accepted(201, 1);
    let order_id = body["aggregate_id"].as_str().unwrap().to_owned();
    assert!(
        Uuid::parse_str(&order_id).is_ok(),
        "server-chosen UUID: {order_id}"
    );
    assert_eq!(body["aggregate_type"], "order");
    assert_eq!(
        response.header("location"),
        Some(format!("/orders/{order_id}").as_str())
    );
    assert_eq!(response.event_types(), ["OrderCreated"]);

    let stored = app.events_of("order", &order_id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event_type, "OrderCreated");
    assert_eq!(
        stored[0].payload["OrderCreated"]["customer_id"],
        customer_id.to_string()
    );
    assert_eq!(body["events"][0]["sequence"], 1);
    assert_eq!(
        body["events"][0]["event_id"],
        stored[0].event_id.to_string()
    );
    assert!(body["events"][0]["global_position"].as_i64().is_some());
    app.finish().await;
}

/// A create at a server-drawn id is not loaded first (nothing can be stored under a fresh
/// id). Should the id source ever repeat itself, the append still refuses to overwrite: the
/// lost position makes the command be decided again on what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_at_a_server_drawn_id_that_is_taken_appends_nothing() {
    let app = spawn_app().await;
    // The test id source hands out 0x7e57:1, :2, …; each request without a correlation id
    // draws one first. This request takes :1; the next one's correlation id is :2 and the
    // id it draws for its order is :3, which this request takes now.
    let taken = Uuid::from_u64_pair(0x7e57, 3);
    app.post(
        "/orders",
        json!({"order_id": taken, "customer_id": Uuid::new_v4(), "currency": "USD"}),
    )
    .await
    .assert_accepted(201, 1);

    let drawn = app
        .post(
            "/orders",
            json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}),
        )
        .await;
    drawn.assert_problem(409, "order.already_exists");
    let stored = app.events_of("order", &taken.to_string()).await;
    assert_eq!(stored.len(), 1, "the first order is untouched");
    assert_eq!(stored[0].payload["OrderCreated"]["currency"], "USD");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_chosen_order_id_is_used_and_cannot_be_created_twice() {
    let app = spawn_app().await;
    let order_id = Uuid::new_v4();
    let create = json!({"order_id": order_id, "customer_id": Uuid::new_v4(), "currency": "USD"});

    let first = app.post("/orders", create.clone()).await;
    first.assert_accepted(201, 1);
    assert_eq!(first.body["aggregate_id"], order_id.to_string());

    let second = app.post("/orders", create).await;
    second.assert_problem(409, "order.already_exists");
    assert_eq!(
        app.event_count().await,
        1,
        "the rejected create wrote nothing"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_through_its_whole_lifecycle() {
    let app = spawn_app().await;
    let order_id = app.create_order().await;
    let lines = format!("/orders/{order_id}/lines");

    let added = app
        .post(&lines, json!({"sku": "SKU-1", "quantity": 2, "unit_price": {"amount_minor": 1250, "currency": "EUR"}}))
        .await;
    added.assert_accepted(201, 2);
    assert_eq!(
        added.header("location"),
        Some(format!("{lines}/SKU-1").as_str())
    );
    assert_eq!(added.event_types(), ["OrderLineAdded"]);

    app.post(&lines, json!({"sku": "SKU-2", "quantity": 1, "unit_price": {"amount_minor": 0, "currency": "EUR"}}))
        .await
        .assert_accepted(201, 3);

    let changed = app
        .send(
            Method::PATCH,
            &format!("{lines}/SKU-1"),
            json!({"quantity": 5}),
            &[],
        )
        .await;
    changed.assert_accepted(200, 4);
    assert_eq!(changed.event_types(), ["OrderLineQuantityChanged"]);

    let unchanged = app
        .send(
            Method::PATCH,
            &format!("{lines}/SKU-1"),
            json!({"quantity": 5}),
            &[],
        )
        .await;
    unchanged.assert_accepted(200, 4);
    assert_eq!(
        unchanged.body["events"],
        json!([]),
        "same quantity records nothing"
    );

    let removed = app
        .send(Method::DELETE, &format!("{lines}/SKU-2"), Value::Null, &[])
        .await;
    removed.assert_accepted(200, 5);
    assert_eq!(removed.event_types(), ["OrderLineRemoved"]);

    // Commands without fields accept no body at all, or `{}`.
    app.post(&format!("/orders/{order_id}/place"), Value::Null)
        .await
        .assert_accepted(200, 6);
    app.post(&format!("/orders/{order_id}/confirm"), json!({}))
        .await
        .assert_accepted(200, 7);
    app.post(
        &format!("/orders/{order_id}/ship"),
        json!({"tracking_reference": "1Z999"}),
    )
    .await
    .assert_accepted(200, 8);
    let delivered = app
        .post(&format!("/orders/{order_id}/deliver"), Value::Null)
        .await;
    delivered.assert_accepted(200, 9);
    assert_eq!(delivered.event_types(), ["OrderDelivered"]);

    let types: Vec<String> = app
        .events_of("order", &order_id)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "OrderCreated",
            "OrderLineAdded",
            "OrderLineAdded",
            "OrderLineQuantityChanged",
            "OrderLineRemoved",
            "OrderPlaced",
            "OrderConfirmed",
            "OrderShipped",
            "OrderDelivered"
        ]
    );
    let placed = &app.events_of("order", &order_id).await[5];
    assert_eq!(placed.payload["OrderPlaced"]["total"]["amount_minor"], 6250);
    assert_eq!(placed.payload["OrderPlaced"]["payment_method"], Value::Null);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placing_records_the_payment_method_for_fulfilment() {
    let app = spawn_app().await;
    let order_id = app.order_with_line("SKU-1").await;
    let before = app.event_count().await;

    for (body, pointer) in [
        (json!({"payment_method": 42}), "/payment_method"),
        (
            json!({"payment_method": "tok_visa", "card": "4242"}),
            "/card",
        ),
    ] {
        let response = app.post(&format!("/orders/{order_id}/place"), body).await;
        let problem = response.assert_problem(422, "request.invalid_body");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
    app.post(
        &format!("/orders/{order_id}/place"),
        json!({"payment_method": "  "}),
    )
    .await
    .assert_problem(422, "order.invalid_payment_method");
    assert_eq!(app.event_count().await, before, "rejections write nothing");

    let placed = app
        .post(
            &format!("/orders/{order_id}/place"),
            json!({"payment_method": "tok_visa"}),
        )
        .await;
    placed.assert_accepted(200, 3);
    let stored = app.events_of("order", &order_id).await;
    assert_eq!(
        stored[2].payload["OrderPlaced"]["payment_method"],
        "tok_visa"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_records_the_reason_and_illegal_transitions_are_409() {
    let app = spawn_app().await;
    let order_id = app.order_with_line("SKU-1").await;

    let cancelled = app
        .post(
            &format!("/orders/{order_id}/cancel"),
            json!({"reason": "customer changed their mind"}),
        )
        .await;
    cancelled.assert_accepted(200, 3);
    let stored = app.events_of("order", &order_id).await;
    assert_eq!(
        stored[2].payload["OrderCancelled"]["reason"],
        "customer changed their mind"
    );

    let before = app.event_count().await;
    for (path, body) in [
        ("place", Value::Null),
        ("ship", Value::Null),
        ("cancel", json!({"reason": "again"})),
    ] {
        let response = app.post(&format!("/orders/{order_id}/{path}"), body).await;
        let problem = response.assert_problem(409, "order.invalid_transition");
        assert!(
            problem["detail"].as_str().unwrap().contains("cancelled"),
            "{problem}"
        );
    }
    assert_eq!(app.event_count().await, before, "rejections write nothing");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_rules_are_answered_with_their_codes_and_write_nothing() {
    let app = spawn_app().await;
    let order_id = app.create_order().await;
    let before = app.event_count().await;

    app.post(&format!("/orders/{order_id}/place"), Value::Null)
        .await
        .assert_problem(409, "order.empty_order");
    app.post(&format!("/orders/{order_id}/ship"), Value::Null)
        .await
        .assert_problem(409, "order.invalid_transition");
    let mismatch = app
        .post(
            &format!("/orders/{order_id}/lines"),
            json!({"sku": "SKU-1", "quantity": 1, "unit_price": {"amount_minor": 100, "currency": "USD"}}),
        )
        .await;
    let problem = mismatch.assert_problem(422, "order.currency_mismatch");
    assert!(
        problem["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "{problem}"
    );
    app.post(
        &format!("/orders/{order_id}/cancel"),
        json!({"reason": "   "}),
    )
    .await
    .assert_problem(422, "order.invalid_reason");
    app.send(
        Method::PATCH,
        &format!("/orders/{order_id}/lines/NOPE"),
        json!({"quantity": 1}),
        &[],
    )
    .await
    .assert_problem(404, "order.line_not_found");
    app.send(
        Method::DELETE,
        &format!("/orders/{order_id}/lines/NOPE"),
        Value::Null,
        &[],
    )
    .await
    .assert_problem(404, "order.line_not_found");

    assert_eq!(app.event_count().await, before);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_an_unknown_order_is_404_and_writes_nothing() {
    let app = spawn_app().await;
    let unknown = Uuid::new_v4();
    let line = json!({"sku": "SKU-1", "quantity": 1, "unit_price": {"amount_minor": 100, "currency": "EUR"}});

    let cases = [
        (Method::POST, format!("/orders/{unknown}/lines"), line),
        (
            Method::PATCH,
            format!("/orders/{unknown}/lines/SKU-1"),
            json!({"quantity": 2}),
        ),
        (
            Method::DELETE,
            format!("/orders/{unknown}/lines/SKU-1"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/orders/{unknown}/place"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/orders/{unknown}/confirm"),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/orders/{unknown}/cancel"),
            json!({"reason": "r"}),
        ),
        (Method::POST, format!("/orders/{unknown}/ship"), Value::Null),
        (
            Method::POST,
            format!("/orders/{unknown}/deliver"),
            Value::Null,
        ),
    ];
    for (method, path, body) in cases {
        let response = app.send(method.clone(), &path, body, &[]).await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.text);
        response.assert_problem(404, "order.not_found");
    }
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}
