//! `/inventory/{sku}`: every command of the inventory aggregate (one item per SKU).

use aggregates::inventory::{
    AddStock, AdjustStock, CommitReservation, InventoryCommand, InventoryError, ReleaseReservation,
    ReserveStock,
};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{ApiJson, CommandHeaders, SkuIdPath, SkuPath};
use super::response::{CommandResponse, CommandResult};
use super::{AppState, NoFields};
use crate::store::idempotency::{Fingerprint, IdempotentRequest};
use crate::store::{CommandError, CommandOutcome};

/// Errors of the `/inventory` routes (statuses: see `http::problem`).
pub type InventoryApiError = CommandError<InventoryError>;

type InventoryResult = Result<CommandResponse, InventoryApiError>;

/// Body of `POST /inventory/{sku}/stock`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddStockRequest {
    /// Units received; positive.
    #[schema(minimum = 1, example = 10)]
    pub quantity: u32,
}

/// Body of `POST /inventory/{sku}/adjustments`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStockRequest {
    /// Signed correction of the on-hand count; non-zero, never below what is reserved.
    #[schema(example = -2)]
    pub delta: i64,
    /// Why; non-blank, at most 500 characters.
    #[schema(example = "stock take: 2 damaged")]
    pub reason: String,
}

/// Body of `POST /inventory/{sku}/reservations`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveStockRequest {
    /// The order the units are held for (one reservation per order and SKU).
    pub order_id: Uuid,
    /// Units to hold; positive, at most what is available.
    #[schema(minimum = 1, example = 2)]
    pub quantity: u32,
}

/// Receive stock (creates the item on first use).
#[utoipa::path(
    post, path = "/inventory/{sku}/stock", tag = "inventory", operation_id = "add_stock",
    params(("sku" = String, Path, description = "The SKU")),
    request_body = AddStockRequest,
    responses((status = 200, description = "Stock added (`StockAdded`)", body = CommandResult))
)]
#[instrument(skip_all, fields(sku = %sku.0))]
pub async fn add_stock(
    State(state): State<AppState>,
    sku: SkuPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<AddStockRequest>,
) -> InventoryResult {
    let SkuPath(sku) = sku;
    let idempotency = keyed(&headers, "inventory.add_stock", sku.as_str(), &body);
    let command = AddStock {
        quantity: body.quantity,
    };
    let outcome = execute(&state, &headers, sku.as_str(), command, idempotency).await?;
    Ok(CommandResponse::ok(outcome))
}

/// Correct the on-hand count.
#[utoipa::path(
    post, path = "/inventory/{sku}/adjustments", tag = "inventory", operation_id = "adjust_stock",
    params(("sku" = String, Path, description = "The SKU")),
    request_body = AdjustStockRequest,
    responses((status = 200, description = "Stock adjusted (`StockAdjusted`)", body = CommandResult))
)]
#[instrument(skip_all, fields(sku = %sku.0))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    sku: SkuPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<AdjustStockRequest>,
) -> InventoryResult {
    let SkuPath(sku) = sku;
    let idempotency = keyed(&headers, "inventory.adjust_stock", sku.as_str(), &body);
    let command = AdjustStock {
        delta: body.delta,
        reason: body.reason,
    };
    let outcome = execute(&state, &headers, sku.as_str(), command, idempotency).await?;
    Ok(CommandResponse::ok(outcome))
}

/// Reserve stock for an order. Reserving the same quantity again for the same order
/// changes nothing (200, no events).
#[utoipa::path(
    post, path = "/inventory/{sku}/reservations", tag = "inventory", operation_id = "reserve_stock",
    params(("sku" = String, Path, description = "The SKU")),
    request_body = ReserveStockRequest,
    responses(
        (status = 201, description = "Stock reserved (`StockReserved`); `Location` names the reservation", body = CommandResult),
        (status = 200, description = "Already reserved with this quantity; nothing recorded", body = CommandResult),
    )
)]
#[instrument(skip_all, fields(sku = %sku.0, order_id = %body.order_id))]
pub async fn reserve_stock(
    State(state): State<AppState>,
    sku: SkuPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<ReserveStockRequest>,
) -> InventoryResult {
    let SkuPath(sku) = sku;
    let idempotency = keyed(&headers, "inventory.reserve_stock", sku.as_str(), &body);
    let location = format!("/inventory/{sku}/reservations/{}", body.order_id);
    let command = ReserveStock {
        order_id: body.order_id,
        quantity: body.quantity,
    };
    let outcome = execute(&state, &headers, sku.as_str(), command, idempotency).await?;
    Ok(CommandResponse::created(outcome, location))
}

/// Give an order's reserved units back.
#[utoipa::path(
    post, path = "/inventory/{sku}/reservations/{order_id}/release", tag = "inventory", operation_id = "release_reservation",
    params(("sku" = String, Path, description = "The SKU"), ("order_id" = Uuid, Path, description = "The order holding the reservation")),
    request_body(content = Option<NoFields>, description = "No fields; the body may be omitted"),
    responses((status = 200, description = "Reservation released (`ReservationReleased`)", body = CommandResult))
)]
#[instrument(skip_all, fields(sku = %path.0, order_id = %path.1))]
pub async fn release_reservation(
    State(state): State<AppState>,
    path: SkuIdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<NoFields>,
) -> InventoryResult {
    let SkuIdPath(sku, order_id) = path;
    let target = format!("{sku}/{order_id}");
    let idempotency = keyed(&headers, "inventory.release_reservation", &target, &body);
    let command = ReleaseReservation { order_id };
    let outcome = execute(&state, &headers, sku.as_str(), command, idempotency).await?;
    Ok(CommandResponse::ok(outcome))
}

/// The reserved units leave the warehouse.
#[utoipa::path(
    post, path = "/inventory/{sku}/reservations/{order_id}/commit", tag = "inventory", operation_id = "commit_reservation",
    params(("sku" = String, Path, description = "The SKU"), ("order_id" = Uuid, Path, description = "The order holding the reservation")),
    request_body(content = Option<NoFields>, description = "No fields; the body may be omitted"),
    responses((status = 200, description = "Reservation committed (`ReservationCommitted`)", body = CommandResult))
)]
#[instrument(skip_all, fields(sku = %path.0, order_id = %path.1))]
pub async fn commit_reservation(
    State(state): State<AppState>,
    path: SkuIdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<NoFields>,
) -> InventoryResult {
    let SkuIdPath(sku, order_id) = path;
    let target = format!("{sku}/{order_id}");
    let idempotency = keyed(&headers, "inventory.commit_reservation", &target, &body);
    let command = CommitReservation { order_id };
    let outcome = execute(&state, &headers, sku.as_str(), command, idempotency).await?;
    Ok(CommandResponse::ok(outcome))
}

fn keyed<B: Serialize>(
    headers: &CommandHeaders,
    operation: &str,
    target: &str,
    body: &B,
) -> Option<IdempotentRequest> {
    headers.idempotent_request(|| Fingerprint::of(operation, target, body))
}

async fn execute(
    state: &AppState,
    headers: &CommandHeaders,
    sku: &str,
    command: impl Into<InventoryCommand>,
    idempotency: Option<IdempotentRequest>,
) -> Result<CommandOutcome, InventoryApiError> {
    state
        .inventory
        .execute(state.envelope(headers, sku.to_owned(), command, idempotency))
        .await
}
