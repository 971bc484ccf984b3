//! `/stock` and `/stock/{sku}`: projection `stock`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tracing::instrument;
use utoipa::ToSchema;

use super::cursor;
use super::extract::{ConsistencyParams, SkuPath, StockParams};
use super::problem::{PROBLEM_JSON, Problem, QueryError};
use super::{AppState, Versioned};
use crate::changes::WaitTarget;
use read_model::stock::{self, StockLevel};

/// A page of stock levels, by SKU.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockPage {
    /// At most `limit` stock levels.
    pub items: Vec<StockLevel>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The stock level of one SKU.
#[utoipa::path(
    get, path = "/stock/{sku}", tag = "stock", operation_id = "get_stock",
    params(("sku" = String, Path, description = "The SKU"), ConsistencyParams),
    responses(
        (status = 200, description = "The stock level; `ETag` is its version", body = StockLevel),
        (status = 404, description = "The SKU was never stocked (`stock.not_found`)", body = Problem, content_type = PROBLEM_JSON),
    )
)]
#[instrument(skip_all, fields(sku = %sku, min_version = consistency.min_version))]
pub async fn get_stock(
    State(state): State<AppState>,
    SkuPath(sku): SkuPath,
    consistency: ConsistencyParams,
) -> Result<Versioned<StockLevel>, QueryError> {
    let target = WaitTarget {
        projection: stock::PROJECTION,
        aggregate_type: stock::AGGREGATE_TYPE,
        aggregate_id: &sku,
    };
    state
        .ensure_version(target, consistency.min_version, || {
            stock::stock_version(&state.pool, &sku)
        })
        .await?;
    let level = stock::find_stock(&state.pool, &sku)
        .await?
        .ok_or_else(|| QueryError::not_found("stock.not_found", format!("no stock of {sku}")))?;
    Ok(Versioned {
        version: level.version,
        body: level,
    })
}

/// Every SKU's stock level, by SKU, by keyset pagination: follow `next_cursor` until it is
/// `null`.
#[utoipa::path(
    get, path = "/stock", tag = "stock", operation_id = "list_stock",
    params(StockParams),
    responses((status = 200, description = "One page", body = StockPage))
)]
#[instrument(skip_all)]
pub async fn list_stock(
    State(state): State<AppState>,
    params: StockParams,
) -> Result<Json<StockPage>, QueryError> {
    let mut items =
        stock::stock_levels(&state.pool, params.cursor.as_deref(), params.limit.fetch()).await?;
    let page_size = params.limit.get() as usize;
    let next_cursor = if items.len() > page_size {
        items.truncate(page_size);
        items.last().map(|last| cursor::encode_sku(&last.sku))
    } else {
        None
    };
    Ok(Json(StockPage { items, next_cursor }))
}
