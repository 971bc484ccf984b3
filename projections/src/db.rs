//! The read-model database: pool, schema entry and projection locks. The schema and its
//! migrations belong to the `read-model` crate.

use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

use crate::config::DatabaseUrl;
use crate::projection::Projection;

/// Makes the projection's unqualified table names resolve in `schema` for the rest of the
/// transaction (`SET LOCAL search_path`).
///
/// # Errors
/// Database errors.
pub async fn enter_schema(connection: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(schema)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// What every live transaction of `projection` does first: resolve its tables in
/// [`read_model::READ_MODEL_SCHEMA`] and take the projection's advisory lock in shared mode (projector
/// instances do not block one another) until commit (`read_model::locks`). A rebuild's swap takes the same lock
/// exclusively ([`lock_projection_exclusive`]), so a live batch runs either entirely
/// before the swap, on the old tables and checkpoints, or entirely after it, on the new.
///
/// # Errors
/// Database errors.
pub async fn enter_live_transaction(
    connection: &mut PgConnection,
    projection: Projection,
) -> Result<(), sqlx::Error> {
    read_model::locks::enter_live_transaction(connection, projection.ordinal()).await
}

/// Bounds how long the rest of the transaction waits for a row lock (`SET LOCAL
/// lock_timeout`): past it the statement fails with `lock_not_available`, which holds that
/// one aggregate for a retry instead of stalling the whole batch behind the lock.
///
/// # Errors
/// Database errors.
pub async fn bound_lock_waits(
    connection: &mut PgConnection,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", timeout.as_millis().max(1)))
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Waits for the live transactions of `projection` in flight to end and keeps new ones
/// out until this transaction ends.
///
/// # Errors
/// Database errors.
pub async fn lock_projection_exclusive(
    connection: &mut PgConnection,
    projection: Projection,
) -> Result<(), sqlx::Error> {
    read_model::locks::lock_projection_exclusive(connection, projection.ordinal()).await
}

/// A pool on the read-model database.
///
/// # Errors
/// An unparsable URL, or the database unreachable within the connect timeout.
pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url.expose())?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}
