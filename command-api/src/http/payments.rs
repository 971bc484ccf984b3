//! `/payments`: every command of the payment aggregate. Gateway calls go through the
//! `PaymentGateway` port configured at start-up.

use aggregates::payment::{
    AuthorizePayment, CapturePayment, PaymentError, RefundPayment, VoidPayment,
};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tracing::{Span, field, instrument};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{ApiJson, CommandHeaders, IdPath};
use super::response::{CommandResponse, CommandResult};
use super::{AppState, MoneyBody};
use crate::store::idempotency::Fingerprint;
use crate::store::{CommandEnvelope, CommandError};

/// Errors of the `/payments` routes (statuses: see `http::problem`).
pub type PaymentApiError = CommandError<PaymentError>;

type PaymentResult = Result<CommandResponse, PaymentApiError>;

/// Body of `POST /payments`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizePaymentRequest {
    /// The new payment's id. Optional: the server chooses one when absent (derived from the
    /// `Idempotency-Key` when one is sent, so a retry reaches the gateway with the same
    /// gateway idempotency key).
    #[serde(default)]
    pub payment_id: Option<Uuid>,
    /// The order being paid.
    pub order_id: Uuid,
    /// Amount to hold; positive.
    pub amount: MoneyBody,
    /// Gateway payment-method token (never card data). The simulator declines
    /// `tok_decline`, `tok_insufficient_funds`, `tok_expired_card`, fails with
    /// `tok_timeout` / `tok_unavailable` (503) and approves anything else.
    #[schema(example = "tok_visa")]
    pub payment_method: String,
}

/// Body of `POST /payments/{payment_id}/capture`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapturePaymentRequest {
    /// Amount to take; positive, at most the authorized amount.
    pub amount: MoneyBody,
}

/// Body of `POST /payments/{payment_id}/void`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidPaymentRequest {
    /// Why; non-blank, at most 500 characters.
    pub reason: String,
}

/// Body of `POST /payments/{payment_id}/refunds`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundPaymentRequest {
    /// This refund's id; repeating a refund id with the same amount changes nothing.
    /// Optional: the server chooses one when absent (derived from the `Idempotency-Key`
    /// when one is sent).
    #[serde(default)]
    pub refund_id: Option<Uuid>,
    /// Amount to return; positive, at most what is still refundable.
    pub amount: MoneyBody,
    /// Why; non-blank, at most 500 characters.
    pub reason: String,
}

/// Authorize a payment through the gateway. A decline is recorded too (`PaymentDeclined`):
/// it is a fact, not an error.
#[utoipa::path(
    post, path = "/payments", tag = "payments", operation_id = "authorize_payment",
    request_body = AuthorizePaymentRequest,
    responses((status = 201, description = "Payment recorded: `PaymentAuthorized` or `PaymentDeclined`; `Location` names it", body = CommandResult))
)]
#[instrument(skip_all, fields(payment_id = field::Empty, order_id = %body.order_id))]
pub async fn authorize_payment(
    State(state): State<AppState>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<AuthorizePaymentRequest>,
) -> PaymentResult {
    let (payment_id, fresh_id) =
        headers.id_for_create(body.payment_id, "payment", state.ids.as_ref());
    Span::current().record("payment_id", field::display(payment_id));
    let idempotency =
        headers.idempotent_request(|| Fingerprint::of("payments.authorize", "", &body));
    let command = AuthorizePayment {
        payment_id,
        order_id: body.order_id,
        amount: body.amount.into(),
        payment_method: body.payment_method,
    };
    let envelope = CommandEnvelope {
        fresh_id,
        ..state.envelope(&headers, payment_id.to_string(), command, idempotency)
    };
    let outcome = state.payments.execute(envelope).await?;
    let location = format!("/payments/{}", outcome.aggregate_id);
    Ok(CommandResponse::created(outcome, location))
}

/// Capture an authorized payment, once.
#[utoipa::path(
    post, path = "/payments/{payment_id}/capture", tag = "payments", operation_id = "capture_payment",
    params(("payment_id" = Uuid, Path, description = "The payment")),
    request_body = CapturePaymentRequest,
    responses((status = 200, description = "Payment captured (`PaymentCaptured`)", body = CommandResult))
)]
#[instrument(skip_all, fields(payment_id = %payment_id))]
pub async fn capture_payment(
    State(state): State<AppState>,
    IdPath(payment_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<CapturePaymentRequest>,
) -> PaymentResult {
    let target = payment_id.to_string();
    let idempotency =
        headers.idempotent_request(|| Fingerprint::of("payments.capture", &target, &body));
    let command = CapturePayment {
        amount: body.amount.into(),
    };
    let outcome = state
        .payments
        .execute(state.envelope(&headers, target, command, idempotency))
        .await?;
    Ok(CommandResponse::ok(outcome))
}

/// Release an authorization that was not captured.
#[utoipa::path(
    post, path = "/payments/{payment_id}/void", tag = "payments", operation_id = "void_payment",
    params(("payment_id" = Uuid, Path, description = "The payment")),
    request_body = VoidPaymentRequest,
    responses((status = 200, description = "Authorization voided (`PaymentVoided`)", body = CommandResult))
)]
#[instrument(skip_all, fields(payment_id = %payment_id))]
pub async fn void_payment(
    State(state): State<AppState>,
    IdPath(payment_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<VoidPaymentRequest>,
) -> PaymentResult {
    let target = payment_id.to_string();
    let idempotency =
        headers.idempotent_request(|| Fingerprint::of("payments.void", &target, &body));
    let command = VoidPayment {
        reason: body.reason,
    };
    let outcome = state
        .payments
        .execute(state.envelope(&headers, target, command, idempotency))
        .await?;
    Ok(CommandResponse::ok(outcome))
}

/// Refund part or all of a captured payment.
#[utoipa::path(
    post, path = "/payments/{payment_id}/refunds", tag = "payments", operation_id = "refund_payment",
    params(("payment_id" = Uuid, Path, description = "The payment")),
    request_body = RefundPaymentRequest,
    responses((status = 201, description = "Refund recorded (`PaymentRefunded`); `Location` names it. 200 without events when this refund id was already refunded with this amount", body = CommandResult))
)]
#[instrument(skip_all, fields(payment_id = %payment_id, refund_id = field::Empty))]
pub async fn refund_payment(
    State(state): State<AppState>,
    IdPath(payment_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<RefundPaymentRequest>,
) -> PaymentResult {
    let target = payment_id.to_string();
    let refund_id = body
        .refund_id
        .unwrap_or_else(|| headers.new_id(&format!("refund:{payment_id}"), state.ids.as_ref()));
    Span::current().record("refund_id", field::display(refund_id));
    let idempotency =
        headers.idempotent_request(|| Fingerprint::of("payments.refund", &target, &body));
    let command = RefundPayment {
        refund_id,
        amount: body.amount.into(),
        reason: body.reason,
    };
    let outcome = state
        .payments
        .execute(state.envelope(&headers, target, command, idempotency))
        .await?;
    let location = format!("/payments/{payment_id}/refunds/{refund_id}");
    Ok(CommandResponse::created(outcome, location))
}
