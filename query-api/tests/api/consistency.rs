//! Read-your-writes: `?min_version=` waits, bounded, for the read model to catch up.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{OrderRow, TestApp, TestOptions, spawn_app_with, test_settings};

async fn app_with(read_wait: Duration, recheck: Duration) -> TestApp {
    spawn_app_with(TestOptions {
        settings: test_settings(read_wait, recheck),
        migrate: true,
    })
    .await
}

/// Runs `update` on the test database after `delay`, in the background.
fn later(
    app: &TestApp,
    delay: Duration,
    update: &'static str,
    bind: String,
) -> tokio::task::JoinHandle<()> {
    let db = app.db.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        sqlx::query(update)
            .bind(bind)
            .execute(&db)
            .await
            .expect("late update");
    })
}

#[tokio::test]
async fn min_version_already_reached_answers_at_once() {
    let app = app_with(Duration::from_secs(5), Duration::from_millis(100)).await;
    let order = OrderRow::new(Uuid::new_v4(), 0);
    app.insert_order(&order).await;
    app.insert_stock("SKU-1", 5, 0, 0, 2).await;

    for path in [
        format!("/orders/{}?min_version=3", order.order_id),
        format!("/orders/{}?min_version=1", order.order_id),
        "/stock/SKU-1?min_version=2".to_owned(),
    ] {
        let started = Instant::now();
        let response = app.get(&path).await;
        response.assert_ok();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path} took {:?} although the version was there",
            started.elapsed()
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn min_version_reached_later_is_answered_when_the_projector_notifies() {
    // Re-reads only every minute: the answer within the 5 s wait can only come from the
    // LISTEN/NOTIFY wake-up.
    let app = app_with(Duration::from_secs(5), Duration::from_secs(60)).await;
    let order = OrderRow::new(Uuid::new_v4(), 0);
    app.insert_order(&order).await;
    let order_id = order.order_id;
    let projector = {
        let app_db = app.db.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut tx = app_db.begin().await.expect("begin");
            sqlx::query(
                "UPDATE read_model.order_view SET status = 'confirmed', version = 4 WHERE order_id = $1",
            )
            .bind(order_id)
            .execute(&mut *tx)
            .await
            .expect("update order");
            // Unrelated notifications first: another order, and this one at an older version.
            for payload in [
                format!("orders:order:9:{}", Uuid::new_v4()),
                format!("orders:order:3:{order_id}"),
                format!("orders:order:4:{order_id}"),
            ] {
                sqlx::query("SELECT pg_notify('keel_read_model', $1)")
                    .bind(payload)
                    .execute(&mut *tx)
                    .await
                    .expect("notify");
            }
            tx.commit().await.expect("commit");
        })
    };

    let started = Instant::now();
    let response = app.get(&format!("/orders/{order_id}?min_version=4")).await;
    let elapsed = started.elapsed();

    let body = response.assert_ok();
    assert_eq!(body["version"], 4);
    assert_eq!(body["status"], "confirmed");
    assert_eq!(response.header("etag"), Some("\"4\""));
    assert!(
        elapsed >= Duration::from_millis(300),
        "answered before the update: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "not woken by the notification: {elapsed:?}"
    );
    projector.await.expect("projector task");
    app.finish().await;
}

#[tokio::test]
async fn the_projectors_own_notification_wakes_a_stock_read() {
    let app = app_with(Duration::from_secs(5), Duration::from_secs(60)).await;
    app.insert_stock("SKU-9", 5, 0, 0, 1).await;
    let update = later(
        &app,
        Duration::from_millis(300),
        "UPDATE read_model.stock_levels SET reserved = 2, version = 2 WHERE sku = $1",
        "SKU-9".to_owned(),
    );
    let notify = {
        let app_db = app.db.clone();
        async move {
            update.await.expect("update task");
            // Exactly what `projections::checkpoint::notify` sends for the stock projection.
            TestApp::notify_with(&app_db, "stock", "inventory", "SKU-9", 2).await;
        }
    };

    let started = Instant::now();
    let (response, ()) = tokio::join!(app.get("/stock/SKU-9?min_version=2"), notify);

    assert_eq!(
        response.assert_ok()["available"],
        json!(3),
        "{}",
        response.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    app.finish().await;
}

#[tokio::test]
async fn without_a_notification_the_periodic_recheck_finds_the_version() {
    let app = app_with(Duration::from_secs(5), Duration::from_millis(100)).await;
    app.insert_stock("SKU-2", 5, 0, 0, 1).await;
    let update = later(
        &app,
        Duration::from_millis(300),
        "UPDATE read_model.stock_levels SET on_hand = 8, version = 2 WHERE sku = $1",
        "SKU-2".to_owned(),
    );

    let started = Instant::now();
    let response = app.get("/stock/SKU-2?min_version=2").await;

    let body = response.assert_ok();
    assert_eq!(body["on_hand"], 8);
    assert_eq!(body["version"], 2);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    update.await.expect("update task");
    app.finish().await;
}

#[tokio::test]
async fn a_missing_row_is_404_without_min_version_and_waited_for_with_it() {
    let app = app_with(Duration::from_secs(5), Duration::from_secs(60)).await;
    let payment_id = Uuid::new_v4();
    let order_id = Uuid::new_v4();

    app.get(&format!("/payments/{payment_id}"))
        .await
        .assert_problem(404, "payment.not_found");

    let creator = {
        let app_db = app.db.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::query(
                "INSERT INTO read_model.payments (payment_id, order_id, status, currency, amount_minor, \
                     created_at, updated_at, version) \
                 VALUES ($1, $2, 'authorized', 'EUR', 700, now(), now(), 1)",
            )
            .bind(payment_id)
            .bind(order_id)
            .execute(&app_db)
            .await
            .expect("create payment");
            TestApp::notify_with(&app_db, "payments", "payment", &payment_id.to_string(), 1).await;
        })
    };

    let started = Instant::now();
    let response = app
        .get(&format!("/payments/{payment_id}?min_version=1"))
        .await;

    let body = response.assert_ok();
    assert_eq!(body["payment_id"], json!(payment_id));
    assert_eq!(
        body["amount"],
        json!({"amount_minor": 700, "currency": "EUR"})
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    creator.await.expect("creator task");
    app.finish().await;
}

#[tokio::test]
async fn min_version_never_reached_is_503_with_retry_after_at_the_timeout() {
    let app = app_with(Duration::from_millis(500), Duration::from_millis(100)).await;
    app.insert_stock("SKU-3", 5, 0, 0, 2).await;
    let missing_order = Uuid::new_v4();

    let started = Instant::now();
    let response = app.get("/stock/SKU-3?min_version=5").await;
    let elapsed = started.elapsed();

    let body = response.assert_problem_document(503, "not_yet_consistent");
    assert_eq!(body["type"], "urn:keel:problem:read-model-not-caught-up");
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(body["requested_version"], 5);
    assert_eq!(body["current_version"], 2);
    assert_eq!(
        body["detail"],
        "the read model has not caught up with version 5 within 500ms (it holds version 2); retry shortly"
    );
    assert!(
        elapsed >= Duration::from_millis(500),
        "gave up early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "waited too long: {elapsed:?}"
    );

    let response = app
        .get(&format!("/orders/{missing_order}?min_version=1"))
        .await;
    let body = response.assert_problem_document(503, "not_yet_consistent");
    assert_eq!(body["type"], "urn:keel:problem:read-model-not-caught-up");
    assert_eq!(body["current_version"], Value::Null);
    assert_eq!(body["requested_version"], 1);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("holds nothing yet")),
        "{body}"
    );
    app.finish().await;
}

#[tokio::test]
async fn min_version_must_be_a_positive_integer() {
    let app = app_with(Duration::from_millis(500), Duration::from_millis(100)).await;
    let id = Uuid::new_v4();
    for path in [
        format!("/orders/{id}"),
        format!("/payments/{id}"),
        "/stock/SKU-1".to_owned(),
    ] {
        for value in ["0", "-1", "abc", "", "2.5"] {
            let response = app.get(&format!("{path}?min_version={value}")).await;
            response.assert_bad_parameter("request.invalid_parameter", "min_version");
        }
        let response = app.get(&format!("{path}?min_versoin=2")).await;
        response.assert_bad_parameter("request.invalid_parameter", "min_versoin");
    }
    app.finish().await;
}
