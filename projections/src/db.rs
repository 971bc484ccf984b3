//! The read-model database: pool and migrations.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use std::str::FromStr;
use std::time::Duration;

use crate::config::DatabaseUrl;
use crate::projection::Projection;

/// The PostgreSQL schema holding every read model (never the event store's tables).
pub const READ_MODEL_SCHEMA: &str = "read_model";

/// First key of the two-key advisory lock space of projection locks ("krpj"; the outbox
/// relay's shard leases use "keel").
const PROJECTION_LOCK_CLASS: i32 = 0x6b72_706a;

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
/// [`READ_MODEL_SCHEMA`] and take the projection's advisory lock in shared mode (projector
/// instances do not block one another) until commit. A rebuild's swap takes the same lock
/// exclusively ([`lock_projection_exclusive`]), so a live batch runs either entirely
/// before the swap, on the old tables and checkpoints, or entirely after it, on the new.
///
/// # Errors
/// Database errors.
pub async fn enter_live_transaction(
    connection: &mut PgConnection,
    projection: Projection,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('search_path', $1, true), pg_advisory_xact_lock_shared($2, $3)::text",
    )
    .bind(READ_MODEL_SCHEMA)
    .bind(PROJECTION_LOCK_CLASS)
    .bind(projection.ordinal())
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
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)::text")
        .bind(PROJECTION_LOCK_CLASS)
        .bind(projection.ordinal())
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// The read-model migrations (`projections/migrations`), embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

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

/// Applies the read-model migrations.
///
/// They run on their own connection whose `search_path` is the read-model schema, so their
/// bookkeeping table is `read_model._sqlx_migrations`: the event store's migrations may use
/// `public._sqlx_migrations` in the same database, with overlapping version numbers,
/// without either migrator seeing the other's history.
///
/// # Errors
/// The database is unreachable, or a migration fails (nothing of it is kept).
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .options([("search_path", READ_MODEL_SCHEMA)]);
    let mut connection = options.connect().await?;
    connection
        .execute(format!("CREATE SCHEMA IF NOT EXISTS {READ_MODEL_SCHEMA}").as_str())
        .await?;
    let outcome = MIGRATOR.run(&mut connection).await;
    connection.close().await?;
    outcome
}
