//! The HTTP surface: routes, extractors, responses and problem documents.
//!
//! | method | path | command | success |
//! |---|---|---|---|
//! | POST | `/orders` | `CreateOrder` | 201 |
//! | POST | `/orders/{order_id}/lines` | `AddOrderLine` | 201 |
//! | PATCH | `/orders/{order_id}/lines/{sku}` | `ChangeOrderLineQuantity` | 200 |
//! | DELETE | `/orders/{order_id}/lines/{sku}` | `RemoveOrderLine` | 200 |
//! | POST | `/orders/{order_id}/place` | `PlaceOrder` | 200 |
//! | POST | `/orders/{order_id}/confirm` | `ConfirmOrder` | 200 |
//! | POST | `/orders/{order_id}/cancel` | `CancelOrder` | 200 |
//! | POST | `/orders/{order_id}/ship` | `ShipOrder` | 200 |
//! | POST | `/orders/{order_id}/deliver` | `DeliverOrder` | 200 |
//! | POST | `/customers/{customer_id}/forget` | `ForgetCustomer` | 200 (also when already forgotten) |
//! | POST | `/payments` | `AuthorizePayment` | 201 |
//! | POST | `/payments/{payment_id}/capture` | `CapturePayment` | 200 |
//! | POST | `/payments/{payment_id}/void` | `VoidPayment` | 200 |
//! | POST | `/payments/{payment_id}/refunds` | `RefundPayment` | 201 (200 if already refunded) |
//! | POST | `/inventory/{sku}/stock` | `AddStock` | 200 |
//! | POST | `/inventory/{sku}/adjustments` | `AdjustStock` | 200 |
//! | POST | `/inventory/{sku}/reservations` | `ReserveStock` | 201 (200 if already reserved) |
//! | POST | `/inventory/{sku}/reservations/{order_id}/release` | `ReleaseReservation` | 200 |
//! | POST | `/inventory/{sku}/reservations/{order_id}/commit` | `CommitReservation` | 200 |
//! | GET | `/health/live`, `/health/ready`, `/openapi.json`, `/metrics` | — | 200 |
//!
//! Every command route needs a bearer token with the `writer` role (see [`access`]); the
//! token's subject is the actor of the events it records.

pub mod customers;
pub mod extract;
pub mod health;
pub mod inventory;
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod problem;
pub mod response;

use std::fmt;
use std::sync::Arc;

use aggregates::customer::Customer;
use aggregates::inventory::InventoryItem;
use aggregates::order::Order;
use aggregates::payment::Payment;
use aggregates::{Currency, Money};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::{self};
use axum::routing::get;
use axum::{Json, Router};
use cqrs_es::Aggregate;
use ops::auth::{Access, Role};
use ops::gate::Gate;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::extract::{CommandHeaders, CorrelationId};
use self::problem::Problem;
use crate::config::{HttpSettings, SERVICE};
use crate::store::idempotency::IdempotentRequest;
use crate::store::{AggregateStore, CommandEnvelope, CommandMetadata};
use ops::clock::Clock;
use ops::ids::IdSource;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Order event store.
    pub orders: Arc<AggregateStore<Order>>,
    /// Payment event store (with the payment gateway as its services).
    pub payments: Arc<AggregateStore<Payment>>,
    /// Inventory event store (snapshotted).
    pub inventory: Arc<AggregateStore<InventoryItem>>,
    /// Customer event store (forgetting; ADR 0009).
    pub customers: Arc<AggregateStore<Customer>>,
    /// Key of the keyed digest that stands in for personal fields in idempotency
    /// fingerprints; `None` without a master key (then no personal data is accepted).
    pub fingerprint_key: Option<Arc<[u8]>>,
    /// The database, for probes.
    pub pool: PgPool,
    /// Time of `occurred_at`.
    pub clock: Arc<dyn Clock>,
    /// Server-chosen ids.
    pub ids: Arc<dyn IdSource>,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("clock", &self.clock)
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Addresses `command` to `aggregate_id` with this request's metadata.
    pub fn envelope<A: Aggregate>(
        &self,
        headers: &CommandHeaders,
        aggregate_id: String,
        command: impl Into<A::Command>,
        idempotency: Option<IdempotentRequest>,
    ) -> CommandEnvelope<A> {
        CommandEnvelope {
            aggregate_id,
            command: command.into(),
            expected_version: headers.expected_version.clone(),
            metadata: CommandMetadata {
                correlation_id: headers.correlation_id,
                causation_id: headers.causation_id,
                actor: headers.actor.clone(),
                occurred_at: self.clock.now(),
                traceparent: headers.traceparent.clone(),
            },
            idempotency,
            fresh_id: false,
        }
    }
}

/// An amount of money in integer minor units; never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyBody {
    /// Amount in the currency's minor unit (cents for EUR).
    #[schema(example = 1999)]
    pub amount_minor: i64,
    /// ISO-4217 code, three uppercase letters.
    #[schema(value_type = String, example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: Currency,
}

impl From<MoneyBody> for Money {
    fn from(body: MoneyBody) -> Self {
        Money::new(body.amount_minor, body.currency)
    }
}

/// A command without fields: `{}` or no body at all.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// Probes, the OpenAPI document and metrics are public; everything else is a command and
/// needs the `writer` role.
pub fn access(_method: &Method, path: &str) -> Access {
    match path {
        "/health/live" | "/health/ready" | "/openapi.json" | "/metrics" => Access::Public,
        _ => Access::Requires(Role::Writer),
    }
}

/// Every route with its OpenAPI operation: the router and the document come from this one
/// list, so they cannot drift apart.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(orders::create_order))
        .routes(routes!(orders::add_order_line))
        .routes(routes!(
            orders::change_order_line_quantity,
            orders::remove_order_line
        ))
        .routes(routes!(orders::place_order))
        .routes(routes!(orders::confirm_order))
        .routes(routes!(orders::cancel_order))
        .routes(routes!(orders::ship_order))
        .routes(routes!(orders::deliver_order))
        .routes(routes!(customers::forget_customer))
        .routes(routes!(payments::authorize_payment))
        .routes(routes!(payments::capture_payment))
        .routes(routes!(payments::void_payment))
        .routes(routes!(payments::refund_payment))
        .routes(routes!(inventory::add_stock))
        .routes(routes!(inventory::adjust_stock))
        .routes(routes!(inventory::reserve_stock))
        .routes(routes!(inventory::release_reservation))
        .routes(routes!(inventory::commit_reservation))
        .routes(routes!(ops::health::live))
        .routes(routes!(health::ready))
}

/// The OpenAPI document, as `/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut openapi) = routes().split_for_parts();
    openapi::document_command_conventions(&mut openapi);
    openapi
}

/// The whole HTTP application and its OpenAPI document.
///
/// # Errors
/// If the authentication settings are unusable (a key that does not parse).
pub fn router(state: AppState, settings: &HttpSettings) -> Result<Router, ops::ConfigError> {
    let gate = Gate::new(SERVICE, &settings.auth, settings.rate_limit, access)?;
    // The process serving /metrics records from its first request on; conflicts show as 0
    // before the first one.
    ops::metrics::install();
    for aggregate in [
        Order::TYPE,
        Payment::TYPE,
        InventoryItem::TYPE,
        Customer::TYPE,
    ] {
        metrics::counter!("keel_concurrency_conflicts_total", "aggregate" => aggregate)
            .increment(0);
    }
    let (api, _) = routes().split_for_parts();
    let openapi = openapi_document();
    let openapi = Arc::new(openapi);

    let ids = Arc::clone(&state.ids);
    Ok(api
        .merge(ops::metrics::routes())
        .route(
            "/openapi.json",
            get(move || {
                let openapi = Arc::clone(&openapi);
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .fallback(|| async { Problem::for_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async {
            Problem::for_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .with_state(state)
        // Outermost last: correlation → trace → metrics → gate → problem bodies → timeout → routes.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            problem::for_status as ops::problem::ForStatus,
            ops::problem::problem_bodies,
        ))
        .layer(middleware::from_fn_with_state(gate, ops::gate::enforce))
        .layer(middleware::from_fn_with_state(
            SERVICE,
            ops::metrics::track_http,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let correlation_id = request
                        .extensions()
                        .get::<CorrelationId>()
                        .map(|id| id.0.to_string())
                        .unwrap_or_default();
                    let span = tracing::info_span!(
                        "http_request",
                        method = %request.method(),
                        route = %ops::metrics::route_template(request),
                        correlation_id = %correlation_id,
                    );
                    ops::telemetry::set_parent_from_headers(&span, request.headers());
                    span
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn_with_state(ids, extract::correlate)))
}
