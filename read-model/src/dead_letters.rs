//! What an operator does about dead letters (ADR 0007): list them, **retry** one, or
//! **skip** one with a reason. Each answer is recorded on the dead letters it resolves, with
//! who gave it.
//!
//! Only the dead letter that parks its aggregate (or one without an aggregate) can be
//! answered; the `parked` letters behind it move with it:
//! - **retry** puts the parking letter and every unresolved letter of its aggregate back as
//!   held events (`retry_events`), due at once, with a fresh attempt budget: the projector
//!   applies them in order within seconds, or dead-letters the event again if it still
//!   fails (the same row opens again).
//! - **skip** gives up on that one event: the aggregate's checkpoint moves past it (the read
//!   model lacks its effect until the projection is rebuilt from the event store, which
//!   has the event), and the letters behind it are put back as with retry.
//!
//! `keel-replay` and the console give these answers; like a projector batch, each runs as a
//! live transaction of its projection ([`crate::locks`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use utoipa::ToSchema;

use crate::{catalog, locks};

/// Longest skip reason kept.
pub const MAX_REASON_CHARS: usize = 1_000;

/// One dead letter, as an operator sees it (not its payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, ToSchema)]
pub struct DeadLetterSummary {
    /// Its id.
    pub id: i64,
    /// The projection that gave up on it.
    pub projection: String,
    /// Where it was read.
    pub topic: String,
    /// Where it was read.
    pub kafka_partition: i32,
    /// Where it was read.
    pub kafka_offset: i64,
    /// Its aggregate, when known.
    pub aggregate_type: Option<String>,
    /// Its aggregate, when known.
    pub aggregate_id: Option<String>,
    /// Its sequence, when it decoded.
    pub sequence: Option<i64>,
    /// `poison` or `parked`.
    pub reason: String,
    /// What went wrong.
    pub error: String,
    /// Attempts made.
    pub attempts: i32,
    /// When.
    pub dead_lettered_at: DateTime<Utc>,
    /// `retried` or `skipped`, once an operator answered.
    pub resolution: Option<String>,
    /// Who answered.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Why (a skip's reason).
    pub resolution_reason: Option<String>,
}

/// An operator's answer could not be recorded; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No dead letter has this id.
    #[error("dead letter {0} does not exist")]
    NotFound(i64),
    /// It was answered already.
    #[error("dead letter {id} was {resolution} already")]
    AlreadyResolved {
        /// The dead letter.
        id: i64,
        /// `retried` or `skipped`.
        resolution: String,
    },
    /// Its aggregate is parked behind another dead letter, which is the one to answer.
    #[error("dead letter {id} is held behind dead letter {parked_by}: retry or skip that one")]
    HeldBehind {
        /// The dead letter asked for.
        id: i64,
        /// The one that parks its aggregate.
        parked_by: i64,
    },
    /// A message without a known aggregate cannot be put back in order; it can be skipped.
    #[error("dead letter {0} has no aggregate to apply it to; it can only be skipped")]
    NoAggregate(i64),
    /// The actor or the reason is blank or too long.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What an answer did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The dead letters it resolved (the one asked for first).
    pub dead_letters: Vec<i64>,
    /// Messages put back for the projector to apply.
    pub requeued: u64,
}

const SUMMARY_COLUMNS: &str = "id, projection, topic, kafka_partition, kafka_offset, \
     aggregate_type, aggregate_id, sequence, reason, error, attempts, dead_lettered_at, \
     resolution, resolved_by, resolved_at, resolution_reason";

/// Dead letters, newest first: of one projection or all, unresolved only unless
/// `include_resolved`.
///
/// # Errors
/// Database errors.
pub async fn list(
    pool: &PgPool,
    projection: Option<&str>,
    include_resolved: bool,
    limit: i64,
) -> Result<Vec<DeadLetterSummary>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM read_model.dead_letters \
         WHERE ($1::text IS NULL OR projection = $1) AND ($2 OR resolution IS NULL) \
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(projection)
    .bind(include_resolved)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Retries dead letter `id` (see the module docs).
///
/// # Errors
/// [`OperatorError`]; nothing changed.
pub async fn retry(pool: &PgPool, id: i64, actor: &str) -> Result<Resolved, OperatorError> {
    answer(pool, id, actor, Answer::Retry).await
}

/// Skips dead letter `id` for `reason` (see the module docs).
///
/// # Errors
/// [`OperatorError`]; nothing changed.
pub async fn skip(
    pool: &PgPool,
    id: i64,
    actor: &str,
    reason: &str,
) -> Result<Resolved, OperatorError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(OperatorError::Invalid(format!(
            "a skip needs a reason of 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    answer(pool, id, actor, Answer::Skip(reason)).await
}

#[derive(Debug, Clone, Copy)]
enum Answer<'a> {
    Retry,
    Skip(&'a str),
}

async fn answer(
    pool: &PgPool,
    id: i64,
    actor: &str,
    answer: Answer<'_>,
) -> Result<Resolved, OperatorError> {
    let actor = actor.trim();
    if actor.is_empty() || actor.chars().count() > 200 {
        return Err(OperatorError::Invalid(
            "the actor must be 1 to 200 characters".to_owned(),
        ));
    }
    let mut tx = pool.begin().await?;
    let letter: Option<DeadLetterSummary> = sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM read_model.dead_letters WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let letter = letter.ok_or(OperatorError::NotFound(id))?;
    if let Some(resolution) = letter.resolution {
        return Err(OperatorError::AlreadyResolved { id, resolution });
    }
    // Kept out of a rebuild's swap, like a live batch.
    if let Some(projection) = catalog::projection(&letter.projection) {
        locks::enter_live_transaction(&mut tx, projection.lock_key).await?;
    }
    let (Some(aggregate_type), Some(aggregate_id)) = (&letter.aggregate_type, &letter.aggregate_id)
    else {
        let Answer::Skip(reason) = answer else {
            return Err(OperatorError::NoAggregate(id));
        };
        resolve(&mut tx, &[id], "skipped", actor, Some(reason)).await?;
        tx.commit().await?;
        return Ok(Resolved {
            dead_letters: vec![id],
            requeued: 0,
        });
    };
    let name = letter.projection.as_str();
    // The aggregate's checkpoint, created if missing (the projector's retry sweep finds
    // held events through it), locked like the projector's own batch would lock it.
    let parked_by: Option<i64> = sqlx::query_scalar(
        "INSERT INTO read_model.checkpoints AS c \
             (projection, aggregate_type, aggregate_id, last_sequence) \
         VALUES ($1, $2, $3, 0) \
         ON CONFLICT (projection, aggregate_type, aggregate_id) \
         DO UPDATE SET last_sequence = c.last_sequence \
         RETURNING parked_by",
    )
    .bind(name)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(parked_by) = parked_by.filter(|&parked_by| parked_by != id) {
        return Err(OperatorError::HeldBehind { id, parked_by });
    }
    // The letter and every unresolved one of its aggregate behind it, oldest first.
    let behind: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, sequence FROM read_model.dead_letters \
         WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3 \
           AND resolution IS NULL AND id <> $4 \
         ORDER BY id FOR UPDATE",
    )
    .bind(name)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let behind_ids: Vec<i64> = behind.iter().map(|(id, _)| *id).collect();
    let (requeue, skipped_to) = match answer {
        Answer::Retry => {
            resolve(&mut tx, &[id], "retried", actor, None).await?;
            ([vec![id], behind_ids.clone()].concat(), None)
        }
        Answer::Skip(reason) => {
            resolve(&mut tx, &[id], "skipped", actor, Some(reason)).await?;
            // Past the skipped event: its own sequence, or (it never decoded) just before
            // the first event held behind it.
            let skipped_to = letter.sequence.or_else(|| {
                behind
                    .iter()
                    .filter_map(|(_, sequence)| *sequence)
                    .min()
                    .map(|first| first - 1)
            });
            (behind_ids.clone(), skipped_to)
        }
    };
    let released = format!("released with dead letter {id}");
    resolve(&mut tx, &behind_ids, "retried", actor, Some(&released)).await?;
    let requeued = requeue_letters(&mut tx, &requeue).await?;
    sqlx::query(
        "UPDATE read_model.checkpoints \
         SET parked_by = NULL, last_sequence = greatest(last_sequence, coalesce($4, 0)), \
             retry_at = CASE WHEN $5 THEN now() ELSE retry_at END, \
             retry_attempts = CASE WHEN $5 THEN 0 ELSE retry_attempts END, \
             retry_error = CASE WHEN $5 THEN $6 ELSE retry_error END, updated_at = now() \
         WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
    )
    .bind(name)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(skipped_to)
    .bind(requeued > 0)
    .bind(format!("{released} by {actor}"))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Resolved {
        dead_letters: [vec![id], behind_ids].concat(),
        requeued,
    })
}

async fn resolve(
    connection: &mut PgConnection,
    ids: &[i64],
    resolution: &str,
    actor: &str,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE read_model.dead_letters \
         SET resolution = $2, resolved_at = now(), resolved_by = $3, resolution_reason = $4 \
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(resolution)
    .bind(actor)
    .bind(reason)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Puts dead letters back as held events of their aggregate.
async fn requeue_letters(connection: &mut PgConnection, ids: &[i64]) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "INSERT INTO read_model.retry_events (projection, topic, kafka_partition, kafka_offset, \
             aggregate_type, aggregate_id, sequence, message_key, payload, headers) \
         SELECT projection, topic, kafka_partition, kafka_offset, aggregate_type, aggregate_id, \
                sequence, message_key, payload, headers \
         FROM read_model.dead_letters WHERE id = ANY($1) \
         ON CONFLICT (projection, topic, kafka_partition, kafka_offset) DO NOTHING",
    )
    .bind(ids)
    .execute(&mut *connection)
    .await?;
    Ok(done.rows_affected())
}
