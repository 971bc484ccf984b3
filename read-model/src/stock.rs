//! Projection `stock`: stock levels per SKU.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;

/// The projection maintaining `stock_levels`.
pub const PROJECTION: &str = "stock";
/// The source aggregate (one per SKU) whose sequence `stock_levels.version` is.
pub const AGGREGATE_TYPE: &str = "inventory";

/// Stock of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, FromRow)]
pub struct StockLevel {
    /// The SKU.
    #[schema(example = "SKU-123")]
    pub sku: String,
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held for orders.
    pub reserved: i64,
    /// `on_hand - reserved`; never negative.
    pub available: i64,
    /// When the SKU was first stocked.
    pub created_at: DateTime<Utc>,
    /// When the level last changed.
    pub updated_at: DateTime<Utc>,
    /// The inventory item's stream version this level reflects.
    #[schema(minimum = 1)]
    pub version: i64,
}

const COLUMNS: &str = "sku, on_hand, reserved, available, created_at, updated_at, version";

/// The version of the SKU's stock level, if it exists.
///
/// # Errors
/// Database errors.
pub async fn stock_version(pool: &PgPool, sku: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM read_model.stock_levels WHERE sku = $1")
        .bind(sku)
        .fetch_optional(pool)
        .await
}

/// The SKU's stock level.
///
/// # Errors
/// Database errors.
pub async fn find_stock(pool: &PgPool, sku: &str) -> Result<Option<StockLevel>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM read_model.stock_levels WHERE sku = $1"
    ))
    .bind(sku)
    .fetch_optional(pool)
    .await
}

/// Up to `limit` stock levels with a SKU after `after`, by SKU.
///
/// # Errors
/// Database errors.
pub async fn stock_levels(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<StockLevel>, sqlx::Error> {
    let mut query =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM read_model.stock_levels"));
    if let Some(after) = after {
        query.push(" WHERE sku > ").push_bind(after);
    }
    query.push(" ORDER BY sku LIMIT ").push_bind(limit);
    query.build_query_as().fetch_all(pool).await
}
