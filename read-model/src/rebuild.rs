//! Where a rebuild stands: a rebuild of projection `p` writes into the shadow schema
//! `read_model_rebuild_<p>` (created, filled and swapped by the projector's replay), whose
//! `rebuild_progress` row says how far it got.

use sqlx::{PgPool, Row};

use crate::READ_MODEL_SCHEMA;

/// The schema a rebuild of the projection called `name` writes into.
pub fn shadow_schema(name: &str) -> String {
    format!("{READ_MODEL_SCHEMA}_rebuild_{name}")
}

/// A shadow's committed progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildProgress {
    /// `store` or `kafka`.
    pub source: String,
    /// Commit-order position of the last event-store batch applied: its transaction.
    pub transaction_id: i64,
    /// Commit-order position of the last event-store batch applied: its global position.
    pub global_position: i64,
    /// Events read so far.
    pub events_read: u64,
    /// Events applied to the shadow so far.
    pub events_applied: u64,
}

/// Whether the shadow of the projection called `name` exists (a rebuild started and was
/// not swapped in yet).
///
/// # Errors
/// Database errors.
pub async fn shadow_exists(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(shadow_schema(name))
        .fetch_one(pool)
        .await
}

/// The committed progress of the shadow of the projection called `name`.
///
/// # Errors
/// Database errors (the shadow must exist).
pub async fn progress(pool: &PgPool, name: &str) -> Result<RebuildProgress, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT transaction_id, global_position, events_read, events_applied, source \
         FROM \"{}\".rebuild_progress WHERE projection = $1",
        shadow_schema(name).replace('"', "\"\"")
    ))
    .bind(name)
    .fetch_one(pool)
    .await?;
    let count = |column: &str| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or_default())
    };
    Ok(RebuildProgress {
        source: row.try_get("source")?,
        transaction_id: row.try_get("transaction_id")?,
        global_position: row.try_get("global_position")?,
        events_read: count("events_read")?,
        events_applied: count("events_applied")?,
    })
}
