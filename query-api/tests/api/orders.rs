//! `/orders/{order_id}`: the order view with lines, reservations and payments.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{OrderRow, at, at_json, spawn_app};

#[tokio::test]
async fn customer_details_show_while_present_and_as_erased_once_forgotten() {
    let app = spawn_app().await;
    let (present, erased) = (Uuid::new_v4(), Uuid::new_v4());
    for (order_id, personal_data, name, email, address) in [
        (
            present,
            "present",
            Some("Ada Lovelace"),
            Some("ada@example.com"),
            Some(
                json!({"line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}),
            ),
        ),
        (erased, "erased", None, None, None),
    ] {
        sqlx::query(
            "INSERT INTO read_model.order_view (order_id, customer_id, status, currency, total_minor, \
                 line_count, created_at, updated_at, version, personal_data, customer_name, \
                 customer_email, shipping_address) \
             VALUES ($1, $2, 'draft', 'EUR', 0, 0, $3, $3, 1, $4, $5, $6, $7)",
        )
        .bind(order_id)
        .bind(Uuid::new_v4())
        .bind(at(0))
        .bind(personal_data)
        .bind(name)
        .bind(email)
        .bind(address)
        .execute(&app.db)
        .await
        .expect("insert order");
    }
    let shown = app.get(&format!("/orders/{present}")).await;
    assert_eq!(
        shown.assert_ok()["customer_details"],
        json!({
            "status": "present",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "shipping_address": {"line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"},
        })
    );
    let gone = app.get(&format!("/orders/{erased}")).await;
    assert_eq!(
        gone.assert_ok()["customer_details"],
        json!({"status": "erased"})
    );
    // The read model refuses plaintext next to an erased status.
    let refused = sqlx::query(
        "UPDATE read_model.order_view SET customer_email = 'ada@example.com' WHERE order_id = $1",
    )
    .bind(erased)
    .execute(&app.db)
    .await;
    assert!(
        refused.is_err(),
        "the CHECK constraint keeps erased rows empty"
    );
    app.finish().await;
}

#[tokio::test]
async fn order_view_has_lines_in_position_order_totals_reservations_and_payments() {
    let app = spawn_app().await;
    let order_id = Uuid::new_v4();
    let customer_id = Uuid::new_v4();
    let (first_payment, second_payment) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO read_model.order_view (order_id, customer_id, status, currency, total_minor, \
             line_count, cancellation_reason, tracking_reference, created_at, placed_at, \
             confirmed_at, cancelled_at, shipped_at, delivered_at, updated_at, version) \
         VALUES ($1, $2, 'shipped', 'EUR', 4450, 2, NULL, 'TRACK-42', $3, $4, $5, NULL, $6, NULL, $6, 7)",
    )
    .bind(order_id)
    .bind(customer_id)
    .bind(at(0))
    .bind(at(10))
    .bind(at(20))
    .bind(at(30))
    .execute(&app.db)
    .await
    .expect("insert order");
    // Inserted out of position order, with SKUs sorting the other way round.
    sqlx::query(
        "INSERT INTO read_model.order_view_lines (order_id, sku, position, quantity, unit_price_minor, line_total_minor) \
         VALUES ($1, 'A-SECOND', 2, 1, 1950, 1950), ($1, 'Z-FIRST', 1, 2, 1250, 2500)",
    )
    .bind(order_id)
    .execute(&app.db)
    .await
    .expect("insert lines");
    sqlx::query(
        "INSERT INTO read_model.order_reservations (order_id, sku, quantity, status, updated_at) \
         VALUES ($1, 'Z-FIRST', 2, 'committed', $2), ($1, 'A-SECOND', 1, 'committed', $2), \
                ($3, 'Z-FIRST', 9, 'reserved', $2)",
    )
    .bind(order_id)
    .bind(at(25))
    .bind(Uuid::new_v4())
    .execute(&app.db)
    .await
    .expect("insert reservations");
    sqlx::query(
        "INSERT INTO read_model.order_payments (payment_id, order_id, status, currency, amount_minor, \
             captured_minor, refunded_minor, created_at, updated_at) \
         VALUES ($1, $3, 'captured', 'EUR', 4450, 4450, 450, $5, $6), \
                ($2, $3, 'declined', 'EUR', 4450, 0, 0, $4, $4)",
    )
    .bind(second_payment)
    .bind(first_payment)
    .bind(order_id)
    .bind(at(11))
    .bind(at(12))
    .bind(at(26))
    .execute(&app.db)
    .await
    .expect("insert payments");

    let response = app.get(&format!("/orders/{order_id}")).await;

    assert_eq!(
        response.assert_ok(),
        &json!({
            "order_id": order_id,
            "customer_id": customer_id,
            "status": "shipped",
            "currency": "EUR",
            "total": {"amount_minor": 4450, "currency": "EUR"},
            "line_count": 2,
            "lines": [
                {
                    "sku": "Z-FIRST", "position": 1, "quantity": 2,
                    "unit_price": {"amount_minor": 1250, "currency": "EUR"},
                    "line_total": {"amount_minor": 2500, "currency": "EUR"},
                },
                {
                    "sku": "A-SECOND", "position": 2, "quantity": 1,
                    "unit_price": {"amount_minor": 1950, "currency": "EUR"},
                    "line_total": {"amount_minor": 1950, "currency": "EUR"},
                },
            ],
            "cancellation_reason": null,
            "tracking_reference": "TRACK-42",
            "created_at": at_json(0),
            "placed_at": at_json(10),
            "confirmed_at": at_json(20),
            "cancelled_at": null,
            "shipped_at": at_json(30),
            "delivered_at": null,
            "updated_at": at_json(30),
            "reservations": [
                {"sku": "A-SECOND", "quantity": 1, "status": "committed", "updated_at": at_json(25)},
                {"sku": "Z-FIRST", "quantity": 2, "status": "committed", "updated_at": at_json(25)},
            ],
            "payments": [
                {
                    "payment_id": first_payment, "status": "declined",
                    "amount": {"amount_minor": 4450, "currency": "EUR"},
                    "captured": {"amount_minor": 0, "currency": "EUR"},
                    "refunded": {"amount_minor": 0, "currency": "EUR"},
                    "created_at": at_json(11), "updated_at": at_json(11),
                },
                {
                    "payment_id": second_payment, "status": "captured",
                    "amount": {"amount_minor": 4450, "currency": "EUR"},
                    "captured": {"amount_minor": 4450, "currency": "EUR"},
                    "refunded": {"amount_minor": 450, "currency": "EUR"},
                    "created_at": at_json(12), "updated_at": at_json(26),
                },
            ],
            "customer_details": null,
            "version": 7,
        })
    );
    assert_eq!(response.header("etag"), Some("\"7\""));
    app.finish().await;
}

#[tokio::test]
async fn cancelled_order_without_lines_shows_its_reason() {
    let app = spawn_app().await;
    let order = OrderRow {
        status: "cancelled",
        total_minor: 0,
        line_count: 0,
        ..OrderRow::new(Uuid::new_v4(), 0)
    };
    app.insert_order(&order).await;
    sqlx::query(
        "UPDATE read_model.order_view SET cancellation_reason = 'customer changed their mind', \
             cancelled_at = $2, updated_at = $2 WHERE order_id = $1",
    )
    .bind(order.order_id)
    .bind(at(5))
    .execute(&app.db)
    .await
    .expect("cancel");

    let response = app.get(&format!("/orders/{}", order.order_id)).await;

    let body = response.assert_ok();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["cancellation_reason"], "customer changed their mind");
    assert_eq!(body["cancelled_at"], at_json(5));
    assert_eq!(body["lines"], json!([]));
    assert_eq!(body["reservations"], json!([]));
    assert_eq!(body["payments"], json!([]));
    assert_eq!(body["total"], json!({"amount_minor": 0, "currency": "EUR"}));
    app.finish().await;
}

#[tokio::test]
async fn unknown_order_is_404_problem() {
    let app = spawn_app().await;
    let order_id = Uuid::new_v4();

    let response = app.get(&format!("/orders/{order_id}")).await;

    let body = response.assert_problem(404, "order.not_found");
    assert_eq!(body["type"], "urn:keel:problem:order.not_found");
    assert_eq!(body["detail"], format!("no order {order_id}"));
    app.finish().await;
}

#[tokio::test]
async fn malformed_ids_in_paths_are_400_naming_the_parameter() {
    let app = spawn_app().await;

    for (path, parameter) in [
        ("/orders/not-a-uuid", "order_id"),
        ("/orders/123/payments", "order_id"),
        ("/customers/xyz/orders", "customer_id"),
        ("/payments/00000000-0000-0000-0000", "payment_id"),
        ("/stock/has%20space", "sku"),
        (
            "/stock/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "sku",
        ),
    ] {
        let response = app.get(path).await;
        let body = response.assert_bad_parameter("request.invalid_path", parameter);
        assert_eq!(
            body["type"], "urn:keel:problem:request.invalid_path",
            "{path}"
        );
    }
    app.finish().await;
}
