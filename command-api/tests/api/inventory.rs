//! `/inventory/{sku}`: stock, adjustments, reservations, and the snapshots of long streams.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestOptions, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_adjustments_and_the_reservation_lifecycle() {
    let app = spawn_app().await;
    let added = app.add_stock("SKU-1", 10).await;
    added.assert_accepted(200, 1);
    assert_eq!(added.body["aggregate_type"], "inventory");
    assert_eq!(added.body["aggregate_id"], "SKU-1");
    assert_eq!(added.event_types(), ["StockAdded"]);

    app.post(
        "/inventory/SKU-1/adjustments",
        json!({"delta": -2, "reason": "2 damaged"}),
    )
    .await
    .assert_accepted(200, 2);

    let order_a = Uuid::new_v4();
    let reserved = app
        .post(
            "/inventory/SKU-1/reservations",
            json!({"order_id": order_a, "quantity": 5}),
        )
        .await;
    reserved.assert_accepted(201, 3);
    assert_eq!(
        reserved.header("location"),
        Some(format!("/inventory/SKU-1/reservations/{order_a}").as_str())
    );

    // Reserving the same quantity again for the same order is an idempotent no-op.
    let again = app
        .post(
            "/inventory/SKU-1/reservations",
            json!({"order_id": order_a, "quantity": 5}),
        )
        .await;
    again.assert_accepted(200, 3);
    assert_eq!(again.body["events"], json!([]));
    assert_eq!(again.header("location"), None);

    let before = app.event_count().await;
    app.post(
        "/inventory/SKU-1/reservations",
        json!({"order_id": order_a, "quantity": 4}),
    )
    .await
    .assert_problem(409, "inventory.reservation_conflict");
    app.post(
        "/inventory/SKU-1/reservations",
        json!({"order_id": Uuid::new_v4(), "quantity": 4}),
    )
    .await
    .assert_problem(409, "inventory.insufficient_stock");
    app.post(
        "/inventory/SKU-1/adjustments",
        json!({"delta": -4, "reason": "lost"}),
    )
    .await
    .assert_problem(409, "inventory.adjustment_below_reserved");
    app.post(
        "/inventory/SKU-1/adjustments",
        json!({"delta": 0, "reason": "nothing"}),
    )
    .await
    .assert_problem(422, "inventory.invalid_quantity");
    assert_eq!(app.event_count().await, before);

    let released = app
        .post(
            &format!("/inventory/SKU-1/reservations/{order_a}/release"),
            Value::Null,
        )
        .await;
    released.assert_accepted(200, 4);
    assert_eq!(released.event_types(), ["ReservationReleased"]);

    let order_b = Uuid::new_v4();
    app.post(
        "/inventory/SKU-1/reservations",
        json!({"order_id": order_b, "quantity": 8}),
    )
    .await
    .assert_accepted(201, 5);
    let committed = app
        .post(
            &format!("/inventory/SKU-1/reservations/{order_b}/commit"),
            json!({}),
        )
        .await;
    committed.assert_accepted(200, 6);
    assert_eq!(committed.event_types(), ["ReservationCommitted"]);

    // Everything left the shelf: nothing more can be reserved.
    app.post(
        "/inventory/SKU-1/reservations",
        json!({"order_id": Uuid::new_v4(), "quantity": 1}),
    )
    .await
    .assert_problem(409, "inventory.insufficient_stock");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_an_unknown_sku_or_reservation_are_404_and_write_nothing() {
    let app = spawn_app().await;
    let order_id = Uuid::new_v4();
    for (path, body) in [
        (
            "/inventory/NEW-SKU/adjustments".to_owned(),
            json!({"delta": 1, "reason": "found"}),
        ),
        (
            "/inventory/NEW-SKU/reservations".to_owned(),
            json!({"order_id": order_id, "quantity": 1}),
        ),
        (
            format!("/inventory/NEW-SKU/reservations/{order_id}/release"),
            Value::Null,
        ),
        (
            format!("/inventory/NEW-SKU/reservations/{order_id}/commit"),
            Value::Null,
        ),
    ] {
        app.post(&path, body)
            .await
            .assert_problem(404, "inventory.unknown_sku");
    }
    app.add_stock("NEW-SKU", 1).await.assert_accepted(200, 1);
    app.post(
        &format!("/inventory/NEW-SKU/reservations/{order_id}/release"),
        Value::Null,
    )
    .await
    .assert_problem(404, "inventory.reservation_not_found");
    assert_eq!(app.event_count().await, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_inventory_streams_are_snapshotted_with_the_right_state() {
    let mut options = TestOptions::default();
    options.settings.event_store.inventory_snapshot_every = 3;
    let app = spawn_app_with(options).await;

    for version in 1..=7 {
        app.add_stock("SKU-S", 10)
            .await
            .assert_accepted(200, version);
    }

    let (last_sequence, snapshot): (i64, Value) = sqlx::query_as(
        "SELECT last_sequence, payload::jsonb FROM snapshots
          WHERE aggregate_type = 'inventory' AND aggregate_id = 'SKU-S'",
    )
    .fetch_one(&app.db)
    .await
    .expect("a snapshot exists");
    assert_eq!(last_sequence, 6);
    // Each event folded once: 6 × 10 (a double-applied snapshot would say 120).
    assert_eq!(snapshot["on_hand"], 60);

    // Loading from the snapshot plus the tail gives exactly 70 available.
    app.post(
        "/inventory/SKU-S/reservations",
        json!({"order_id": Uuid::new_v4(), "quantity": 71}),
    )
    .await
    .assert_problem(409, "inventory.insufficient_stock");
    app.post(
        "/inventory/SKU-S/reservations",
        json!({"order_id": Uuid::new_v4(), "quantity": 70}),
    )
    .await
    .assert_accepted(201, 8);
    app.finish().await;
}
