//! The read-model database: pool and migrations.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use std::time::Duration;

use crate::config::DatabaseUrl;

/// The PostgreSQL schema holding every read model (never the event store's tables).
pub const READ_MODEL_SCHEMA: &str = "read_model";

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
