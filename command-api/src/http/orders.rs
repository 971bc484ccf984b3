//! `/orders`: every command of the order aggregate.

use aggregates::Currency;
use aggregates::Sku;
use aggregates::customer::{CustomerDetails, ShippingAddress};
use aggregates::order::{
    AddOrderLine, CancelOrder, ChangeOrderLineQuantity, ConfirmOrder, CreateOrder, DeliverOrder,
    OrderError, PlaceOrder, RemoveOrderLine, ShipOrder,
};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tracing::{Span, field, instrument};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{ApiJson, CommandHeaders, IdPath, IdSkuPath};
use super::response::{CommandResponse, CommandResult};
use super::{AppState, MoneyBody, NoFields};
use crate::store::idempotency::Fingerprint;
use crate::store::{CommandEnvelope, CommandError};

/// Errors of the `/orders` routes (statuses: see `http::problem`).
pub type OrderApiError = CommandError<OrderError>;

type OrderResult = Result<CommandResponse, OrderApiError>;

/// The customer's personal data on an order: sealed under the customer's data key before
/// anything is recorded, erased everywhere when the customer is forgotten.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerDetailsBody {
    /// Full name; non-blank, at most 200 characters, no control characters.
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    /// Email address (`name@example.com`), at most 254 characters.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Where the order goes.
    pub shipping_address: ShippingAddressBody,
}

// Personal data never reaches a log through `Debug`.
impl std::fmt::Debug for CustomerDetailsBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerDetailsBody(<personal data>)")
    }
}

/// A postal address.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddressBody {
    /// Street and number; non-blank, at most 200 characters.
    #[schema(example = "12 St James's Square")]
    pub line1: String,
    /// Anything else (flat, building); if present non-blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City; non-blank, at most 200 characters.
    #[schema(example = "London")]
    pub city: String,
    /// Postal code; non-blank, at most 20 characters.
    #[schema(example = "SW1Y 4JH")]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    #[schema(example = "GB", pattern = "^[A-Z]{2}$")]
    pub country: String,
}

impl std::fmt::Debug for ShippingAddressBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShippingAddressBody(<personal data>)")
    }
}

impl From<CustomerDetailsBody> for CustomerDetails {
    fn from(body: CustomerDetailsBody) -> Self {
        let address = body.shipping_address;
        Self {
            name: body.name,
            email: body.email,
            shipping_address: ShippingAddress {
                line1: address.line1,
                line2: address.line2,
                city: address.city,
                postal_code: address.postal_code,
                country: address.country,
            },
        }
    }
}

/// Body of `POST /orders`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    /// The new order's id. Optional: the server chooses one when absent (derived from the
    /// `Idempotency-Key` when one is sent, so a retried create names the same order).
    #[serde(default)]
    pub order_id: Option<Uuid>,
    /// The buyer (not the nil UUID).
    pub customer_id: Uuid,
    /// ISO-4217 code of every amount on the order.
    #[schema(value_type = String, example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: Currency,
    /// The customer's name, email and shipping address, if the shop has them. Optional;
    /// needs a configured master key (else 503 `order.personal_data_unavailable`).
    // Skipped when absent so a create without it fingerprints as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_details: Option<CustomerDetailsBody>,
}

/// What a create-order request is fingerprinted as: the personal fields replaced by a
/// keyed digest, so `idempotency_keys` holds nothing a guess could be checked against
/// without the master key. Without personal data it serializes exactly as the request
/// itself did before, so stored fingerprints keep matching.
#[derive(Serialize)]
struct CreateOrderFingerprint {
    order_id: Option<Uuid>,
    customer_id: Uuid,
    currency: Currency,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_details: Option<String>,
}

fn personal_digest(key: Option<&[u8]>, details: &CustomerDetailsBody) -> String {
    use hmac::{Hmac, Mac};
    // Without a master key the command is refused before anything is recorded.
    let Some(key) = key else {
        return "unsealed".to_owned();
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return "unsealed".to_owned();
    };
    mac.update(&serde_json::to_vec(details).unwrap_or_default());
    let digest = mac.finalize().into_bytes();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Body of `POST /orders/{order_id}/lines`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddOrderLineRequest {
    /// Product; one line per SKU.
    #[schema(value_type = String, example = "SKU-123", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: Sku,
    /// Units; positive.
    #[schema(minimum = 1, example = 2)]
    pub quantity: u32,
    /// Price of one unit, in the order's currency; zero or more.
    pub unit_price: MoneyBody,
}

/// Body of `PATCH /orders/{order_id}/lines/{sku}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeOrderLineQuantityRequest {
    /// New quantity; positive (delete the line to drop it).
    #[schema(minimum = 1, example = 3)]
    pub quantity: u32,
}

/// Body of `POST /orders/{order_id}/cancel`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrderRequest {
    /// Why; non-blank, at most 500 characters.
    #[schema(example = "customer changed their mind")]
    pub reason: String,
}

/// Body of `POST /orders/{order_id}/place`; may be omitted.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// Gateway payment-method token (never card data) that the fulfilment saga authorizes
    /// the total with; non-blank, at most 200 characters. Without one the saga cancels the
    /// order ("no payment method"). The simulator declines `tok_decline`,
    /// `tok_insufficient_funds` and `tok_expired_card`.
    // Skipped when absent so an empty place request fingerprints as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "tok_visa")]
    pub payment_method: Option<String>,
}

/// Body of `POST /orders/{order_id}/ship`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipOrderRequest {
    /// Carrier tracking number, if known; non-blank, at most 100 characters.
    #[serde(default)]
    pub tracking_reference: Option<String>,
}

/// Open a draft order.
#[utoipa::path(
    post, path = "/orders", tag = "orders", operation_id = "create_order",
    request_body = CreateOrderRequest,
    responses((status = 201, description = "Order created (`OrderCreated`); `Location` names it", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = field::Empty))]
pub async fn create_order(
    State(state): State<AppState>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<CreateOrderRequest>,
) -> OrderResult {
    let (order_id, fresh_id) = headers.id_for_create(body.order_id, "order", state.ids.as_ref());
    Span::current().record("order_id", field::display(order_id));
    let idempotency = headers.idempotent_request(|| {
        let fingerprinted = CreateOrderFingerprint {
            order_id: body.order_id,
            customer_id: body.customer_id,
            currency: body.currency,
            customer_details: body
                .customer_details
                .as_ref()
                .map(|details| personal_digest(state.fingerprint_key.as_deref(), details)),
        };
        Fingerprint::of("orders.create", "", &fingerprinted)
    });
    let command = CreateOrder {
        customer_id: body.customer_id,
        currency: body.currency,
        customer_details: body.customer_details.map(CustomerDetails::from),
    };
    let envelope = CommandEnvelope {
        fresh_id,
        ..state.envelope(&headers, order_id.to_string(), command, idempotency)
    };
    let outcome = state.orders.execute(envelope).await?;
    let location = format!("/orders/{}", outcome.aggregate_id);
    Ok(CommandResponse::created(outcome, location))
}

/// Add a line to a draft order.
#[utoipa::path(
    post, path = "/orders/{order_id}/lines", tag = "orders", operation_id = "add_order_line",
    params(("order_id" = Uuid, Path, description = "The order")),
    request_body = AddOrderLineRequest,
    responses((status = 201, description = "Line added (`OrderLineAdded`); `Location` names the line", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = %order_id))]
pub async fn add_order_line(
    State(state): State<AppState>,
    IdPath(order_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<AddOrderLineRequest>,
) -> OrderResult {
    let target = order_id.to_string();
    let idempotency =
        headers.idempotent_request(|| Fingerprint::of("orders.add_line", &target, &body));
    let location = format!("/orders/{order_id}/lines/{}", body.sku);
    let command = AddOrderLine {
        sku: body.sku,
        quantity: body.quantity,
        unit_price: body.unit_price.into(),
    };
    let outcome = state
        .orders
        .execute(state.envelope(&headers, target, command, idempotency))
        .await?;
    Ok(CommandResponse::created(outcome, location))
}

/// Change the quantity of a draft order's line (setting the current quantity changes nothing).
#[utoipa::path(
    patch, path = "/orders/{order_id}/lines/{sku}", tag = "orders", operation_id = "change_order_line_quantity",
    params(("order_id" = Uuid, Path, description = "The order"), ("sku" = String, Path, description = "The line's SKU")),
    request_body = ChangeOrderLineQuantityRequest,
    responses((status = 200, description = "Quantity changed (`OrderLineQuantityChanged`), or already that quantity (no event)", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = %path.0, sku = %path.1))]
pub async fn change_order_line_quantity(
    State(state): State<AppState>,
    path: IdSkuPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<ChangeOrderLineQuantityRequest>,
) -> OrderResult {
    let IdSkuPath(order_id, sku) = path;
    let target = order_id.to_string();
    let idempotency = headers.idempotent_request(|| {
        Fingerprint::of(
            "orders.change_line_quantity",
            &format!("{target}/{sku}"),
            &body,
        )
    });
    let command = ChangeOrderLineQuantity {
        sku,
        quantity: body.quantity,
    };
    let outcome = state
        .orders
        .execute(state.envelope(&headers, target, command, idempotency))
        .await?;
    Ok(CommandResponse::ok(outcome))
}

/// Remove a line from a draft order.
#[utoipa::path(
    delete, path = "/orders/{order_id}/lines/{sku}", tag = "orders", operation_id = "remove_order_line",
    params(("order_id" = Uuid, Path, description = "The order"), ("sku" = String, Path, description = "The line's SKU")),
    responses((status = 200, description = "Line removed (`OrderLineRemoved`)", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = %path.0, sku = %path.1))]
pub async fn remove_order_line(
    State(state): State<AppState>,
    path: IdSkuPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<NoFields>,
) -> OrderResult {
    let IdSkuPath(order_id, sku) = path;
    let target = order_id.to_string();
    let idempotency = headers.idempotent_request(|| {
        Fingerprint::of("orders.remove_line", &format!("{target}/{sku}"), &body)
    });
    let outcome = state
        .orders
        .execute(state.envelope(&headers, target, RemoveOrderLine { sku }, idempotency))
        .await?;
    Ok(CommandResponse::ok(outcome))
}

/// Submit a non-empty draft; its lines and total are frozen. Placing starts fulfilment.
#[utoipa::path(
    post, path = "/orders/{order_id}/place", tag = "orders", operation_id = "place_order",
    params(("order_id" = Uuid, Path, description = "The order")),
    request_body(content = Option<PlaceOrderRequest>, description = "Optional payment method; the body may be omitted"),
    responses((status = 200, description = "Order placed (`OrderPlaced`)", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = %order_id))]
pub async fn place_order(
    State(state): State<AppState>,
    IdPath(order_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<PlaceOrderRequest>,
) -> OrderResult {
    let command = PlaceOrder {
        payment_method: body.payment_method.clone(),
    };
    simple_command(state, order_id, headers, "orders.place", &body, command).await
}

/// Confirm a placed order (stock reserved, payment authorized).
#[utoipa::path(
    post, path = "/orders/{order_id}/confirm", tag = "orders", operation_id = "confirm_order",
    params(("order_id" = Uuid, Path, description = "The order")),
    request_body(content = Option<NoFields>, description = "No fields; the body may be omitted"),
    responses((status = 200, description = "Order confirmed (`OrderConfirmed`)", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = %order_id))]
pub async fn confirm_order(
    State(state): State<AppState>,
    IdPath(order_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<NoFields>,
) -> OrderResult {
    simple_command(
        state,
        order_id,
        headers,
        "orders.confirm",
        &body,
        ConfirmOrder {},
    )
    .await
}

/// Cancel an order that has not shipped.
#[utoipa::path(
    post, path = "/orders/{order_id}/cancel", tag = "orders", operation_id = "cancel_order",
    params(("order_id" = Uuid, Path, description = "The order")),
    request_body = CancelOrderRequest,
    responses((status = 200, description = "Order cancelled (`OrderCancelled`)", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = %order_id))]
pub async fn cancel_order(
    State(state): State<AppState>,
    IdPath(order_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<CancelOrderRequest>,
) -> OrderResult {
    let command = CancelOrder {
        reason: body.reason.clone(),
    };
    simple_command(state, order_id, headers, "orders.cancel", &body, command).await
}

/// Hand a confirmed order to the carrier.
#[utoipa::path(
    post, path = "/orders/{order_id}/ship", tag = "orders", operation_id = "ship_order",
    params(("order_id" = Uuid, Path, description = "The order")),
    request_body(content = Option<ShipOrderRequest>, description = "Optional tracking reference; the body may be omitted"),
    responses((status = 200, description = "Order shipped (`OrderShipped`)", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = %order_id))]
pub async fn ship_order(
    State(state): State<AppState>,
    IdPath(order_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<ShipOrderRequest>,
) -> OrderResult {
    let command = ShipOrder {
        tracking_reference: body.tracking_reference.clone(),
    };
    simple_command(state, order_id, headers, "orders.ship", &body, command).await
}

/// Record that the customer received a shipped order.
#[utoipa::path(
    post, path = "/orders/{order_id}/deliver", tag = "orders", operation_id = "deliver_order",
    params(("order_id" = Uuid, Path, description = "The order")),
    request_body(content = Option<NoFields>, description = "No fields; the body may be omitted"),
    responses((status = 200, description = "Order delivered (`OrderDelivered`)", body = CommandResult))
)]
#[instrument(skip_all, fields(order_id = %order_id))]
pub async fn deliver_order(
    State(state): State<AppState>,
    IdPath(order_id): IdPath,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<NoFields>,
) -> OrderResult {
    simple_command(
        state,
        order_id,
        headers,
        "orders.deliver",
        &body,
        DeliverOrder {},
    )
    .await
}

async fn simple_command<B: Serialize>(
    state: AppState,
    order_id: Uuid,
    headers: CommandHeaders,
    operation: &str,
    body: &B,
    command: impl Into<aggregates::order::OrderCommand>,
) -> OrderResult {
    let target = order_id.to_string();
    let idempotency = headers.idempotent_request(|| Fingerprint::of(operation, &target, body));
    let outcome = state
        .orders
        .execute(state.envelope(&headers, target, command, idempotency))
        .await?;
    Ok(CommandResponse::ok(outcome))
}
