//! `/orders/{order_id}` and `/customers/{customer_id}/orders`: projection `orders`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tracing::instrument;
use utoipa::ToSchema;

use super::cursor;
use super::extract::{ConsistencyParams, CustomerOrdersParams, UuidPath};
use super::problem::{PROBLEM_JSON, Problem, QueryError};
use super::{AppState, Versioned};
use crate::changes::WaitTarget;
use read_model::orders::{self, CustomerOrder, CustomerOrderPosition, OrderView};

/// A page of a customer's orders, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerOrdersPage {
    /// At most `limit` orders.
    pub items: Vec<CustomerOrder>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One order with its lines, totals, stock reservations and payments.
#[utoipa::path(
    get, path = "/orders/{order_id}", tag = "orders", operation_id = "get_order",
    params(("order_id" = Uuid, Path, description = "The order"), ConsistencyParams),
    responses(
        (status = 200, description = "The order view; `ETag` is its version", body = OrderView),
        (status = 404, description = "No such order (`order.not_found`)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
#[instrument(skip_all, fields(order_id = %order_id, min_version = consistency.min_version))]
pub async fn get_order(
    State(state): State<AppState>,
    UuidPath(order_id): UuidPath,
    consistency: ConsistencyParams,
) -> Result<Versioned<OrderView>, QueryError> {
    let aggregate_id = order_id.to_string();
    let target = WaitTarget {
        projection: orders::PROJECTION,
        aggregate_type: orders::AGGREGATE_TYPE,
        aggregate_id: &aggregate_id,
    };
    state
        .ensure_version(target, consistency.min_version, || {
            orders::order_version(&state.pool, order_id)
        })
        .await?;
    let order = orders::find_order(&state.pool, order_id)
        .await?
        .ok_or_else(|| QueryError::not_found("order.not_found", format!("no order {order_id}")))?;
    Ok(Versioned {
        version: order.version,
        body: order,
    })
}

/// A customer's orders, newest first (`created_at`, then `order_id`, descending), by
/// keyset pagination: follow `next_cursor` until it is `null`. Orders created while paging
/// sort before the cursor and are not mixed into later pages.
#[utoipa::path(
    get, path = "/customers/{customer_id}/orders", tag = "orders", operation_id = "list_customer_orders",
    params(("customer_id" = Uuid, Path, description = "The customer"), CustomerOrdersParams),
    responses(
        (status = 200, description = "One page (empty for an unknown customer)", body = CustomerOrdersPage),
    )
)]
#[instrument(skip_all, fields(customer_id = %customer_id))]
pub async fn list_customer_orders(
    State(state): State<AppState>,
    UuidPath(customer_id): UuidPath,
    params: CustomerOrdersParams,
) -> Result<Json<CustomerOrdersPage>, QueryError> {
    let mut items = orders::customer_orders(
        &state.pool,
        customer_id,
        params.status,
        params.cursor,
        params.limit.fetch(),
    )
    .await?;
    let page_size = params.limit.get() as usize;
    let next_cursor = if items.len() > page_size {
        items.truncate(page_size);
        items.last().map(|last| {
            cursor::encode_customer_order(&CustomerOrderPosition {
                created_at: last.created_at,
                order_id: last.order_id,
            })
        })
    } else {
        None
    };
    Ok(Json(CustomerOrdersPage { items, next_cursor }))
}
