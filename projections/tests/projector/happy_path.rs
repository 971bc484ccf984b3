//! Commands through the command API reach every read model, exactly as the domain says.

use projections::Projection;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Harness, NOW_JSON, row, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_every_read_model() {
    let harness = Harness::start(2).await;
    let settings = harness.projector_settings(50);
    let mut orders = harness.start_projector(Projection::Orders, &settings).await;
    let mut stock = harness.start_projector(Projection::Stock, &settings).await;
    let mut payments = harness
        .start_projector(Projection::Payments, &settings)
        .await;

    // An order with two lines, placed; stock received and reserved for it; a payment
    // authorized for it.
    let customer_id = Uuid::new_v4();
    let order_id = harness.create_order(customer_id).await;
    harness.add_line(order_id, "SKU-A", 3, 1250).await;
    harness.add_line(order_id, "SKU-B", 1, 999).await;
    harness.place_order(order_id).await;
    harness.add_stock("SKU-A", 10).await;
    harness.reserve_stock("SKU-A", order_id, 3).await;
    let payment_id = harness.authorize_payment(order_id, 4749).await;

    let counts = harness.event_counts().await;
    assert_eq!(
        (counts.order, counts.inventory, counts.payment),
        (4, 2, 1),
        "events written"
    );
    orders
        .wait_for_applied(counts.read_by(Projection::Orders))
        .await;
    stock
        .wait_for_applied(counts.read_by(Projection::Stock))
        .await;
    payments
        .wait_for_applied(counts.read_by(Projection::Payments))
        .await;

    let pool = &harness.read_model;
    let authorization_code = find_key(
        &harness.stored_payload(payment_id, 1).await,
        "authorization_code",
    )
    .expect("the stored PaymentAuthorized has an authorization code");
    let mut payment = row(pool, "payments", "payment_id", payment_id).await;
    assert_eq!(
        payment,
        json!({
            "payment_id": payment_id,
            "order_id": order_id,
            "status": "authorized",
            "currency": "EUR",
            "amount_minor": 4749,
            "captured_minor": 0,
            "refunded_minor": 0,
            "authorization_code": authorization_code,
            "decline_reason": null,
            "void_reason": null,
            "refunds": [],
            "created_at": NOW_JSON,
            "updated_at": NOW_JSON,
            "version": 1,
        }),
        "payment after authorization"
    );
    assert_eq!(
        rows(pool, "order_payments", "order_id", order_id, "payment_id").await,
        [json!({
            "payment_id": payment_id,
            "order_id": order_id,
            "status": "authorized",
            "currency": "EUR",
            "amount_minor": 4749,
            "captured_minor": 0,
            "refunded_minor": 0,
            "created_at": NOW_JSON,
            "updated_at": NOW_JSON,
        })],
        "order payments after authorization"
    );
    assert_eq!(
        row(pool, "order_view", "order_id", order_id).await["status"],
        "placed"
    );

    // The projectors keep following: capture and confirm.
    harness.capture_payment(payment_id, 4749).await;
    harness.confirm_order(order_id).await;
    let counts = harness.event_counts().await;
    assert_eq!(
        (counts.order, counts.inventory, counts.payment),
        (5, 2, 2),
        "events written"
    );
    let orders_progress = orders
        .wait_for_applied(counts.read_by(Projection::Orders))
        .await;
    let payments_progress = payments
        .wait_for_applied(counts.read_by(Projection::Payments))
        .await;

    let expected_order = json!({
        "order_id": order_id,
        "customer_id": customer_id,
        "status": "confirmed",
        "currency": "EUR",
        "total_minor": 4749,
        "line_count": 2,
        "cancellation_reason": null,
        "tracking_reference": null,
        "created_at": NOW_JSON,
        "placed_at": NOW_JSON,
        "confirmed_at": NOW_JSON,
        "cancelled_at": null,
        "shipped_at": null,
        "delivered_at": null,
        "updated_at": NOW_JSON,
        "version": 5,
        "personal_data": "none",
        "customer_name": null,
        "customer_email": null,
        "shipping_address": null,
    });
    assert_eq!(
        row(pool, "order_view", "order_id", order_id).await,
        expected_order
    );
    assert_eq!(
        rows(pool, "order_view_lines", "order_id", order_id, "position").await,
        [
            json!({"order_id": order_id, "sku": "SKU-A", "position": 1, "quantity": 3,
                   "unit_price_minor": 1250, "line_total_minor": 3750}),
            json!({"order_id": order_id, "sku": "SKU-B", "position": 2, "quantity": 1,
                   "unit_price_minor": 999, "line_total_minor": 999}),
        ]
    );
    assert_eq!(
        rows(
            pool,
            "customer_orders",
            "customer_id",
            customer_id,
            "order_id"
        )
        .await,
        [json!({
            "order_id": order_id,
            "customer_id": customer_id,
            "status": "confirmed",
            "currency": "EUR",
            "total_minor": 4749,
            "line_count": 2,
            "created_at": NOW_JSON,
            "updated_at": NOW_JSON,
            "version": 5,
        })]
    );
    assert_eq!(
        rows(pool, "order_reservations", "order_id", order_id, "sku").await,
        [json!({"order_id": order_id, "sku": "SKU-A", "quantity": 3,
                "status": "reserved", "updated_at": NOW_JSON})]
    );
    assert_eq!(
        row(pool, "stock_levels", "sku", "SKU-A").await,
        json!({
            "sku": "SKU-A",
            "on_hand": 10,
            "reserved": 3,
            "available": 7,
            "created_at": NOW_JSON,
            "updated_at": NOW_JSON,
            "version": 2,
        })
    );
    payment["status"] = json!("captured");
    payment["captured_minor"] = json!(4749);
    payment["version"] = json!(2);
    assert_eq!(
        row(pool, "payments", "payment_id", payment_id).await,
        payment,
        "payment after capture"
    );
    assert_eq!(
        rows(pool, "order_payments", "order_id", order_id, "payment_id").await,
        [json!({
            "payment_id": payment_id,
            "order_id": order_id,
            "status": "captured",
            "currency": "EUR",
            "amount_minor": 4749,
            "captured_minor": 4749,
            "refunded_minor": 0,
            "created_at": NOW_JSON,
            "updated_at": NOW_JSON,
        })],
        "order payments after capture"
    );

    // Checkpoints: one per projection and source aggregate, at its last sequence.
    let checkpoints: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT projection, aggregate_type, aggregate_id, last_sequence, parked_by \
         FROM read_model.checkpoints ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await
    .expect("read checkpoints");
    let mut expected_checkpoints = vec![
        ("orders", "inventory", "SKU-A".to_owned(), 2),
        ("orders", "order", order_id.to_string(), 5),
        ("orders", "payment", payment_id.to_string(), 2),
        ("payments", "payment", payment_id.to_string(), 2),
        ("stock", "inventory", "SKU-A".to_owned(), 2),
    ]
    .into_iter()
    .map(|(p, t, id, s)| (p.to_owned(), t.to_owned(), id, s, None))
    .collect::<Vec<_>>();
    expected_checkpoints.sort();
    assert_eq!(checkpoints, expected_checkpoints);
    let dead_letters: i64 = sqlx::query_scalar("SELECT count(*) FROM read_model.dead_letters")
        .fetch_one(pool)
        .await
        .expect("count dead letters");
    assert_eq!(
        dead_letters, 0,
        "nothing is dead-lettered on the happy path"
    );

    let stock_progress = stock.stop().await;
    let orders_final = orders.stop().await;
    let payments_final = payments.stop().await;
    assert_eq!(orders_final.applied, 9, "{orders_progress:?}");
    assert_eq!(stock_progress.applied, 2);
    assert_eq!(payments_final.applied, 2, "{payments_progress:?}");
    for progress in [&orders_final, &stock_progress, &payments_final] {
        assert_eq!(
            (progress.duplicates, progress.gaps, progress.dead_lettered),
            (0, 0, 0),
            "{progress:?}"
        );
    }
    harness.finish().await;
}

/// The first value of `key` anywhere in `value`.
fn find_key(value: &Value, key: &str) -> Option<Value> {
    match value {
        Value::Object(map) => map
            .get(key)
            .cloned()
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}
