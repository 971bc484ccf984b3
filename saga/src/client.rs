//! Sends the saga's commands to the command API over HTTP, like any other client: the
//! saga gets no back door into the event store, and its commands get the same validation,
//! concurrency control, idempotency and audit metadata as everyone else's.

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::machine::{Fulfilment, SAGA_ACTOR, SagaCommand};
use crate::store::QueuedCommand;
use schemas::http_headers::{
    ACTOR as X_ACTOR, CAUSATION_ID as X_CAUSATION_ID, CORRELATION_ID as X_CORRELATION_ID,
    IDEMPOTENCY_KEY,
};

/// What became of one attempt to send a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx: recorded (or an idempotent repeat of something already recorded).
    Accepted,
    /// Refused for good (a 4xx other than a concurrency conflict): nothing was recorded,
    /// and sending it again would be refused again.
    Rejected {
        /// The problem's `code`.
        code: String,
    },
    /// No usable answer (network, 5xx, 503 from a gateway or an open circuit, 409
    /// concurrency conflict, 429): send it again later, with the same key.
    Transient {
        /// The problem's `code`, or the transport error.
        error: String,
    },
}

/// HTTP client of the command API.
#[derive(Debug, Clone)]
pub struct CommandClient {
    http: reqwest::Client,
    base_url: String,
    bearer_token: Option<BearerToken>,
}

/// The saga's token for the command API (its subject is the actor of the saga's commands).
#[derive(Clone)]
pub struct BearerToken(pub String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

impl CommandClient {
    /// A client for the command API at `base_url` (e.g. `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// The HTTP client cannot be built (TLS backend initialisation).
    pub fn new(
        base_url: &str,
        request_timeout: Duration,
        bearer_token: Option<BearerToken>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(request_timeout)
                .build()?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            bearer_token,
        })
    }

    /// Sends one queued command of `saga`.
    pub async fn send(&self, saga: &Fulfilment, queued: &QueuedCommand) -> Delivery {
        let (method, path, body) = request_for(saga, &queued.command);
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header(IDEMPOTENCY_KEY, &queued.idempotency_key)
            .header(X_CORRELATION_ID, saga.correlation_id.to_string())
            .header(X_CAUSATION_ID, queued.causation_id.to_string())
            .header(X_ACTOR, SAGA_ACTOR);
        // The current span is a child of the cause's trace when traces are exported;
        // otherwise the cause's own context goes on, so the resulting events still carry
        // its trace id. A stored value that is no header value is dropped, not sent, or
        // the request would fail forever.
        let traceparent = ops::telemetry::current_traceparent().or_else(|| {
            queued
                .traceparent
                .clone()
                .filter(|value| HeaderValue::from_str(value).is_ok())
        });
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        if let Some(token) = &self.bearer_token {
            request = request.bearer_auth(&token.0);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Delivery::Transient {
                    error: format!("transport: {error}"),
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Delivery::Accepted;
        }
        let code = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|problem| problem["code"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("http.{}", status.as_u16()));
        classify(status, code)
    }
}

fn classify(status: StatusCode, code: String) -> Delivery {
    // 401/403 say the saga's credentials are wrong, not that the business said no: retry
    // (an operator can fix the token) rather than compensate a healthy order.
    let transient = status.is_server_error()
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || code == "concurrency.conflict";
    if transient {
        Delivery::Transient { error: code }
    } else {
        Delivery::Rejected { code }
    }
}

fn request_for(saga: &Fulfilment, command: &SagaCommand) -> (Method, String, Option<Value>) {
    let order_id: Uuid = saga.order_id;
    let payment_id: Uuid = saga.payment_id;
    let money = |amount: &aggregates::Money| json!({"amount_minor": amount.amount_minor, "currency": amount.currency});
    match command {
        SagaCommand::ReserveStock { sku, quantity } => (
            Method::POST,
            format!("/inventory/{sku}/reservations"),
            Some(json!({"order_id": order_id, "quantity": quantity})),
        ),
        SagaCommand::ReleaseReservation { sku } => (
            Method::POST,
            format!("/inventory/{sku}/reservations/{order_id}/release"),
            None,
        ),
        SagaCommand::CommitReservation { sku } => (
            Method::POST,
            format!("/inventory/{sku}/reservations/{order_id}/commit"),
            None,
        ),
        SagaCommand::ReturnStock {
            sku,
            quantity,
            reason,
        } => (
            Method::POST,
            format!("/inventory/{sku}/adjustments"),
            Some(json!({"delta": quantity, "reason": reason})),
        ),
        SagaCommand::AuthorizePayment {
            amount,
            payment_method,
        } => (
            Method::POST,
            "/payments".into(),
            Some(json!({
                "payment_id": payment_id,
                "order_id": order_id,
                "amount": money(amount),
                "payment_method": payment_method,
            })),
        ),
        SagaCommand::CapturePayment { amount } => (
            Method::POST,
            format!("/payments/{payment_id}/capture"),
            Some(json!({"amount": money(amount)})),
        ),
        SagaCommand::VoidPayment { reason } => (
            Method::POST,
            format!("/payments/{payment_id}/void"),
            Some(json!({"reason": reason})),
        ),
        SagaCommand::RefundPayment {
            refund_id,
            amount,
            reason,
        } => (
            Method::POST,
            format!("/payments/{payment_id}/refunds"),
            Some(json!({"refund_id": refund_id, "amount": money(amount), "reason": reason})),
        ),
        SagaCommand::ConfirmOrder => (Method::POST, format!("/orders/{order_id}/confirm"), None),
        SagaCommand::CancelOrder { reason } => (
            Method::POST,
            format!("/orders/{order_id}/cancel"),
            Some(json!({"reason": reason})),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_final_and_outages_are_retried() {
        let rejected = |status: u16, code: &str| {
            classify(StatusCode::from_u16(status).unwrap(), code.to_owned())
        };
        assert_eq!(
            rejected(409, "inventory.insufficient_stock"),
            Delivery::Rejected {
                code: "inventory.insufficient_stock".into()
            }
        );
        assert!(matches!(
            rejected(422, "payment.invalid_payment_method"),
            Delivery::Rejected { .. }
        ));
        assert!(matches!(
            rejected(404, "inventory.reservation_not_found"),
            Delivery::Rejected { .. }
        ));
        for (status, code) in [
            (409, "concurrency.conflict"),
            (503, "payment.gateway_unavailable"),
            (503, "payment.gateway_timeout"),
            (500, "service.internal_error"),
            (429, "http.429"),
        ] {
            assert!(
                matches!(rejected(status, code), Delivery::Transient { .. }),
                "{status} {code}"
            );
        }
    }
}
