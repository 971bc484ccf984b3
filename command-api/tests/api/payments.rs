//! `/payments`: authorize (approve / decline / gateway failure), capture, void, refund.

use std::sync::Arc;

use aggregates::payment::{GatewayError, SimulatedPaymentGateway};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestOptions, spawn_app, spawn_app_with};

fn eur(amount_minor: i64) -> serde_json::Value {
    json!({"amount_minor": amount_minor, "currency": "EUR"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_capture_and_refund_until_fully_refunded() {
    let app = spawn_app().await;
    let payment_id = Uuid::new_v4();
    let authorized = app
        .post(
            "/payments",
            json!({"payment_id": payment_id, "order_id": Uuid::new_v4(), "amount": eur(5000), "payment_method": "tok_visa"}),
        )
        .await;
    authorized.assert_accepted(201, 1);
    assert_eq!(
        authorized.header("location"),
        Some(format!("/payments/{payment_id}").as_str())
    );
    assert_eq!(authorized.event_types(), ["PaymentAuthorized"]);

    let captured = app
        .post(
            &format!("/payments/{payment_id}/capture"),
            json!({"amount": eur(4000)}),
        )
        .await;
    captured.assert_accepted(200, 2);
    assert_eq!(captured.event_types(), ["PaymentCaptured"]);

    let refund_id = Uuid::new_v4();
    let refunds = format!("/payments/{payment_id}/refunds");
    let partial = app
        .post(
            &refunds,
            json!({"refund_id": refund_id, "amount": eur(1500), "reason": "damaged"}),
        )
        .await;
    partial.assert_accepted(201, 3);
    assert_eq!(
        partial.header("location"),
        Some(format!("{refunds}/{refund_id}").as_str())
    );

    // The same refund again changes nothing: 200, no events, same version.
    let repeated = app
        .post(
            &refunds,
            json!({"refund_id": refund_id, "amount": eur(1500), "reason": "damaged"}),
        )
        .await;
    repeated.assert_accepted(200, 3);
    assert_eq!(repeated.body["events"], json!([]));

    let before = app.event_count().await;
    app.post(&refunds, json!({"amount": eur(3000), "reason": "too much"}))
        .await
        .assert_problem(409, "payment.refund_exceeds_captured");
    assert_eq!(app.event_count().await, before);

    let rest = app
        .post(&refunds, json!({"amount": eur(2500), "reason": "rest"}))
        .await;
    rest.assert_accepted(201, 4);
    let location = rest.header("location").unwrap();
    assert!(location.starts_with(&format!("{refunds}/")), "{location}");

    app.post(
        &format!("/payments/{payment_id}/void"),
        json!({"reason": "too late"}),
    )
    .await
    .assert_problem(409, "payment.invalid_transition");
    let types: Vec<String> = app
        .events_of("payment", &payment_id.to_string())
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "PaymentAuthorized",
            "PaymentCaptured",
            "PaymentRefunded",
            "PaymentRefunded"
        ]
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_can_be_voided_but_not_captured_afterwards() {
    let app = spawn_app().await;
    let payment_id = app.authorized_payment().await;

    let voided = app
        .post(
            &format!("/payments/{payment_id}/void"),
            json!({"reason": "order cancelled"}),
        )
        .await;
    voided.assert_accepted(200, 2);
    assert_eq!(voided.event_types(), ["PaymentVoided"]);

    app.post(
        &format!("/payments/{payment_id}/capture"),
        json!({"amount": eur(100)}),
    )
    .await
    .assert_problem(409, "payment.invalid_transition");
    app.post(
        &format!("/payments/{payment_id}/capture"),
        json!({"amount": eur(0)}),
    )
    .await
    .assert_problem(422, "payment.invalid_amount");
    assert_eq!(app.event_count().await, 2);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_is_recorded_as_a_fact() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/payments",
            json!({"order_id": Uuid::new_v4(), "amount": eur(5000), "payment_method": "tok_insufficient_funds"}),
        )
        .await;
    response.assert_accepted(201, 1);
    assert_eq!(response.event_types(), ["PaymentDeclined"]);
    let payment_id = response.body["aggregate_id"].as_str().unwrap();
    let stored = app.events_of("payment", payment_id).await;
    assert_eq!(
        stored[0].payload["PaymentDeclined"]["reason"],
        "InsufficientFunds"
    );

    app.post(
        &format!("/payments/{payment_id}/capture"),
        json!({"amount": eur(5000)}),
    )
    .await
    .assert_problem(409, "payment.invalid_transition");
    assert_eq!(app.event_count().await, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_timeout_is_503_with_retry_after_and_writes_nothing() {
    let app = spawn_app().await;
    for (token, code) in [
        ("tok_timeout", "payment.gateway_timeout"),
        ("tok_unavailable", "payment.gateway_unavailable"),
    ] {
        let response = app
            .post(
                "/payments",
                json!({"order_id": Uuid::new_v4(), "amount": eur(5000), "payment_method": token}),
            )
            .await;
        let problem = response.assert_problem(503, code);
        assert_eq!(response.header("retry-after"), Some("1"));
        assert!(
            !problem["detail"].as_str().unwrap().contains("simulated"),
            "adapter detail stays in the log: {problem}"
        );
    }
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_outage_fails_captures_with_503_and_nothing_is_recorded() {
    let app = spawn_app_with(TestOptions {
        gateway: Arc::new(SimulatedPaymentGateway::failing(
            GatewayError::Unavailable {
                detail: "connection refused by psp.internal:443".into(),
            },
        )),
        ..TestOptions::default()
    })
    .await;
    let response = app
        .post(
            "/payments",
            json!({"order_id": Uuid::new_v4(), "amount": eur(5000), "payment_method": "tok_visa"}),
        )
        .await;
    response.assert_problem(503, "payment.gateway_unavailable");
    assert!(!response.text.contains("psp.internal"), "{}", response.text);
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_an_unknown_payment_are_404() {
    let app = spawn_app().await;
    let unknown = Uuid::new_v4();
    for (path, body) in [
        ("capture", json!({"amount": eur(100)})),
        ("void", json!({"reason": "r"})),
        ("refunds", json!({"amount": eur(100), "reason": "r"})),
    ] {
        app.post(&format!("/payments/{unknown}/{path}"), body)
            .await
            .assert_problem(404, "payment.not_found");
    }
    assert_eq!(app.event_count().await, 0);
    app.finish().await;
}
