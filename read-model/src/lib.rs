//! The read models: schema `read_model`, its migrations, and the reads the query API serves.
//!
//! One crate owns the schema so that its writer and its reader agree on one definition:
//! - [`MIGRATOR`] / [`migrate`]: the tables (`checkpoints`, `dead_letters` and the views'
//!   tables), migrated into [`READ_MODEL_SCHEMA`] with their own bookkeeping table.
//! - the status enums ([`orders::OrderStatus`]) whose names are exactly what the tables'
//!   CHECK constraints accept (tested against the migrated schema);
//! - [`orders`], [`payments`], [`stock`], [`projections`]: the queries and the views they
//!   return, which are also the query API's bodies. Each view that supports
//!   read-your-writes has a cheap `*_version` probe.
//! - [`catalog`]: each projection's name, source aggregate types and lock key;
//!   [`locks`]: the advisory locks that keep live writers and a rebuild's swap apart;
//!   [`rebuild`]: where an unfinished rebuild stands.
//! - [`dead_letters`]: an operator's answers to dead letters (retry, skip with a reason),
//!   recorded with the actor; `keel-replay` and the console give them.
//!
//! The `projections` crate writes the views and checkpoints; besides it, only the
//! operator's answers in [`dead_letters`] write, as live transactions of their projection.

pub mod catalog;
pub mod dead_letters;
pub mod locks;
pub mod orders;
pub mod payments;
pub mod projections;
pub mod rebuild;
pub mod stock;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

/// The PostgreSQL schema holding every read model (never the event store's tables).
pub const READ_MODEL_SCHEMA: &str = "read_model";

/// The read-model migrations (`read-model/migrations`), embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

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

use serde::Serialize;
use utoipa::ToSchema;

/// An amount of money in integer minor units; never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Money {
    /// Amount in the currency's minor unit (cents for EUR).
    #[schema(example = 1999)]
    pub amount_minor: i64,
    /// ISO-4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
}

impl Money {
    fn new(amount_minor: i64, currency: &str) -> Self {
        Self {
            amount_minor,
            currency: currency.to_owned(),
        }
    }
}
