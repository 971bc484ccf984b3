//! Per-(projection, source aggregate) checkpoints: the last applied sequence, and whether
//! the aggregate is parked behind a dead letter.

use std::collections::{BTreeSet, HashMap};

use sqlx::{PgConnection, Row};

use crate::event::AggregateKey;

/// The state of one source aggregate in one projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Last applied sequence (0: nothing applied yet).
    pub last_sequence: i64,
    /// The dead letter this aggregate is parked behind, if any.
    pub parked_by: Option<i64>,
}

/// Locks (creating where missing) and reads the checkpoints of `keys` for the rest of the
/// transaction. Rows are locked in key order, so concurrent batches cannot deadlock on
/// them; a second projector instance that still holds a revoked partition waits here and
/// then sees what the first one applied.
///
/// # Errors
/// Database errors.
pub async fn lock(
    connection: &mut PgConnection,
    projection: &str,
    keys: &BTreeSet<AggregateKey>,
) -> Result<HashMap<AggregateKey, Checkpoint>, sqlx::Error> {
    let (types, ids): (Vec<&str>, Vec<&str>) = keys
        .iter()
        .map(|k| (k.aggregate_type.as_str(), k.aggregate_id.as_str()))
        .unzip();
    let rows = sqlx::query(
        "INSERT INTO read_model.checkpoints AS c \
             (projection, aggregate_type, aggregate_id, last_sequence) \
         SELECT $1, k.aggregate_type, k.aggregate_id, 0 \
         FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS k(aggregate_type, aggregate_id, n) \
         ORDER BY k.n \
         ON CONFLICT (projection, aggregate_type, aggregate_id) \
         DO UPDATE SET last_sequence = c.last_sequence \
         RETURNING aggregate_type, aggregate_id, last_sequence, parked_by",
    )
    .bind(projection)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *connection)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                AggregateKey {
                    aggregate_type: row.try_get("aggregate_type")?,
                    aggregate_id: row.try_get("aggregate_id")?,
                },
                Checkpoint {
                    last_sequence: row.try_get("last_sequence")?,
                    parked_by: row.try_get("parked_by")?,
                },
            ))
        })
        .collect()
}

/// Stores the new last sequences (rows locked by [`lock`] in the same transaction).
///
/// # Errors
/// Database errors.
pub async fn advance(
    connection: &mut PgConnection,
    projection: &str,
    advanced: &HashMap<AggregateKey, i64>,
) -> Result<(), sqlx::Error> {
    if advanced.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(advanced.len());
    let mut ids = Vec::with_capacity(advanced.len());
    let mut sequences = Vec::with_capacity(advanced.len());
    for (key, sequence) in advanced {
        types.push(key.aggregate_type.as_str());
        ids.push(key.aggregate_id.as_str());
        sequences.push(*sequence);
    }
    sqlx::query(
        "UPDATE read_model.checkpoints c \
         SET last_sequence = k.sequence, updated_at = now() \
         FROM unnest($2::text[], $3::text[], $4::bigint[]) AS k(aggregate_type, aggregate_id, sequence) \
         WHERE c.projection = $1 AND c.aggregate_type = k.aggregate_type \
           AND c.aggregate_id = k.aggregate_id",
    )
    .bind(projection)
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Parks `key` behind `dead_letter_id` unless it is parked already: its later events are
/// dead-lettered too instead of being applied across the gap.
///
/// # Errors
/// Database errors.
pub async fn park(
    connection: &mut PgConnection,
    projection: &str,
    key: &AggregateKey,
    dead_letter_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO read_model.checkpoints AS c \
             (projection, aggregate_type, aggregate_id, last_sequence, parked_by) \
         VALUES ($1, $2, $3, 0, $4) \
         ON CONFLICT (projection, aggregate_type, aggregate_id) \
         DO UPDATE SET parked_by = coalesce(c.parked_by, EXCLUDED.parked_by), updated_at = now()",
    )
    .bind(projection)
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .bind(dead_letter_id)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Channel on which every batch announces the aggregates it advanced, at commit, so that
/// readers waiting for a version (query-api's read-your-writes) wake up without polling.
pub const CHANGES_CHANNEL: &str = "keel_read_model";

/// Sends one notification per advanced aggregate: `<projection>:<aggregate type>:<sequence>:<aggregate id>`
/// (the id last, so that it may contain any character). PostgreSQL delivers them on commit.
///
/// # Errors
/// Database errors.
pub async fn notify(
    connection: &mut PgConnection,
    projection: &str,
    advanced: &HashMap<AggregateKey, i64>,
) -> Result<(), sqlx::Error> {
    if advanced.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = advanced
        .iter()
        .map(|(key, sequence)| {
            format!(
                "{projection}:{}:{sequence}:{}",
                key.aggregate_type, key.aggregate_id
            )
        })
        .collect();
    sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind(CHANGES_CHANNEL)
        .bind(&payloads)
        .execute(&mut *connection)
        .await?;
    Ok(())
}
