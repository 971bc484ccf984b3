//! `/payments/{payment_id}` and `/orders/{order_id}/payments`: projection `payments`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{ConsistencyParams, NoParams, UuidPath};
use super::problem::{PROBLEM_JSON, Problem, QueryError};
use super::{AppState, Versioned};
use crate::changes::WaitTarget;
use read_model::orders;
use read_model::payments::{self, PaymentView};

/// An order's payments.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPayments {
    /// The order.
    pub order_id: Uuid,
    /// Its payments, oldest first (`created_at`, then `payment_id`).
    pub items: Vec<PaymentView>,
}

/// One payment with its amounts, refunds and gateway outcome.
#[utoipa::path(
    get, path = "/payments/{payment_id}", tag = "payments", operation_id = "get_payment",
    params(("payment_id" = Uuid, Path, description = "The payment"), ConsistencyParams),
    responses(
        (status = 200, description = "The payment; `ETag` is its version", body = PaymentView),
        (status = 404, description = "No such payment (`payment.not_found`)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
#[instrument(skip_all, fields(payment_id = %payment_id, min_version = consistency.min_version))]
pub async fn get_payment(
    State(state): State<AppState>,
    UuidPath(payment_id): UuidPath,
    consistency: ConsistencyParams,
) -> Result<Versioned<PaymentView>, QueryError> {
    let aggregate_id = payment_id.to_string();
    let target = WaitTarget {
        projection: payments::PROJECTION,
        aggregate_type: payments::AGGREGATE_TYPE,
        aggregate_id: &aggregate_id,
    };
    state
        .ensure_version(target, consistency.min_version, || {
            payments::payment_version(&state.pool, payment_id)
        })
        .await?;
    let payment = payments::find_payment(&state.pool, payment_id)
        .await?
        .ok_or_else(|| {
            QueryError::not_found("payment.not_found", format!("no payment {payment_id}"))
        })?;
    Ok(Versioned {
        version: payment.version,
        body: payment,
    })
}

/// Every payment of an order, oldest first.
#[utoipa::path(
    get, path = "/orders/{order_id}/payments", tag = "payments", operation_id = "list_order_payments",
    params(("order_id" = Uuid, Path, description = "The order")),
    responses(
        (status = 200, description = "The order's payments (possibly none)", body = OrderPayments),
        (status = 404, description = "Neither the order nor any payment of it is known (`order.not_found`)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
#[instrument(skip_all, fields(order_id = %order_id))]
pub async fn list_order_payments(
    State(state): State<AppState>,
    UuidPath(order_id): UuidPath,
    _: NoParams,
) -> Result<Json<OrderPayments>, QueryError> {
    let items = payments::payments_of_order(&state.pool, order_id).await?;
    // The payments projection may know an order before the orders projection does, so
    // payments alone prove it exists.
    if items.is_empty() && !orders::order_exists(&state.pool, order_id).await? {
        return Err(QueryError::not_found(
            "order.not_found",
            format!("no order {order_id}"),
        ));
    }
    Ok(Json(OrderPayments { order_id, items }))
}
