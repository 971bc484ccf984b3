//! The shadow schema a rebuild writes into, and the swap that makes it live.
//!
//! `read_model_rebuild_<projection>` holds the projection's tables, created from the live
//! tables' definitions as the catalog has them (columns, defaults, generated columns, CHECK,
//! primary, unique and foreign keys, indexes, all with their names), so every read-model
//! migration is followed without a second copy of the DDL. Next to them: `checkpoints`
//! (last applied sequence per source aggregate, as in `read_model.checkpoints`) and
//! `rebuild_progress` (where the rebuild stands in the event store).

use sqlx::{Acquire, PgConnection, PgPool, Postgres, Row, Transaction};

use super::source::LogPosition;
use crate::Projection;
use crate::checkpoint::CHANGES_CHANNEL;
use read_model::READ_MODEL_SCHEMA;

/// Above this many aggregates advanced by a swap, no per-aggregate notification is sent:
/// waiting readers re-read on their own timer anyway.
const MAX_SWAP_NOTIFICATIONS: i64 = 10_000;

/// The schema a rebuild of `projection` writes into.
pub fn shadow_schema(projection: Projection) -> String {
    read_model::rebuild::shadow_schema(projection.name())
}

/// Where a rebuild stands, as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredProgress {
    /// Last event-store position whose batch is applied (the next read starts after it).
    pub position: LogPosition,
    /// Events read from the store so far.
    pub events_read: u64,
    /// Events applied to the shadow so far.
    pub events_applied: u64,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Whether the shadow of `projection` exists (a rebuild started and not swapped).
///
/// # Errors
/// Database errors.
pub async fn exists(pool: &PgPool, projection: Projection) -> Result<bool, sqlx::Error> {
    read_model::rebuild::shadow_exists(pool, projection.name()).await
}

/// Drops the shadow of `projection` and everything in it.
///
/// # Errors
/// Database errors.
pub async fn drop(pool: &PgPool, projection: Projection) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote(&shadow_schema(projection))
    ))
    .execute(pool)
    .await?;
    Ok(())
}

/// Creates the shadow of `projection`, empty, in one transaction: its tables shaped like the
/// live ones (secondary indexes come later, [`create_secondary_indexes`]), its checkpoints
/// and its progress row at the start of the store.
///
/// # Errors
/// Database errors.
pub async fn create(
    pool: &PgPool,
    projection: Projection,
    source: &str,
) -> Result<(), sqlx::Error> {
    let schema = quote(&shadow_schema(projection));
    let mut tx = pool.begin().await?;
    // Catalog definitions come out schema-qualified when only pg_catalog is searched.
    sqlx::query("SELECT set_config('search_path', 'pg_catalog', true)")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *tx)
        .await?;
    let live = quote(READ_MODEL_SCHEMA);
    for table in projection.tables() {
        let table = quote(table);
        sqlx::query(&format!(
            "CREATE TABLE {schema}.{table} (LIKE {live}.{table} INCLUDING ALL EXCLUDING INDEXES)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    // Keys after every table exists: a foreign key may name a later table.
    for table in projection.tables() {
        for (name, definition) in constraints(&mut tx, table).await? {
            let definition = definition.replace(
                &format!("REFERENCES {READ_MODEL_SCHEMA}."),
                &format!("REFERENCES {schema}."),
            );
            sqlx::query(&format!(
                "ALTER TABLE {schema}.{} ADD CONSTRAINT {} {definition}",
                quote(table),
                quote(&name)
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query(&format!(
        "CREATE TABLE {schema}.checkpoints ( \
             aggregate_type text NOT NULL, \
             aggregate_id   text NOT NULL, \
             last_sequence  bigint NOT NULL CHECK (last_sequence >= 0), \
             updated_at     timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (aggregate_type, aggregate_id))"
    ))
    .execute(&mut *tx)
    .await?;
    create_progress(&mut tx, &schema, projection, source).await?;
    tx.commit().await
}

/// Creates the shadow schema with only its progress row: the marker of a rebuild that
/// works in place (from Kafka).
///
/// # Errors
/// Database errors.
pub async fn create_marker(
    pool: &PgPool,
    projection: Projection,
    source: &str,
) -> Result<(), sqlx::Error> {
    let schema = quote(&shadow_schema(projection));
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *tx)
        .await?;
    create_progress(&mut tx, &schema, projection, source).await?;
    tx.commit().await
}

async fn create_progress(
    connection: &mut PgConnection,
    schema: &str,
    projection: Projection,
    source: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "CREATE TABLE {schema}.rebuild_progress ( \
             projection      text PRIMARY KEY, \
             source          text NOT NULL, \
             transaction_id  bigint NOT NULL, \
             global_position bigint NOT NULL, \
             events_read     bigint NOT NULL, \
             events_applied  bigint NOT NULL, \
             started_at      timestamptz NOT NULL DEFAULT now(), \
             updated_at      timestamptz NOT NULL DEFAULT now())"
    ))
    .execute(&mut *connection)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {schema}.rebuild_progress \
             (projection, source, transaction_id, global_position, events_read, events_applied) \
         VALUES ($1, $2, 0, 0, 0, 0)"
    ))
    .bind(projection.name())
    .bind(source)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Primary, unique, exclusion and foreign keys of live table `table`, keys first.
async fn constraints(
    connection: &mut PgConnection,
    table: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.conname::text AS name, pg_get_constraintdef(c.oid) AS definition \
         FROM pg_constraint c \
         WHERE c.conrelid = format('%I.%I', $1::text, $2::text)::regclass \
           AND c.contype IN ('p', 'u', 'x', 'f') \
         ORDER BY c.contype = 'f', c.conname",
    )
    .bind(READ_MODEL_SCHEMA)
    .bind(table)
    .fetch_all(&mut *connection)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("name")?, row.try_get("definition")?)))
        .collect()
}

/// Creates the live tables' other indexes in the shadow (same names), if missing. Built
/// after the bulk of the rebuild, which then does not maintain them row by row.
///
/// # Errors
/// Database errors.
pub async fn create_secondary_indexes(
    pool: &PgPool,
    projection: Projection,
) -> Result<(), sqlx::Error> {
    let schema = quote(&shadow_schema(projection));
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('search_path', 'pg_catalog', true)")
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        let definitions: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid = format('%I.%I', $1::text, $2::text)::regclass \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
                               WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid) \
             ORDER BY i.indexrelid",
        )
        .bind(READ_MODEL_SCHEMA)
        .bind(table)
        .fetch_all(&mut *tx)
        .await?;
        for definition in definitions {
            let definition = definition
                .replacen(
                    &format!(" ON {READ_MODEL_SCHEMA}."),
                    &format!(" ON {schema}."),
                    1,
                )
                .replacen("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
                .replacen(
                    "CREATE UNIQUE INDEX ",
                    "CREATE UNIQUE INDEX IF NOT EXISTS ",
                    1,
                );
            sqlx::query(&definition).execute(&mut *tx).await?;
        }
        sqlx::query(&format!("ANALYZE {schema}.{}", quote(table)))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// The committed progress of the shadow of `projection`, and the source it is built from.
///
/// # Errors
/// Database errors (the shadow must exist).
pub async fn progress(
    pool: &PgPool,
    projection: Projection,
) -> Result<(StoredProgress, String), sqlx::Error> {
    let progress = read_model::rebuild::progress(pool, projection.name()).await?;
    Ok((
        StoredProgress {
            position: LogPosition {
                transaction_id: progress.transaction_id,
                global_position: progress.global_position,
            },
            events_read: progress.events_read,
            events_applied: progress.events_applied,
        },
        progress.source,
    ))
}

/// Records `progress` (after the batches it covers have committed).
///
/// # Errors
/// Database errors.
pub async fn save_progress(
    connection: &mut PgConnection,
    projection: Projection,
    progress: &StoredProgress,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {}.rebuild_progress \
         SET transaction_id = $2, global_position = $3, events_read = $4, events_applied = $5, \
             updated_at = now() \
         WHERE projection = $1",
        quote(&shadow_schema(projection))
    ))
    .bind(projection.name())
    .bind(progress.position.transaction_id)
    .bind(progress.position.global_position)
    .bind(i64::try_from(progress.events_read).unwrap_or(i64::MAX))
    .bind(i64::try_from(progress.events_applied).unwrap_or(i64::MAX))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Aggregates whose live checkpoint is ahead of the shadow's: `(type, id, shadow, live)`.
///
/// # Errors
/// Database errors.
pub async fn behind_live(
    connection: &mut PgConnection,
    projection: Projection,
) -> Result<Vec<(String, String, i64, i64)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT l.aggregate_type, l.aggregate_id, coalesce(s.last_sequence, 0), l.last_sequence \
         FROM {READ_MODEL_SCHEMA}.checkpoints l \
         LEFT JOIN {}.checkpoints s USING (aggregate_type, aggregate_id) \
         WHERE l.projection = $1 AND l.last_sequence > coalesce(s.last_sequence, 0) \
         ORDER BY 1, 2",
        quote(&shadow_schema(projection))
    ))
    .bind(projection.name())
    .fetch_all(&mut *connection)
    .await
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swapped {
    /// Where the replaced tables went, if they were kept.
    pub old_schema: Option<String>,
    /// Aggregates the new tables hold further than the old ones did.
    pub advanced: i64,
}

/// Makes the shadow live, inside `tx` (which holds the projection's exclusive lock):
/// readers waiting on advanced aggregates are notified, the projection's checkpoints are
/// replaced by the shadow's, the live tables are dropped (or moved to
/// `read_model_old_<projection>_<suffix>`), the shadow tables move into `read_model`, and
/// the shadow schema is dropped. All or nothing, at commit.
///
/// # Errors
/// Database errors.
pub async fn swap(
    tx: &mut Transaction<'_, Postgres>,
    projection: Projection,
    keep_old_suffix: Option<&str>,
) -> Result<Swapped, sqlx::Error> {
    let connection = tx.acquire().await?;
    let shadow = quote(&shadow_schema(projection));
    let live = quote(READ_MODEL_SCHEMA);
    let name = projection.name();

    let advanced_query = format!(
        "FROM {shadow}.checkpoints s \
         LEFT JOIN {live}.checkpoints l \
           ON l.projection = $1 AND l.aggregate_type = s.aggregate_type \
          AND l.aggregate_id = s.aggregate_id \
         WHERE s.last_sequence > coalesce(l.last_sequence, 0)"
    );
    let advanced: i64 = sqlx::query_scalar(&format!("SELECT count(*) {advanced_query}"))
        .bind(name)
        .fetch_one(&mut *connection)
        .await?;
    if advanced <= MAX_SWAP_NOTIFICATIONS {
        sqlx::query(&format!(
            "SELECT count(pg_notify($2, format('%s:%s:%s:%s', $1::text, s.aggregate_type, \
                                                s.last_sequence, s.aggregate_id))) \
             {advanced_query}"
        ))
        .bind(name)
        .bind(CHANGES_CHANNEL)
        .execute(&mut *connection)
        .await?;
    }

    sqlx::query(&format!(
        "DELETE FROM {live}.checkpoints WHERE projection = $1"
    ))
    .bind(name)
    .execute(&mut *connection)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {live}.checkpoints \
             (projection, aggregate_type, aggregate_id, last_sequence, parked_by, updated_at) \
         SELECT $1, aggregate_type, aggregate_id, last_sequence, NULL, updated_at \
         FROM {shadow}.checkpoints"
    ))
    .bind(name)
    .execute(&mut *connection)
    .await?;
    // Events held for a retry may be newer than what the rebuild read: their aggregates
    // stay retrying, due at once (what the new tables hold already is skipped then).
    sqlx::query(&format!(
        "INSERT INTO {live}.checkpoints AS c \
             (projection, aggregate_type, aggregate_id, last_sequence, retry_at) \
         SELECT DISTINCT $1, aggregate_type, aggregate_id, 0, now() \
         FROM {live}.retry_events WHERE projection = $1 \
         ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE SET retry_at = now()"
    ))
    .bind(name)
    .execute(&mut *connection)
    .await?;

    let old_schema =
        keep_old_suffix.map(|suffix| format!("{READ_MODEL_SCHEMA}_old_{name}_{suffix}"));
    if let Some(old) = &old_schema {
        sqlx::query(&format!("CREATE SCHEMA {}", quote(old)))
            .execute(&mut *connection)
            .await?;
    }
    // Referencing tables first, for the drops.
    for table in projection.tables().iter().rev() {
        let statement = match &old_schema {
            Some(old) => format!(
                "ALTER TABLE {live}.{} SET SCHEMA {}",
                quote(table),
                quote(old)
            ),
            None => format!("DROP TABLE {live}.{}", quote(table)),
        };
        sqlx::query(&statement).execute(&mut *connection).await?;
    }
    for table in projection.tables() {
        sqlx::query(&format!(
            "ALTER TABLE {shadow}.{} SET SCHEMA {live}",
            quote(table)
        ))
        .execute(&mut *connection)
        .await?;
    }
    sqlx::query(&format!("DROP SCHEMA {shadow} CASCADE"))
        .execute(&mut *connection)
        .await?;
    Ok(Swapped {
        old_schema,
        advanced,
    })
}
