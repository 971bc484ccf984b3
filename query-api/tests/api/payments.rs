//! `/payments/{payment_id}` and `/orders/{order_id}/payments`.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{OrderRow, at, at_json, spawn_app};

#[tokio::test]
async fn payment_has_amounts_refunds_and_version() {
    let app = spawn_app().await;
    let (payment_id, order_id, refund_id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    app.insert_payment(payment_id, order_id, 5000, 0).await;
    // The refund written exactly as the payments projector writes it.
    sqlx::query(
        "UPDATE read_model.payments SET status = 'captured', captured_minor = 5000, \
             refunded_minor = refunded_minor + $2, \
             refunds = refunds || jsonb_build_array(jsonb_build_object( \
                 'refund_id', $3::uuid, 'amount_minor', $2::bigint, \
                 'reason', $4::text, 'refunded_at', $5::timestamptz)), \
             updated_at = $5, version = 3 \
         WHERE payment_id = $1",
    )
    .bind(payment_id)
    .bind(1500_i64)
    .bind(refund_id)
    .bind("damaged in transit")
    .bind(at(90))
    .execute(&app.db)
    .await
    .expect("refund");

    let response = app.get(&format!("/payments/{payment_id}")).await;

    assert_eq!(
        response.assert_ok(),
        &json!({
            "payment_id": payment_id,
            "order_id": order_id,
            "status": "captured",
            "amount": {"amount_minor": 5000, "currency": "EUR"},
            "captured": {"amount_minor": 5000, "currency": "EUR"},
            "refunded": {"amount_minor": 1500, "currency": "EUR"},
            "authorization_code": "AUTH-1",
            "decline_reason": null,
            "void_reason": null,
            "refunds": [{
                "refund_id": refund_id,
                "amount": {"amount_minor": 1500, "currency": "EUR"},
                "reason": "damaged in transit",
                "refunded_at": at_json(90),
            }],
            "created_at": at_json(0),
            "updated_at": at_json(90),
            "version": 3,
        })
    );
    assert_eq!(response.header("etag"), Some("\"3\""));
    app.finish().await;
}

#[tokio::test]
async fn unknown_payment_is_404_problem() {
    let app = spawn_app().await;
    let payment_id = Uuid::new_v4();

    let response = app.get(&format!("/payments/{payment_id}")).await;

    let body = response.assert_problem(404, "payment.not_found");
    assert_eq!(body["detail"], format!("no payment {payment_id}"));
    app.finish().await;
}

#[tokio::test]
async fn order_payments_are_listed_oldest_first() {
    let app = spawn_app().await;
    let order_id = Uuid::new_v4();
    let (late, early, same_time_a, same_time_b) = {
        let mut tied = [Uuid::new_v4(), Uuid::new_v4()];
        tied.sort();
        (Uuid::new_v4(), Uuid::new_v4(), tied[0], tied[1])
    };
    app.insert_payment(late, order_id, 300, 30).await;
    app.insert_payment(same_time_b, order_id, 200, 20).await;
    app.insert_payment(early, order_id, 100, 10).await;
    app.insert_payment(same_time_a, order_id, 200, 20).await;
    app.insert_payment(Uuid::new_v4(), Uuid::new_v4(), 999, 15)
        .await;

    let response = app.get(&format!("/orders/{order_id}/payments")).await;

    let body = response.assert_ok();
    assert_eq!(body["order_id"], json!(order_id));
    let listed: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["payment_id"].as_str().expect("payment_id"))
        .collect();
    let expected = [early, same_time_a, same_time_b, late].map(|id| id.to_string());
    assert_eq!(listed, expected);
    assert_eq!(
        body["items"][0]["amount"],
        json!({"amount_minor": 100, "currency": "EUR"})
    );
    assert_eq!(body["items"][0]["refunds"], json!([]));
    app.finish().await;
}

#[tokio::test]
async fn order_payments_of_a_known_order_without_payments_is_empty_and_of_an_unknown_order_404() {
    let app = spawn_app().await;
    let order = OrderRow::new(Uuid::new_v4(), 0);
    app.insert_order(&order).await;

    let known = app
        .get(&format!("/orders/{}/payments", order.order_id))
        .await;
    assert_eq!(
        known.assert_ok(),
        &json!({"order_id": order.order_id, "items": []})
    );

    let unknown = app
        .get(&format!("/orders/{}/payments", Uuid::new_v4()))
        .await;
    unknown.assert_problem(404, "order.not_found");

    let with_params = app
        .get(&format!("/orders/{}/payments?limit=5", order.order_id))
        .await;
    with_params.assert_bad_parameter("request.invalid_parameter", "limit");
    app.finish().await;
}
