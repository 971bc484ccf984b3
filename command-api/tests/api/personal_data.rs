//! Personal data on orders (ADR 0009): validated, sealed before the append so that nothing
//! the write side stores holds plaintext, refused without a master key, and destroyed by
//! `POST /customers/{id}/forget`.

use std::sync::Arc;

use event_store::customer_keys::{Keyring, MasterKey};
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::personal::Person;
use uuid::Uuid;

use crate::helpers::{TestApp, TestOptions, spawn_app, spawn_app_with};

fn with_master_key() -> TestOptions {
    let mut options = TestOptions::default();
    options.settings.keyring = Some(Arc::new(Keyring::new(
        MasterKey::from_bytes(&[9; 32]),
        vec![],
    )));
    options
}

/// Every row of every table of the event store's schema, as text, plus every `bytea`
/// column as raw bytes: what a search for plaintext must come up empty in.
async fn raw_store(db: &PgPool) -> (String, Vec<Vec<u8>>) {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(db)
            .await
            .expect("the store's tables");
    assert!(tables.contains(&"customer_keys".to_owned()), "{tables:?}");
    let mut text = String::new();
    for table in &tables {
        let rows: Vec<Option<String>> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(t)::text FROM public.{table} t"
        ))
        .fetch_all(db)
        .await
        .expect("a table's rows");
        for row in rows.into_iter().flatten() {
            text.push_str(&row);
            text.push('\n');
        }
    }
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type = 'bytea'",
    )
    .fetch_all(db)
    .await
    .expect("the bytea columns");
    let mut bytes = Vec::new();
    for (table, column) in columns {
        let values: Vec<Option<Vec<u8>>> =
            sqlx::query_scalar(&format!("SELECT {column} FROM public.{table}"))
                .fetch_all(db)
                .await
                .expect("a bytea column's values");
        bytes.extend(values.into_iter().flatten());
    }
    (text, bytes)
}

async fn assert_no_plaintext(app: &TestApp, person: &Person) {
    let (text, bytes) = raw_store(&app.db).await;
    assert!(!text.is_empty());
    person.assert_absent(text.as_bytes(), "a row of the event store");
    for value in &bytes {
        person.assert_absent(value, "a bytea column of the event store");
    }
}

async fn key_rows(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM customer_keys")
        .fetch_one(db)
        .await
        .expect("key rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_sealed_in_every_table_the_write_side_fills() {
    let app = spawn_app_with(with_master_key()).await;
    let person = Person::new();
    let customer = Uuid::new_v4();
    let request =
        json!({"customer_id": customer, "currency": "EUR", "customer_details": person.details()});
    let key = [("idempotency-key", "create-with-personal-data")];

    let created = app.post_with("/orders", request.clone(), &key).await;
    let body = created.assert_accepted(201, 1);
    let order_id = body["aggregate_id"].as_str().unwrap().to_owned();
    // The lines, placing and a second order of the same customer go through too.
    let line = json!({"sku": "SKU-1", "quantity": 1, "unit_price": {"amount_minor": 500, "currency": "EUR"}});
    app.post(&format!("/orders/{order_id}/lines"), line)
        .await
        .assert_accepted(201, 2);
    app.post(
        &format!("/orders/{order_id}/place"),
        json!({"payment_method": "tok_visa"}),
    )
    .await
    .assert_accepted(200, 3);
    app.post(
        "/orders",
        json!({"customer_id": customer, "currency": "EUR", "customer_details": person.details()}),
    )
    .await
    .assert_accepted(201, 1);

    let stored = app.events_of("order", &order_id).await;
    let sealed = &stored[0].payload["OrderCreated"]["customer_details"];
    let key_id = sealed["key_id"].as_str().expect("key id");
    assert!(sealed["ciphertext"].as_str().is_some_and(|c| c.len() > 40));
    assert_eq!(
        stored[0].payload["OrderCreated"]["customer_id"],
        customer.to_string(),
        "ids stay in clear"
    );
    let (keys, live): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE destroyed_at IS NULL AND key_id = $1::uuid) \
         FROM customer_keys WHERE customer_id = $2",
    )
    .bind(key_id)
    .bind(customer)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        (keys, live),
        (1, 1),
        "one key per customer, named by the event"
    );
    assert_no_plaintext(&app, &person).await;

    // A retry replays; the same key with other personal data is another request.
    let retried = app.post_with("/orders", request, &key).await;
    retried.assert_accepted(201, 1);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    let other = Person::new().details();
    let reused = app
        .post_with(
            "/orders",
            json!({"customer_id": customer, "currency": "EUR", "customer_details": other}),
            &key,
        )
        .await;
    reused.assert_problem(422, "idempotency.key_reused");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_personal_data_is_a_problem_and_writes_nothing() {
    let app = spawn_app_with(with_master_key()).await;
    let person = Person::new();
    let broken = |path: &[&str], value: Value| {
        let mut details = person.details();
        let mut target = &mut details;
        for segment in &path[..path.len() - 1] {
            target = &mut target[*segment];
        }
        target[path[path.len() - 1]] = value;
        json!({"customer_id": Uuid::new_v4(), "currency": "EUR", "customer_details": details})
    };
    let cases = [
        (
            broken(&["email"], json!("ada at example.com")),
            422,
            "order.invalid_customer_details",
            "customer_details.email",
        ),
        (
            broken(&["email"], json!("ada@localhost")),
            422,
            "order.invalid_customer_details",
            "customer_details.email",
        ),
        (
            broken(&["name"], json!("Ada\u{0}Lovelace")),
            422,
            "order.invalid_customer_details",
            "customer_details.name",
        ),
        (
            broken(&["name"], json!("x".repeat(201))),
            422,
            "order.invalid_customer_details",
            "customer_details.name",
        ),
        (
            broken(&["name"], json!("   ")),
            422,
            "order.invalid_customer_details",
            "customer_details.name",
        ),
        (
            broken(&["shipping_address", "country"], json!("Britain")),
            422,
            "order.invalid_customer_details",
            "customer_details.shipping_address.country",
        ),
        (
            broken(&["shipping_address", "postal_code"], json!("1".repeat(21))),
            422,
            "order.invalid_customer_details",
            "customer_details.shipping_address.postal_code",
        ),
        (
            broken(&["shipping_address", "city"], json!("Lon\ndon")),
            422,
            "order.invalid_customer_details",
            "customer_details.shipping_address.city",
        ),
        (
            broken(&["shipping_address", "floor"], json!(3)),
            422,
            "request.invalid_body",
            "floor",
        ),
        (
            broken(&["email"], json!(7)),
            422,
            "request.invalid_body",
            "email",
        ),
    ];
    for (body, status, code, mentions) in cases {
        let response = app.post("/orders", body.clone()).await;
        let problem = response.assert_problem(status, code);
        assert!(problem.to_string().contains(mentions), "{body}: {problem}");
        if code == "order.invalid_customer_details" {
            assert_eq!(
                problem["errors"][0]["pointer"],
                format!("/{}", mentions.replace('.', "/")),
                "{problem}"
            );
        }
    }
    assert_eq!(app.event_count().await, 0, "nothing was appended");
    assert_eq!(key_rows(&app.db).await, 0, "no key was created");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_master_key_personal_data_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let refused = app
        .post(
            "/orders",
            json!({"customer_id": Uuid::new_v4(), "currency": "EUR", "customer_details": Person::new().details()}),
        )
        .await;
    refused.assert_problem(503, "order.personal_data_unavailable");
    assert_eq!(app.event_count().await, 0);
    assert_eq!(key_rows(&app.db).await, 0);
    // Orders without personal data are not affected.
    app.create_order().await;
    assert_eq!(app.event_count().await, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_destroys_the_key_once_and_an_unknown_customer_is_not_found() {
    let app = spawn_app_with(with_master_key()).await;
    let person = Person::new();
    let customer = Uuid::new_v4();
    let order = app
        .post(
            "/orders",
            json!({"customer_id": customer, "currency": "EUR", "customer_details": person.details()}),
        )
        .await;
    let order_id = order.assert_accepted(201, 1)["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = app.events_of("order", &order_id).await;

    let unknown = app
        .post(&format!("/customers/{}/forget", Uuid::new_v4()), json!({}))
        .await;
    unknown.assert_problem(404, "customer.not_found");
    // A customer with orders but no personal data holds no key either.
    let plain = Uuid::new_v4();
    app.post("/orders", json!({"customer_id": plain, "currency": "EUR"}))
        .await
        .assert_accepted(201, 1);
    app.post(&format!("/customers/{plain}/forget"), Value::Null)
        .await
        .assert_problem(404, "customer.not_found");
    app.post("/customers/not-a-uuid/forget", json!({}))
        .await
        .assert_problem(400, "request.invalid_path");
    app.post(
        &format!("/customers/{customer}/forget"),
        json!({"why": "asked"}),
    )
    .await
    .assert_problem(422, "request.invalid_body");

    let forgotten = app
        .post(&format!("/customers/{customer}/forget"), Value::Null)
        .await;
    forgotten.assert_accepted(200, 1);
    assert_eq!(forgotten.event_types(), ["CustomerForgotten"]);
    let event = app.events_of("customer", &customer.to_string()).await;
    assert_eq!(event.len(), 1);
    assert_eq!(event[0].payload, json!({"CustomerForgotten": {}}));
    let destroyed: (Option<Vec<u8>>, Option<String>, bool) = sqlx::query_as(
        "SELECT wrapped_key, master_key_id, destroyed_at IS NOT NULL FROM customer_keys \
         WHERE customer_id = $1",
    )
    .bind(customer)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(destroyed, (None, None, true));

    let again = app
        .post(&format!("/customers/{customer}/forget"), json!({}))
        .await;
    again.assert_accepted(200, 1);
    assert!(
        again.event_types().is_empty(),
        "forgetting twice records nothing"
    );
    // The order's events are untouched: same payload, same hash.
    let after = app.events_of("order", &order_id).await;
    assert_eq!(after[0].payload, before[0].payload);
    let hashes: Vec<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT hash FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(&order_id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert!(hashes.iter().all(Option::is_some));

    // The customer comes back: a new key, and forgetting again is a new event.
    app.post(
        "/orders",
        json!({"customer_id": customer, "currency": "EUR", "customer_details": person.details()}),
    )
    .await
    .assert_accepted(201, 1);
    app.post(&format!("/customers/{customer}/forget"), json!({}))
        .await
        .assert_accepted(200, 2);
    assert_no_plaintext(&app, &person).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_personal_data_and_forgetting() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json").await.assert_ok().clone();
    let forget = &document["paths"]["/customers/{customer_id}/forget"]["post"];
    assert_eq!(forget["operationId"], "forget_customer");
    assert!(forget["responses"]["200"].is_object(), "{forget}");
    let schemas = &document["components"]["schemas"];
    assert!(schemas["CreateOrderRequest"]["properties"]["customer_details"].is_object());
    assert!(schemas["CustomerDetailsBody"]["properties"]["email"].is_object());
    app.finish().await;
}
