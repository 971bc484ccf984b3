//! Given/when/then tests for every payment command outcome, the simulator's triggers, the
//! idempotency keys sent to the gateway, and property tests of the money invariants.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cqrs_es::Aggregate;
use cqrs_es::test::TestFramework;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::test_support::{run, runtime};
use crate::{Currency, DomainError, ErrorCategory, Money};

type PaymentTest = TestFramework<Payment>;

fn eur() -> Currency {
    Currency::new("EUR").unwrap()
}

fn usd() -> Currency {
    Currency::new("USD").unwrap()
}

fn eur_minor(amount: i64) -> Money {
    Money::new(amount, eur())
}

fn payment_id() -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_0000_0000_0000_0000_0a11)
}

fn order_id() -> Uuid {
    Uuid::from_u128(0x0bde_0000_0000_0000_0000_0000_0000_0001)
}

fn refund_id(n: u128) -> Uuid {
    Uuid::from_u128(0xf00d_0000 + n)
}

fn auth_code() -> String {
    format!("sim_auth_{}", payment_id().simple())
}

fn authorize(payment_method: &str) -> AuthorizePayment {
    AuthorizePayment {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: eur_minor(10_000),
        payment_method: payment_method.into(),
    }
}

fn authorized() -> PaymentEvent {
    PaymentEvent::PaymentAuthorized {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: eur_minor(10_000),
        authorization_code: auth_code(),
    }
}

fn declined(reason: DeclineReason) -> PaymentEvent {
    PaymentEvent::PaymentDeclined {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: eur_minor(10_000),
        reason,
    }
}

fn captured(amount: i64) -> PaymentEvent {
    PaymentEvent::PaymentCaptured {
        amount: eur_minor(amount),
        gateway_reference: format!("sim_capture_{}", payment_id().simple()),
    }
}

fn voided() -> PaymentEvent {
    PaymentEvent::PaymentVoided {
        reason: "order cancelled".into(),
        gateway_reference: format!("sim_void_{}", payment_id().simple()),
    }
}

fn refunded(n: u128, amount: i64) -> PaymentEvent {
    PaymentEvent::PaymentRefunded {
        refund_id: refund_id(n),
        amount: eur_minor(amount),
        reason: "returned".into(),
        gateway_reference: format!("sim_refund_{}", refund_id(n).simple()),
    }
}

fn refund(n: u128, amount: i64) -> RefundPayment {
    RefundPayment {
        refund_id: refund_id(n),
        amount: eur_minor(amount),
        reason: "returned".into(),
    }
}

fn void() -> VoidPayment {
    VoidPayment {
        reason: "order cancelled".into(),
    }
}

fn capture(amount: i64) -> CapturePayment {
    CapturePayment {
        amount: eur_minor(amount),
    }
}

fn outage() -> PaymentServices {
    PaymentServices::new(Arc::new(SimulatedPaymentGateway::failing(
        GatewayError::Unavailable {
            detail: "connection refused".into(),
        },
    )))
}

fn timing_out() -> PaymentServices {
    PaymentServices::new(Arc::new(SimulatedPaymentGateway::failing(
        GatewayError::Timeout,
    )))
}

async fn expect_events(
    given: Vec<PaymentEvent>,
    command: impl Into<PaymentCommand>,
    expected: Vec<PaymentEvent>,
) {
    PaymentTest::with(PaymentServices::simulated())
        .given(given)
        .when_async(command.into())
        .await
        .then_expect_events(expected);
}

async fn expect_error_with(
    services: PaymentServices,
    given: Vec<PaymentEvent>,
    command: impl Into<PaymentCommand>,
    expected: PaymentError,
) {
    PaymentTest::with(services)
        .given(given)
        .when_async(command.into())
        .await
        .then_expect_error(expected);
}

async fn expect_error(
    given: Vec<PaymentEvent>,
    command: impl Into<PaymentCommand>,
    expected: PaymentError,
) {
    expect_error_with(PaymentServices::simulated(), given, command, expected).await;
}

fn invalid(action: PaymentAction, status: PaymentStatus) -> PaymentError {
    PaymentError::InvalidTransition { action, status }
}

// --- AuthorizePayment ---

#[tokio::test]
async fn authorize_approved() {
    expect_events(vec![], authorize("tok_visa"), vec![authorized()]).await;
}

#[tokio::test]
async fn authorize_declined_is_recorded() {
    for (token, reason) in [
        ("tok_decline", DeclineReason::CardDeclined),
        ("tok_insufficient_funds", DeclineReason::InsufficientFunds),
        ("tok_expired_card", DeclineReason::ExpiredCard),
    ] {
        expect_events(vec![], authorize(token), vec![declined(reason)]).await;
    }
}

#[tokio::test]
async fn authorize_timeout_is_transient_and_records_nothing() {
    expect_error(
        vec![],
        authorize("tok_timeout"),
        PaymentError::GatewayTimeout,
    )
    .await;
}

#[tokio::test]
async fn authorize_unavailable_is_transient_and_records_nothing() {
    expect_error(
        vec![],
        authorize("tok_unavailable"),
        PaymentError::GatewayUnavailable {
            detail: "simulated outage".into(),
        },
    )
    .await;
}

#[tokio::test]
async fn authorize_rejects_non_positive_amount() {
    for amount in [0, -1] {
        let command = AuthorizePayment {
            amount: eur_minor(amount),
            ..authorize("tok_visa")
        };
        expect_error(vec![], command, PaymentError::InvalidAmount).await;
    }
}

#[tokio::test]
async fn authorize_rejects_invalid_payment_method() {
    for token in [
        String::new(),
        " ".into(),
        "x".repeat(201),
        "tok\u{7}".into(),
    ] {
        expect_error(
            vec![],
            authorize(&token),
            PaymentError::InvalidPaymentMethod,
        )
        .await;
    }
}

#[tokio::test]
async fn authorize_rejects_existing_payment() {
    expect_error(
        vec![authorized()],
        authorize("tok_visa"),
        invalid(PaymentAction::Authorize, PaymentStatus::Authorized),
    )
    .await;
    expect_error(
        vec![declined(DeclineReason::CardDeclined)],
        authorize("tok_visa"),
        invalid(PaymentAction::Authorize, PaymentStatus::Declined),
    )
    .await;
}

// --- CapturePayment ---

#[tokio::test]
async fn capture_full_amount() {
    expect_events(vec![authorized()], capture(10_000), vec![captured(10_000)]).await;
}

#[tokio::test]
async fn capture_partial_amount() {
    expect_events(vec![authorized()], capture(2_500), vec![captured(2_500)]).await;
}

#[tokio::test]
async fn capture_rejects_more_than_authorized() {
    expect_error(
        vec![authorized()],
        capture(10_001),
        PaymentError::CaptureExceedsAuthorization {
            requested: eur_minor(10_001),
            authorized: eur_minor(10_000),
        },
    )
    .await;
}

#[tokio::test]
async fn capture_rejects_non_positive_amount() {
    expect_error(vec![authorized()], capture(0), PaymentError::InvalidAmount).await;
}

#[tokio::test]
async fn capture_rejects_other_currency() {
    expect_error(
        vec![authorized()],
        CapturePayment {
            amount: Money::new(100, usd()),
        },
        PaymentError::CurrencyMismatch {
            expected: eur(),
            actual: usd(),
        },
    )
    .await;
}

#[tokio::test]
async fn capture_rejects_unknown_payment() {
    expect_error(vec![], capture(100), PaymentError::NotFound).await;
}

#[tokio::test]
async fn capture_rejects_declined_voided_or_captured_payment() {
    let cases = [
        (
            vec![declined(DeclineReason::CardDeclined)],
            PaymentStatus::Declined,
        ),
        (vec![authorized(), voided()], PaymentStatus::Voided),
        (vec![authorized(), captured(100)], PaymentStatus::Captured),
    ];
    for (given, status) in cases {
        expect_error(given, capture(100), invalid(PaymentAction::Capture, status)).await;
    }
}

#[tokio::test]
async fn capture_during_gateway_outage_is_transient() {
    expect_error_with(
        outage(),
        vec![authorized()],
        capture(100),
        PaymentError::GatewayUnavailable {
            detail: "connection refused".into(),
        },
    )
    .await;
    expect_error_with(
        timing_out(),
        vec![authorized()],
        capture(100),
        PaymentError::GatewayTimeout,
    )
    .await;
}

// --- VoidPayment ---

#[tokio::test]
async fn void_authorized_payment() {
    expect_events(vec![authorized()], void(), vec![voided()]).await;
}

#[tokio::test]
async fn void_rejects_blank_reason() {
    expect_error(
        vec![authorized()],
        VoidPayment { reason: "".into() },
        PaymentError::InvalidReason,
    )
    .await;
}

#[tokio::test]
async fn void_rejects_unknown_payment() {
    expect_error(vec![], void(), PaymentError::NotFound).await;
}

#[tokio::test]
async fn void_rejects_captured_declined_or_voided_payment() {
    let cases = [
        (vec![authorized(), captured(100)], PaymentStatus::Captured),
        (
            vec![declined(DeclineReason::InsufficientFunds)],
            PaymentStatus::Declined,
        ),
        (vec![authorized(), voided()], PaymentStatus::Voided),
    ];
    for (given, status) in cases {
        expect_error(given, void(), invalid(PaymentAction::Void, status)).await;
    }
}

#[tokio::test]
async fn void_during_gateway_outage_is_transient() {
    expect_error_with(
        outage(),
        vec![authorized()],
        void(),
        PaymentError::GatewayUnavailable {
            detail: "connection refused".into(),
        },
    )
    .await;
}

// --- RefundPayment ---

#[tokio::test]
async fn refund_part_of_the_capture() {
    expect_events(
        vec![authorized(), captured(8_000)],
        refund(1, 3_000),
        vec![refunded(1, 3_000)],
    )
    .await;
}

#[tokio::test]
async fn refund_the_rest_of_the_capture() {
    expect_events(
        vec![authorized(), captured(8_000), refunded(1, 3_000)],
        refund(2, 5_000),
        vec![refunded(2, 5_000)],
    )
    .await;
}

#[tokio::test]
async fn refund_rejects_more_than_captured() {
    expect_error(
        vec![authorized(), captured(8_000)],
        refund(1, 8_001),
        PaymentError::RefundExceedsCaptured {
            requested: eur_minor(8_001),
            refundable: eur_minor(8_000),
        },
    )
    .await;
}

#[tokio::test]
async fn refund_rejects_more_than_what_is_left() {
    expect_error(
        vec![authorized(), captured(8_000), refunded(1, 3_000)],
        refund(2, 5_001),
        PaymentError::RefundExceedsCaptured {
            requested: eur_minor(5_001),
            refundable: eur_minor(5_000),
        },
    )
    .await;
}

#[tokio::test]
async fn refund_retried_with_same_id_and_amount_is_a_no_op() {
    expect_events(
        vec![authorized(), captured(8_000), refunded(1, 3_000)],
        refund(1, 3_000),
        vec![],
    )
    .await;
    // Also once the payment is fully refunded.
    expect_events(
        vec![authorized(), captured(8_000), refunded(1, 8_000)],
        refund(1, 8_000),
        vec![],
    )
    .await;
}

#[tokio::test]
async fn refund_rejects_reused_id_with_other_amount() {
    expect_error(
        vec![authorized(), captured(8_000), refunded(1, 3_000)],
        refund(1, 1_000),
        PaymentError::RefundConflict {
            refund_id: refund_id(1),
        },
    )
    .await;
}

#[tokio::test]
async fn refund_rejects_fully_refunded_payment() {
    expect_error(
        vec![authorized(), captured(8_000), refunded(1, 8_000)],
        refund(2, 1),
        invalid(PaymentAction::Refund, PaymentStatus::Refunded),
    )
    .await;
}

#[tokio::test]
async fn refund_rejects_uncaptured_payment() {
    let cases = [
        (vec![authorized()], PaymentStatus::Authorized),
        (vec![authorized(), voided()], PaymentStatus::Voided),
        (
            vec![declined(DeclineReason::ExpiredCard)],
            PaymentStatus::Declined,
        ),
    ];
    for (given, status) in cases {
        expect_error(
            given,
            refund(1, 100),
            invalid(PaymentAction::Refund, status),
        )
        .await;
    }
}

#[tokio::test]
async fn refund_rejects_unknown_payment() {
    expect_error(vec![], refund(1, 100), PaymentError::NotFound).await;
}

#[tokio::test]
async fn refund_rejects_invalid_input() {
    let given = vec![authorized(), captured(8_000)];
    expect_error(given.clone(), refund(1, 0), PaymentError::InvalidAmount).await;
    expect_error(
        given.clone(),
        RefundPayment {
            reason: " ".into(),
            ..refund(1, 100)
        },
        PaymentError::InvalidReason,
    )
    .await;
    expect_error(
        given,
        RefundPayment {
            amount: Money::new(100, usd()),
            ..refund(1, 100)
        },
        PaymentError::CurrencyMismatch {
            expected: eur(),
            actual: usd(),
        },
    )
    .await;
}

#[tokio::test]
async fn refund_during_gateway_outage_is_transient() {
    expect_error_with(
        timing_out(),
        vec![authorized(), captured(8_000)],
        refund(1, 100),
        PaymentError::GatewayTimeout,
    )
    .await;
}

// --- The whole status machine ---

fn history(status: PaymentStatus) -> Vec<PaymentEvent> {
    match status {
        PaymentStatus::Authorized => vec![authorized()],
        PaymentStatus::Declined => vec![declined(DeclineReason::CardDeclined)],
        PaymentStatus::Voided => vec![authorized(), voided()],
        PaymentStatus::Captured => vec![authorized(), captured(10_000)],
        PaymentStatus::Refunded => vec![authorized(), captured(10_000), refunded(1, 10_000)],
    }
}

fn command_for(action: PaymentAction) -> PaymentCommand {
    match action {
        PaymentAction::Authorize => authorize("tok_visa").into(),
        PaymentAction::Capture => capture(100).into(),
        PaymentAction::Void => void().into(),
        PaymentAction::Refund => refund(2, 100).into(),
    }
}

#[tokio::test]
async fn every_status_and_action_follows_the_status_machine() {
    for status in PaymentStatus::ALL {
        for action in PaymentAction::ALL {
            let outcome = PaymentTest::with(PaymentServices::simulated())
                .given(history(status))
                .when_async(command_for(action))
                .await
                .inspect_result();
            if status.allows(action) {
                assert!(outcome.is_ok(), "{action} from {status}: {outcome:?}");
            } else {
                assert_eq!(
                    outcome,
                    Err(invalid(action, status)),
                    "{action} from {status}"
                );
            }
        }
    }
}

// --- Gateway port ---

/// Records every idempotency key it is given, then answers like the simulator.
#[derive(Debug, Default)]
struct RecordingGateway {
    keys: Mutex<Vec<String>>,
    simulator: SimulatedPaymentGateway,
}

impl RecordingGateway {
    fn record(&self, key: &str) {
        self.keys.lock().unwrap().push(key.to_owned());
    }
}

#[async_trait]
impl PaymentGateway for RecordingGateway {
    async fn authorize(
        &self,
        request: AuthorizationRequest,
    ) -> Result<AuthorizationOutcome, GatewayError> {
        self.record(&request.idempotency_key);
        self.simulator.authorize(request).await
    }

    async fn capture(&self, request: CaptureRequest) -> Result<GatewayReceipt, GatewayError> {
        self.record(&request.idempotency_key);
        assert_eq!(request.authorization_code, auth_code());
        self.simulator.capture(request).await
    }

    async fn void(&self, request: VoidRequest) -> Result<GatewayReceipt, GatewayError> {
        self.record(&request.idempotency_key);
        assert_eq!(request.authorization_code, auth_code());
        self.simulator.void(request).await
    }

    async fn refund(&self, request: RefundRequest) -> Result<GatewayReceipt, GatewayError> {
        self.record(&request.idempotency_key);
        self.simulator.refund(request).await
    }
}

#[test]
fn gateway_calls_carry_idempotency_keys_derived_from_the_payment_id() {
    let runtime = runtime();
    let gateway = Arc::new(RecordingGateway::default());
    let services = PaymentServices::new(gateway.clone());
    let mut payment = Payment::default();
    for command in [
        PaymentCommand::from(authorize("tok_visa")),
        capture(5_000).into(),
        refund(7, 1_000).into(),
        refund(7, 1_000).into(),
    ] {
        run(&runtime, &mut payment, command, &services).unwrap();
    }
    let mut voided_payment = Payment::default();
    run(
        &runtime,
        &mut voided_payment,
        authorize("tok_visa").into(),
        &services,
    )
    .unwrap();
    run(&runtime, &mut voided_payment, void().into(), &services).unwrap();

    let id = payment_id();
    assert_eq!(
        *gateway.keys.lock().unwrap(),
        [
            id.to_string(),
            format!("{id}:capture"),
            format!("{id}:refund:{}", refund_id(7)),
            // The retried refund is answered from the aggregate: no second gateway call.
            id.to_string(),
            format!("{id}:void"),
        ]
    );
}

#[test]
fn apply_tracks_amounts_and_status() {
    let mut payment = Payment::default();
    assert_eq!(payment.status(), None);
    for event in [authorized(), captured(8_000), refunded(1, 3_000)] {
        payment.apply(event);
    }
    assert_eq!(payment.status(), Some(PaymentStatus::Captured));
    assert_eq!(payment.payment_id(), Some(payment_id()));
    assert_eq!(payment.order_id(), Some(order_id()));
    assert_eq!(payment.authorized_amount(), Some(eur_minor(10_000)));
    assert_eq!(payment.captured_amount(), Some(eur_minor(8_000)));
    assert_eq!(payment.refunded_amount(), Some(eur_minor(3_000)));
    payment.apply(refunded(2, 5_000));
    assert_eq!(payment.status(), Some(PaymentStatus::Refunded));

    let mut declined_payment = Payment::default();
    declined_payment.apply(declined(DeclineReason::InsufficientFunds));
    assert_eq!(
        declined_payment.decline_reason(),
        Some(DeclineReason::InsufficientFunds)
    );
}

#[test]
fn commands_reject_unknown_fields() {
    let json = r#"{"amount":{"amount_minor":5,"currency":"EUR"},"card_number":"4242"}"#;
    assert!(serde_json::from_str::<CapturePayment>(json).is_err());
    let json = r#"{"CapturePayment":{"amount":{"amount_minor":5,"currency":"EUR"}}}"#;
    assert_eq!(
        serde_json::from_str::<PaymentCommand>(json).unwrap(),
        capture(5).into()
    );
}

#[test]
fn event_types_are_the_variant_names() {
    assert_eq!(
        PaymentEvent::EVENT_TYPES,
        [
            "PaymentAuthorized",
            "PaymentDeclined",
            "PaymentCaptured",
            "PaymentVoided",
            "PaymentRefunded"
        ]
    );
}

#[test]
fn error_codes_and_categories() {
    use ErrorCategory::*;
    let cases = [
        (
            PaymentError::InvalidAmount,
            "payment.invalid_amount",
            Validation,
        ),
        (
            PaymentError::InvalidPaymentMethod,
            "payment.invalid_payment_method",
            Validation,
        ),
        (
            PaymentError::InvalidReason,
            "payment.invalid_reason",
            Validation,
        ),
        (
            PaymentError::CurrencyMismatch {
                expected: eur(),
                actual: usd(),
            },
            "payment.currency_mismatch",
            Validation,
        ),
        (PaymentError::NotFound, "payment.not_found", NotFound),
        (
            invalid(PaymentAction::Void, PaymentStatus::Captured),
            "payment.invalid_transition",
            InvalidState,
        ),
        (
            PaymentError::CaptureExceedsAuthorization {
                requested: eur_minor(2),
                authorized: eur_minor(1),
            },
            "payment.capture_exceeds_authorization",
            InvalidState,
        ),
        (
            PaymentError::RefundExceedsCaptured {
                requested: eur_minor(2),
                refundable: eur_minor(1),
            },
            "payment.refund_exceeds_captured",
            InvalidState,
        ),
        (
            PaymentError::RefundConflict {
                refund_id: refund_id(1),
            },
            "payment.refund_conflict",
            InvalidState,
        ),
        (
            PaymentError::GatewayTimeout,
            "payment.gateway_timeout",
            Transient,
        ),
        (
            PaymentError::GatewayUnavailable { detail: "x".into() },
            "payment.gateway_unavailable",
            Transient,
        ),
    ];
    for (error, code, category) in cases {
        assert_eq!(
            (error.code(), error.category()),
            (code, category),
            "{error}"
        );
    }
    // The outage detail is for logs; the message a client may see stays generic.
    assert_eq!(
        PaymentError::GatewayUnavailable {
            detail: "10.0.0.7 refused".into()
        }
        .to_string(),
        "payment gateway unavailable"
    );
}

// --- Properties ---

fn arbitrary_follow_up() -> impl Strategy<Value = PaymentCommand> {
    let amount = prop_oneof![
        9 => (-10i64..=12_000).prop_map(eur_minor),
        1 => Just(Money::new(100, usd())),
    ];
    prop_oneof![
        3 => amount.clone().prop_map(|amount| CapturePayment { amount }.into()),
        1 => Just(void().into()),
        6 => ((1u128..=4), amount).prop_map(|(n, amount)| RefundPayment {
            refund_id: refund_id(n),
            amount,
            reason: "returned".into(),
        }
        .into()),
    ]
}

proptest! {
    #[test]
    fn captures_never_exceed_authorization_and_refunds_never_exceed_captures(
        commands in proptest::collection::vec(arbitrary_follow_up(), 0..40)
    ) {
        let runtime = runtime();
        let services = PaymentServices::simulated();
        let mut payment = Payment::default();
        run(&runtime, &mut payment, authorize("tok_visa").into(), &services).unwrap();
        let (mut captured_total, mut refunded_total) = (0i128, 0i128);

        for command in commands {
            let before = payment.clone();
            match run(&runtime, &mut payment, command, &services) {
                Err(_) => prop_assert_eq!(&payment, &before, "a rejection must change nothing"),
                Ok(events) => {
                    for event in events {
                        match event {
                            PaymentEvent::PaymentCaptured { amount, .. } => {
                                prop_assert_eq!(amount.currency, eur());
                                captured_total += i128::from(amount.amount_minor);
                            }
                            PaymentEvent::PaymentRefunded { amount, .. } => {
                                prop_assert!(amount.is_positive());
                                prop_assert_eq!(amount.currency, eur());
                                refunded_total += i128::from(amount.amount_minor);
                            }
                            PaymentEvent::PaymentVoided { .. } => {}
                            other => prop_assert!(false, "unexpected event {:?}", other),
                        }
                    }
                }
            }
            prop_assert!(captured_total <= 10_000, "captured more than authorized");
            prop_assert!(refunded_total <= captured_total, "refunded more than captured");
            prop_assert_eq!(
                i128::from(payment.captured_amount().map_or(0, |m| m.amount_minor)),
                captured_total
            );
            prop_assert_eq!(
                payment.refunded_amount().map(|m| i128::from(m.amount_minor)),
                Some(refunded_total)
            );
        }
    }
}
