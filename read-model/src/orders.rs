//! Projection `orders`: the order view (with its lines, stock reservations and payments)
//! and the per-customer listing.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Money;

/// The projection maintaining these tables.
pub const PROJECTION: &str = "orders";
/// The source aggregate whose sequence `order_view.version` is.
pub const AGGREGATE_TYPE: &str = "order";

/// An order's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Being edited.
    Draft,
    /// Submitted; the fulfilment saga is running.
    Placed,
    /// Stock reserved and payment authorized.
    Confirmed,
    /// Handed to the carrier.
    Shipped,
    /// Received by the customer.
    Delivered,
    /// Cancelled (see `cancellation_reason`).
    Cancelled,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Draft,
        Self::Placed,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The stored (and serialized) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Placed => "placed",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of the [`OrderStatus`] names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown order status {0:?}; expected one of draft, placed, confirmed, shipped, delivered, cancelled"
)]
pub struct UnknownOrderStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownOrderStatus;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or_else(|| UnknownOrderStatus(value.to_owned()))
    }
}

/// An order as the `orders` projection last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderView {
    /// The order.
    pub order_id: Uuid,
    /// The buyer.
    pub customer_id: Uuid,
    /// Lifecycle state.
    #[schema(value_type = OrderStatus)]
    pub status: String,
    /// ISO-4217 code of every amount on the order.
    #[schema(example = "EUR")]
    pub currency: String,
    /// Sum of the line totals.
    pub total: Money,
    /// Number of lines.
    pub line_count: i32,
    /// The lines, in the order they were added.
    pub lines: Vec<OrderLine>,
    /// Why the order was cancelled, once it is.
    pub cancellation_reason: Option<String>,
    /// Carrier tracking number, once shipped with one.
    pub tracking_reference: Option<String>,
    /// When the order was created (the event's `occurred_at`).
    pub created_at: DateTime<Utc>,
    /// When it was placed.
    pub placed_at: Option<DateTime<Utc>>,
    /// When it was confirmed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When it was shipped.
    pub shipped_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the view last changed.
    pub updated_at: DateTime<Utc>,
    /// Stock held for the order, per SKU (from the inventory events).
    pub reservations: Vec<OrderReservation>,
    /// The order's payments (from the payment events), oldest first.
    pub payments: Vec<OrderPayment>,
    /// The customer's name, email and shipping address, if the order carries them;
    /// `{"status": "erased"}` once the customer was forgotten.
    pub customer_details: Option<CustomerDetailsView>,
    /// The order's stream version this view reflects: compare with the version a command
    /// returned, or pass it as `min_version`.
    #[schema(minimum = 1)]
    pub version: i64,
}

/// Personal data on an order (ADR 0009): shown while the customer's key exists, erased
/// for good once they are forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CustomerDetailsView {
    /// `present`; `erased` (the customer was forgotten); `unavailable` (sealed, and the
    /// projector holds no master key).
    #[schema(example = "present")]
    pub status: String,
    /// Full name, while present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email address, while present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Postal address (`line1`, `line2`, `city`, `postal_code`, `country`), while present.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<serde_json::Value>,
}

/// One order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderLine {
    /// Product.
    #[schema(example = "SKU-123")]
    pub sku: String,
    /// Position among the lines, in the order they were added.
    pub position: i32,
    /// Units.
    pub quantity: i64,
    /// Price of one unit.
    pub unit_price: Money,
    /// `quantity × unit_price`.
    pub line_total: Money,
}

/// Stock reserved for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderReservation {
    /// Product.
    pub sku: String,
    /// Units held.
    pub quantity: i64,
    /// `reserved`, `released` or `committed`.
    #[schema(example = "reserved")]
    pub status: String,
    /// When the reservation last changed.
    pub updated_at: DateTime<Utc>,
}

/// A payment of an order, as the order view summarises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderPayment {
    /// The payment.
    pub payment_id: Uuid,
    /// `authorized`, `declined`, `captured`, `voided` or `refunded`.
    #[schema(example = "captured")]
    pub status: String,
    /// Authorized amount.
    pub amount: Money,
    /// Captured so far.
    pub captured: Money,
    /// Refunded so far.
    pub refunded: Money,
    /// When the payment was authorized (or declined).
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One order in a customer's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CustomerOrder {
    /// The order.
    pub order_id: Uuid,
    /// The buyer.
    pub customer_id: Uuid,
    /// Lifecycle state.
    #[schema(value_type = OrderStatus)]
    pub status: String,
    /// Sum of the line totals.
    pub total: Money,
    /// Number of lines.
    pub line_count: i32,
    /// When the order was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The order's stream version this entry reflects.
    pub version: i64,
}

/// A position in a customer's listing (newest first): the last entry of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerOrderPosition {
    /// The entry's `created_at`.
    pub created_at: DateTime<Utc>,
    /// The entry's order id (ties on `created_at` are ordered by it, descending).
    pub order_id: Uuid,
}

#[derive(FromRow)]
struct OrderRow {
    order_id: Uuid,
    customer_id: Uuid,
    status: String,
    currency: String,
    total_minor: i64,
    line_count: i32,
    cancellation_reason: Option<String>,
    tracking_reference: Option<String>,
    created_at: DateTime<Utc>,
    placed_at: Option<DateTime<Utc>>,
    confirmed_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    version: i64,
    personal_data: String,
    customer_name: Option<String>,
    customer_email: Option<String>,
    shipping_address: Option<sqlx::types::Json<serde_json::Value>>,
}

#[derive(FromRow)]
struct LineRow {
    sku: String,
    position: i32,
    quantity: i64,
    unit_price_minor: i64,
    line_total_minor: i64,
}

#[derive(FromRow)]
struct ReservationRow {
    sku: String,
    quantity: i64,
    status: String,
    updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct PaymentRow {
    payment_id: Uuid,
    status: String,
    currency: String,
    amount_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct CustomerOrderRow {
    order_id: Uuid,
    customer_id: Uuid,
    status: String,
    currency: String,
    total_minor: i64,
    line_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// The version of the order's view, if it exists.
///
/// # Errors
/// Database errors.
pub async fn order_version(pool: &PgPool, order_id: Uuid) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM read_model.order_view WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await
}

/// Whether the order has a view.
///
/// # Errors
/// Database errors.
pub async fn order_exists(pool: &PgPool, order_id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(order_version(pool, order_id).await?.is_some())
}

/// The order with its lines, reservations and payments.
///
/// The four reads share one snapshot (a read-only repeatable-read transaction), so the
/// lines always belong to the version shown.
///
/// # Errors
/// Database errors.
pub async fn find_order(pool: &PgPool, order_id: Uuid) -> Result<Option<OrderView>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let Some(order) = sqlx::query_as::<_, OrderRow>(
        "SELECT order_id, customer_id, status, currency, total_minor, line_count, \
                cancellation_reason, tracking_reference, created_at, placed_at, confirmed_at, \
                cancelled_at, shipped_at, delivered_at, updated_at, version, \
                personal_data, customer_name, customer_email, shipping_address \
         FROM read_model.order_view WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let lines = sqlx::query_as::<_, LineRow>(
        "SELECT sku, position, quantity, unit_price_minor, line_total_minor \
         FROM read_model.order_view_lines WHERE order_id = $1 ORDER BY position, sku",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    let reservations = sqlx::query_as::<_, ReservationRow>(
        "SELECT sku, quantity, status, updated_at \
         FROM read_model.order_reservations WHERE order_id = $1 ORDER BY sku",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    let payments = sqlx::query_as::<_, PaymentRow>(
        "SELECT payment_id, status, currency, amount_minor, captured_minor, refunded_minor, \
                created_at, updated_at \
         FROM read_model.order_payments WHERE order_id = $1 ORDER BY created_at, payment_id",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let currency = order.currency.as_str();
    Ok(Some(OrderView {
        order_id: order.order_id,
        customer_id: order.customer_id,
        status: order.status,
        total: Money::new(order.total_minor, currency),
        line_count: order.line_count,
        lines: lines
            .into_iter()
            .map(|line| OrderLine {
                sku: line.sku,
                position: line.position,
                quantity: line.quantity,
                unit_price: Money::new(line.unit_price_minor, currency),
                line_total: Money::new(line.line_total_minor, currency),
            })
            .collect(),
        cancellation_reason: order.cancellation_reason,
        tracking_reference: order.tracking_reference,
        created_at: order.created_at,
        placed_at: order.placed_at,
        confirmed_at: order.confirmed_at,
        cancelled_at: order.cancelled_at,
        shipped_at: order.shipped_at,
        delivered_at: order.delivered_at,
        updated_at: order.updated_at,
        reservations: reservations
            .into_iter()
            .map(|reservation| OrderReservation {
                sku: reservation.sku,
                quantity: reservation.quantity,
                status: reservation.status,
                updated_at: reservation.updated_at,
            })
            .collect(),
        payments: payments
            .into_iter()
            .map(|payment| OrderPayment {
                payment_id: payment.payment_id,
                status: payment.status,
                amount: Money::new(payment.amount_minor, &payment.currency),
                captured: Money::new(payment.captured_minor, &payment.currency),
                refunded: Money::new(payment.refunded_minor, &payment.currency),
                created_at: payment.created_at,
                updated_at: payment.updated_at,
            })
            .collect(),
        customer_details: (order.personal_data != "none").then(|| CustomerDetailsView {
            status: order.personal_data,
            name: order.customer_name,
            email: order.customer_email,
            shipping_address: order.shipping_address.map(|address| address.0),
        }),
        currency: order.currency,
        version: order.version,
    }))
}

/// Up to `limit` of the customer's orders after `after`, newest first (`created_at`, then
/// `order_id`, both descending), optionally only those in `status`.
///
/// # Errors
/// Database errors.
pub async fn customer_orders(
    pool: &PgPool,
    customer_id: Uuid,
    status: Option<OrderStatus>,
    after: Option<CustomerOrderPosition>,
    limit: i64,
) -> Result<Vec<CustomerOrder>, sqlx::Error> {
    // Built per shape rather than with `$n IS NULL OR …`, so each variant is planned on the
    // listing indexes (customer_id[, status], created_at DESC, order_id DESC).
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT order_id, customer_id, status, currency, total_minor, line_count, created_at, \
                updated_at, version \
         FROM read_model.customer_orders WHERE customer_id = ",
    );
    query.push_bind(customer_id);
    if let Some(status) = status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(after) = after {
        query
            .push(" AND (created_at, order_id) < (")
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.order_id)
            .push(")");
    }
    query
        .push(" ORDER BY created_at DESC, order_id DESC LIMIT ")
        .push_bind(limit);
    let rows = query
        .build_query_as::<CustomerOrderRow>()
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| CustomerOrder {
            order_id: row.order_id,
            customer_id: row.customer_id,
            status: row.status,
            total: Money::new(row.total_minor, &row.currency),
            line_count: row.line_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert!("Placed".parse::<OrderStatus>().is_err());
    }
}
