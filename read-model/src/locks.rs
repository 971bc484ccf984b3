//! The advisory locks that keep the writers of schema `read_model` apart. Every live
//! transaction of a projection (a projector batch, an operator's answer to a dead letter)
//! takes the projection's lock in shared mode; a rebuild's swap takes it exclusively, so a
//! live transaction runs either entirely before the swap, on the old tables, or entirely
//! after it, on the new. A rebuild holds its projection's rebuild lock for as long as it
//! runs, so two rebuilds of one projection cannot overlap.

use sqlx::{PgConnection, PgPool};

use crate::READ_MODEL_SCHEMA;

/// First key of the projection locks ("krpj"; the outbox relay's shard leases use "keel").
pub const PROJECTION_LOCK_CLASS: i32 = 0x6b72_706a;

/// First key of the rebuild locks ("krbu").
pub const REBUILD_LOCK_CLASS: i32 = 0x6b72_6275;

/// What every live transaction of the projection with `lock_key` does first: resolve its
/// tables in [`READ_MODEL_SCHEMA`] and take the projection's lock in shared mode (live
/// writers do not block one another) until commit.
///
/// # Errors
/// Database errors.
pub async fn enter_live_transaction(
    connection: &mut PgConnection,
    lock_key: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('search_path', $1, true), pg_advisory_xact_lock_shared($2, $3)::text",
    )
    .bind(READ_MODEL_SCHEMA)
    .bind(PROJECTION_LOCK_CLASS)
    .bind(lock_key)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Waits for the live transactions of the projection with `lock_key` in flight to end and
/// keeps new ones out until this transaction ends.
///
/// # Errors
/// Database errors.
pub async fn lock_projection_exclusive(
    connection: &mut PgConnection,
    lock_key: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)::text")
        .bind(PROJECTION_LOCK_CLASS)
        .bind(lock_key)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Whether a process holds the rebuild lock of the projection with `lock_key` (a rebuild
/// runs now).
///
/// # Errors
/// Database errors.
pub async fn rebuild_running(pool: &PgPool, lock_key: i32) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks \
         WHERE locktype = 'advisory' AND classid::bigint = $1::bigint \
           AND objid::bigint = $2::bigint AND objsubid = 2 AND granted)",
    )
    .bind(REBUILD_LOCK_CLASS)
    .bind(lock_key)
    .fetch_one(pool)
    .await
}
