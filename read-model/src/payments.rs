//! Projection `payments`: one row per payment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{FromRow, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Money;

/// The projection maintaining `payments`.
pub const PROJECTION: &str = "payments";
/// The source aggregate whose sequence `payments.version` is.
pub const AGGREGATE_TYPE: &str = "payment";

/// A payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PaymentView {
    /// The payment.
    pub payment_id: Uuid,
    /// The order it pays for.
    pub order_id: Uuid,
    /// `authorized`, `declined`, `captured`, `voided` or `refunded`.
    #[schema(example = "captured")]
    pub status: String,
    /// Authorized (or declined) amount.
    pub amount: Money,
    /// Captured so far.
    pub captured: Money,
    /// Refunded so far; never above `captured`.
    pub refunded: Money,
    /// The gateway's authorization code, once authorized.
    pub authorization_code: Option<String>,
    /// Why the gateway declined, if it did.
    pub decline_reason: Option<String>,
    /// Why the authorization was voided, if it was.
    pub void_reason: Option<String>,
    /// Refunds in the order they happened.
    pub refunds: Vec<Refund>,
    /// When the payment was authorized (or declined).
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The payment's stream version this view reflects.
    #[schema(minimum = 1)]
    pub version: i64,
}

/// One refund of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Refund {
    /// The refund.
    pub refund_id: Uuid,
    /// Amount refunded.
    pub amount: Money,
    /// Why, if a reason was given.
    pub reason: Option<String>,
    /// When.
    pub refunded_at: DateTime<Utc>,
}

/// An element of `payments.refunds` as the projector writes it.
#[derive(Debug, Deserialize)]
struct RefundRecord {
    refund_id: Uuid,
    amount_minor: i64,
    #[serde(default)]
    reason: Option<String>,
    refunded_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct PaymentRow {
    payment_id: Uuid,
    order_id: Uuid,
    status: String,
    currency: String,
    amount_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    authorization_code: Option<String>,
    decline_reason: Option<String>,
    void_reason: Option<String>,
    refunds: Json<Vec<RefundRecord>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl From<PaymentRow> for PaymentView {
    fn from(row: PaymentRow) -> Self {
        let currency = row.currency.as_str();
        Self {
            payment_id: row.payment_id,
            order_id: row.order_id,
            status: row.status,
            amount: Money::new(row.amount_minor, currency),
            captured: Money::new(row.captured_minor, currency),
            refunded: Money::new(row.refunded_minor, currency),
            authorization_code: row.authorization_code,
            decline_reason: row.decline_reason,
            void_reason: row.void_reason,
            refunds: row
                .refunds
                .0
                .into_iter()
                .map(|refund| Refund {
                    refund_id: refund.refund_id,
                    amount: Money::new(refund.amount_minor, currency),
                    reason: refund.reason,
                    refunded_at: refund.refunded_at,
                })
                .collect(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

const COLUMNS: &str = "payment_id, order_id, status, currency, amount_minor, captured_minor, \
                       refunded_minor, authorization_code, decline_reason, void_reason, refunds, \
                       created_at, updated_at, version";

/// The version of the payment's view, if it exists.
///
/// # Errors
/// Database errors.
pub async fn payment_version(pool: &PgPool, payment_id: Uuid) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM read_model.payments WHERE payment_id = $1")
        .bind(payment_id)
        .fetch_optional(pool)
        .await
}

/// The payment.
///
/// # Errors
/// Database errors, or a `refunds` document of another shape.
pub async fn find_payment(
    pool: &PgPool,
    payment_id: Uuid,
) -> Result<Option<PaymentView>, sqlx::Error> {
    let row: Option<PaymentRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM read_model.payments WHERE payment_id = $1"
    ))
    .bind(payment_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(PaymentView::from))
}

/// The order's payments, oldest first (`created_at`, then `payment_id`).
///
/// # Errors
/// Database errors, or a `refunds` document of another shape.
pub async fn payments_of_order(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Vec<PaymentView>, sqlx::Error> {
    let rows: Vec<PaymentRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM read_model.payments WHERE order_id = $1 \
         ORDER BY created_at, payment_id"
    ))
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(PaymentView::from).collect())
}
