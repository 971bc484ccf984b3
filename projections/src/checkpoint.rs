//! Per-(projection, source aggregate) checkpoints: the last applied sequence, whether the
//! aggregate is parked behind a dead letter, and whether it is waiting for a retry (its
//! events held in `retry_events`, see [`crate::retry`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use sqlx::{PgConnection, Row};

use crate::event::AggregateKey;

/// The state of one source aggregate in one projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Last applied sequence (0: nothing applied yet).
    pub last_sequence: i64,
    /// The dead letter this aggregate is parked behind, if any.
    pub parked_by: Option<i64>,
    /// Whether the aggregate is waiting for a retry: its events are held, not applied.
    pub retrying: bool,
    /// Whether that retry is due.
    pub retry_due: bool,
    /// Attempts made at the held event so far (0 when not retrying).
    pub retry_attempts: u32,
}

/// How a transaction changes a checkpoint's retry state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryChange {
    /// The aggregate waits: try again after `delay`.
    Schedule {
        /// From the commit.
        delay: Duration,
        /// Attempts made so far.
        attempts: u32,
        /// The last failure, for the operator.
        error: String,
    },
    /// The aggregate's held events are all applied (or dead-lettered): it flows again.
    Clear,
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
         RETURNING aggregate_type, aggregate_id, last_sequence, parked_by, \
                   retry_at IS NOT NULL AS retrying, \
                   coalesce(retry_at <= now(), false) AS retry_due, retry_attempts",
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
                    retrying: row.try_get("retrying")?,
                    retry_due: row.try_get("retry_due")?,
                    retry_attempts: u32::try_from(row.try_get::<i32, _>("retry_attempts")?)
                        .unwrap_or_default(),
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

/// Stores retry-state changes (rows locked by [`lock`] in the same transaction). A
/// scheduled retry is due `delay` after the transaction's start.
///
/// # Errors
/// Database errors.
pub async fn change_retries(
    connection: &mut PgConnection,
    projection: &str,
    changes: &HashMap<AggregateKey, RetryChange>,
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(changes.len());
    let mut ids = Vec::with_capacity(changes.len());
    let mut delays: Vec<Option<i64>> = Vec::with_capacity(changes.len());
    let mut attempts = Vec::with_capacity(changes.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(changes.len());
    for (key, change) in changes {
        types.push(key.aggregate_type.as_str());
        ids.push(key.aggregate_id.as_str());
        match change {
            RetryChange::Schedule {
                delay,
                attempts: made,
                error,
            } => {
                delays.push(Some(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)));
                attempts.push(i32::try_from(*made).unwrap_or(i32::MAX));
                errors.push(Some(error.as_str()));
            }
            RetryChange::Clear => {
                delays.push(None);
                attempts.push(0);
                errors.push(None);
            }
        }
    }
    sqlx::query(
        "UPDATE read_model.checkpoints c \
         SET retry_at = now() + k.delay_ms * interval '1 millisecond', \
             retry_attempts = k.attempts, retry_error = k.error, updated_at = now() \
         FROM unnest($2::text[], $3::text[], $4::bigint[], $5::int[], $6::text[]) \
              AS k(aggregate_type, aggregate_id, delay_ms, attempts, error) \
         WHERE c.projection = $1 AND c.aggregate_type = k.aggregate_type \
           AND c.aggregate_id = k.aggregate_id",
    )
    .bind(projection)
    .bind(&types)
    .bind(&ids)
    .bind(&delays)
    .bind(&attempts)
    .bind(&errors)
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
