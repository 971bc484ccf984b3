//! The saga's tables (migrations 0020, 0021): instances, the commands they decided, per-aggregate
//! checkpoints and processed events. Every function takes the caller's transaction, so a
//! state change, the commands it decided and the checkpoint that admitted its event commit
//! together or not at all.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::machine::{Decision, Fulfilment, SagaCommand};

/// A saga table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("saga store: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored saga or command does not deserialize (a bug or a manual edit).
    #[error("saga store holds unreadable data: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Whether an event is the next one of its aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// It is (or the aggregate was never seen): act on it; the checkpoint has advanced.
    Apply,
    /// Already consumed: a redelivery.
    Duplicate,
    /// An earlier event is missing; the at-least-once redelivery brings it again in order.
    Gap {
        /// The checkpoint.
        last: i64,
    },
}

/// An event's place: its aggregate and its sequence in that aggregate's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position<'a> {
    /// `order`, `payment` or `inventory`.
    pub aggregate_type: &'a str,
    /// The aggregate's id.
    pub aggregate_id: &'a str,
    /// 1-based.
    pub sequence: i64,
}

/// Admits a batch of events, in the order given: each one gets its [`Checkpoint`] verdict
/// as if they came one at a time, and the checkpoints of those that apply advance. Three
/// statements at most for the whole batch, whatever its size: lock and read the
/// checkpoints of its aggregates, create the missing ones, write those that moved.
///
/// The checkpoint rows stay locked until the transaction ends, so two saga instances
/// never act on the same aggregate's events concurrently; they are locked in key order, so
/// two batches over the same aggregates cannot deadlock on them.
///
/// An aggregate without a checkpoint admits the first sequence it shows, whatever it is: a
/// saga deployed onto existing topics (or reading from the latest offset) must not wait
/// forever for events it will never see.
pub async fn admit(
    tx: &mut PgConnection,
    positions: &[Position<'_>],
) -> Result<Vec<Checkpoint>, StoreError> {
    // The batch's aggregates in key order, each with the first sequence the batch shows.
    let mut index: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut first_seen: Vec<i64> = Vec::new();
    for position in positions {
        let key = (position.aggregate_type, position.aggregate_id);
        if let Entry::Vacant(slot) = index.entry(key) {
            slot.insert(first_seen.len());
            first_seen.push(position.sequence);
        }
    }
    let mut slots = lock_checkpoints(tx, &index, &first_seen).await?;
    let verdicts = positions
        .iter()
        .map(|position| {
            let slot = &mut slots[index[&(position.aggregate_type, position.aggregate_id)]];
            if position.sequence == slot.last + 1 {
                slot.last = position.sequence;
                Checkpoint::Apply
            } else if position.sequence <= slot.last {
                Checkpoint::Duplicate
            } else {
                Checkpoint::Gap { last: slot.last }
            }
        })
        .collect();
    let (mut types, mut ids, mut sequences) = (Vec::new(), Vec::new(), Vec::new());
    for (&(aggregate_type, aggregate_id), &at) in &index {
        let slot = slots[at];
        if slot.last != slot.stored {
            types.push(aggregate_type);
            ids.push(aggregate_id);
            sequences.push(slot.last);
        }
    }
    if !types.is_empty() {
        sqlx::query(
            "UPDATE saga_checkpoints c SET last_sequence = v.last_sequence \
             FROM unnest($1::text[], $2::text[], $3::bigint[]) \
               AS v(aggregate_type, aggregate_id, last_sequence) \
             WHERE c.aggregate_type = v.aggregate_type AND c.aggregate_id = v.aggregate_id",
        )
        .bind(types)
        .bind(ids)
        .bind(sequences)
        .execute(&mut *tx)
        .await?;
    }
    Ok(verdicts)
}

/// An aggregate's checkpoint during [`admit`].
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The last sequence admitted, as far as the batch has gone.
    last: i64,
    /// What the row holds: written back if `last` moved away from it.
    stored: i64,
}

/// Locks and reads the checkpoint of every aggregate of `index` (key → slot). A missing
/// one is created at the slot's first sequence seen, and reported as one before it, so
/// that sequence applies. A checkpoint that another instance creates meanwhile is locked
/// and read on the next round.
async fn lock_checkpoints(
    tx: &mut PgConnection,
    index: &BTreeMap<(&str, &str), usize>,
    first_seen: &[i64],
) -> Result<Vec<Slot>, StoreError> {
    let mut slots: Vec<Option<Slot>> = vec![None; first_seen.len()];
    let (types, ids): (Vec<&str>, Vec<&str>) = index.keys().copied().unzip();
    loop {
        let rows = sqlx::query(
            "SELECT c.aggregate_type, c.aggregate_id, c.last_sequence FROM saga_checkpoints c \
             JOIN unnest($1::text[], $2::text[]) AS k(aggregate_type, aggregate_id) \
               ON c.aggregate_type = k.aggregate_type AND c.aggregate_id = k.aggregate_id \
             ORDER BY c.aggregate_type, c.aggregate_id FOR UPDATE OF c",
        )
        .bind(&types)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            // Rows this transaction created in an earlier round are known already.
            if let Some(at) = slot_of(&row, index)?
                && slots[at].is_none()
            {
                let stored = row.try_get("last_sequence")?;
                slots[at] = Some(Slot {
                    last: stored,
                    stored,
                });
            }
        }
        let (mut new_types, mut new_ids, mut firsts) = (Vec::new(), Vec::new(), Vec::new());
        for (&(aggregate_type, aggregate_id), &at) in index {
            if slots[at].is_none() {
                new_types.push(aggregate_type);
                new_ids.push(aggregate_id);
                firsts.push(first_seen[at]);
            }
        }
        if new_types.is_empty() {
            break;
        }
        let created = sqlx::query(
            "INSERT INTO saga_checkpoints (aggregate_type, aggregate_id, last_sequence) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
             ON CONFLICT DO NOTHING RETURNING aggregate_type, aggregate_id",
        )
        .bind(new_types)
        .bind(new_ids)
        .bind(firsts)
        .fetch_all(&mut *tx)
        .await?;
        for row in created {
            if let Some(at) = slot_of(&row, index)? {
                slots[at] = Some(Slot {
                    last: first_seen[at].saturating_sub(1),
                    stored: first_seen[at],
                });
            }
        }
        if slots.iter().all(Option::is_some) {
            break;
        }
        // Another instance created some meanwhile: lock and read them on the next round.
    }
    Ok(slots.into_iter().flatten().collect())
}

/// The slot of the aggregate a checkpoint row names, if the batch has it.
fn slot_of(
    row: &PgRow,
    index: &BTreeMap<(&str, &str), usize>,
) -> Result<Option<usize>, sqlx::Error> {
    let aggregate_type: &str = row.try_get("aggregate_type")?;
    let aggregate_id: &str = row.try_get("aggregate_id")?;
    Ok(index.get(&(aggregate_type, aggregate_id)).copied())
}

/// Records that `event_id` moved the saga of `order_id`; false if it already had.
pub async fn record_processed(
    tx: &mut PgConnection,
    event_id: Uuid,
    order_id: Uuid,
    event_type: &str,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO saga_processed_events (event_id, order_id, event_type) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .bind(order_id)
    .bind(event_type)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Inserts a new saga; false if the order already has one.
pub async fn insert_saga(tx: &mut PgConnection, saga: &Fulfilment) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO saga_instances (order_id, payment_id, correlation_id, status, deadline, state) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(saga.order_id)
    .bind(saga.payment_id)
    .bind(saga.correlation_id)
    .bind(saga.status.as_str())
    .bind(saga.deadline)
    .bind(Json(saga))
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Writes a saga's new state.
pub async fn save_saga(tx: &mut PgConnection, saga: &Fulfilment) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE saga_instances SET status = $2, deadline = $3, state = $4, updated_at = now() \
         WHERE order_id = $1",
    )
    .bind(saga.order_id)
    .bind(saga.status.as_str())
    .bind(saga.deadline)
    .bind(Json(saga))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// How to take a saga's row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Wait for it.
    Wait,
    /// Give up if another transaction holds it.
    SkipLocked,
}

/// Which saga to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaKey {
    /// By order id.
    Order(Uuid),
    /// By derived payment id.
    Payment(Uuid),
}

/// Loads and locks a saga (`FOR UPDATE`): transitions of one saga are serialized across
/// consumer, dispatcher and every saga instance.
pub async fn lock_saga(
    tx: &mut PgConnection,
    key: SagaKey,
    lock: Lock,
) -> Result<Option<Fulfilment>, StoreError> {
    let (column, id) = match key {
        SagaKey::Order(id) => ("order_id", id),
        SagaKey::Payment(id) => ("payment_id", id),
    };
    let skip = match lock {
        Lock::Wait => "",
        Lock::SkipLocked => " SKIP LOCKED",
    };
    let sql = format!("SELECT state FROM saga_instances WHERE {column} = $1 FOR UPDATE{skip}");
    let state: Option<Json<Fulfilment>> = sqlx::query_scalar(&sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(state.map(|Json(saga)| saga))
}

/// Reads a saga without locking (for tests and tools).
pub async fn read_saga(pool: &PgPool, order_id: Uuid) -> Result<Option<Fulfilment>, StoreError> {
    let state: Option<Json<Fulfilment>> =
        sqlx::query_scalar("SELECT state FROM saga_instances WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(pool)
            .await?;
    Ok(state.map(|Json(saga)| saga))
}

/// Queues a decision's commands (dropping pending ones first if it says so), each with the
/// `traceparent` of what caused the decision, so that they continue its trace when sent.
pub async fn queue_commands(
    tx: &mut PgConnection,
    order_id: Uuid,
    decision: &Decision,
    traceparent: Option<&str>,
) -> Result<(), StoreError> {
    if decision.supersede_pending {
        sqlx::query(
            "UPDATE saga_commands SET status = 'superseded', completed_at = now() \
             WHERE order_id = $1 AND status = 'pending'",
        )
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
    }
    for issued in &decision.commands {
        sqlx::query(
            "INSERT INTO saga_commands (order_id, idempotency_key, causation_id, command, traceparent) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(order_id)
        .bind(issued.idempotency_key())
        .bind(issued.causation_id)
        .bind(Json(&issued.command))
        .bind(traceparent)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A queued command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCommand {
    /// Row id (queue order).
    pub id: i64,
    /// `Idempotency-Key`.
    pub idempotency_key: String,
    /// `X-Causation-Id`.
    pub causation_id: Uuid,
    /// What to send.
    pub command: SagaCommand,
    /// The W3C trace context of its cause: the request continues that trace.
    pub traceparent: Option<String>,
    /// Failed attempts so far.
    pub attempts: i32,
    /// Not before.
    pub next_attempt_at: DateTime<Utc>,
}

/// The oldest pending command of a saga: commands of one saga go out in order.
pub async fn next_pending(
    tx: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<QueuedCommand>, StoreError> {
    let row = sqlx::query(
        "SELECT id, idempotency_key, causation_id, command, traceparent, attempts, next_attempt_at \
         FROM saga_commands WHERE order_id = $1 AND status = 'pending' ORDER BY id LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let Json(command): Json<SagaCommand> = row.try_get("command")?;
    Ok(Some(QueuedCommand {
        id: row.try_get("id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        causation_id: row.try_get("causation_id")?,
        command,
        traceparent: row.try_get("traceparent")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
    }))
}

/// The trace context of a saga's latest queued command that has one: the trace a step that
/// no event caused (a passed deadline) continues.
pub async fn flow_traceparent(
    tx: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT traceparent FROM saga_commands \
         WHERE order_id = $1 AND traceparent IS NOT NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?)
}

/// The command API accepted the command.
pub async fn mark_accepted(tx: &mut PgConnection, id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE saga_commands SET status = 'accepted', completed_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The command API refused the command with problem `code`.
pub async fn mark_rejected(tx: &mut PgConnection, id: i64, code: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE saga_commands SET status = 'rejected', last_error = $2, completed_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(code)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The attempt failed transiently; try again at `next_attempt_at`.
pub async fn mark_retry(
    tx: &mut PgConnection,
    id: i64,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE saga_commands SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(next_attempt_at)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The last transient error of a saga's pending commands (for the reason of a timeout).
pub async fn last_pending_error(
    tx: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let error: Option<Option<String>> = sqlx::query_scalar(
        "SELECT last_error FROM saga_commands \
         WHERE order_id = $1 AND status = 'pending' AND last_error IS NOT NULL \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(error.flatten())
}

/// Sagas with a pending command due by `now`.
pub async fn sagas_with_due_commands(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT order_id FROM saga_commands WHERE status = 'pending' AND next_attempt_at <= $1 \
         GROUP BY order_id ORDER BY min(id) LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Sagas whose step deadline passed by `now`.
pub async fn sagas_past_deadline(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT order_id FROM saga_instances WHERE deadline <= $1 ORDER BY deadline LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// How many sagas are in each status, for the `keel_saga_flows` gauge.
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query("SELECT status, count(*) AS flows FROM saga_instances GROUP BY status")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("status")?, row.try_get("flows")?)))
        .collect()
}
