//! Appending many commands' events in one transaction: the caller of `append_events`
//! (`migrations/0014_append_events.sql`). Each command is all or nothing and gets its own
//! outcome; one commit, so one WAL flush, serves them all (`docs/adr/0010-group-commit.md`).
//!
//! The call is one statement in an implicit transaction: PostgreSQL commits it before it
//! answers `ReadyForQuery`, and [`append_batch`] returns only after that answer, so an `Ok`
//! is durable (with `synchronous_commit` on). Every trigger of the single-event insert
//! fires as before: event id, idempotency key, hash chain, outbox, appender marker.

use serde_json::Value;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

/// One event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event type (variant name).
    pub event_type: String,
    /// The payload's schema version.
    pub event_version: String,
    /// The payload.
    pub payload: Value,
    /// The envelope: correlation, actor, idempotency key, …
    pub metadata: Value,
}

/// One command's events for one stream, to be appended after `after_sequence`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    /// `Aggregate::TYPE`.
    pub aggregate_type: String,
    /// The aggregate.
    pub aggregate_id: String,
    /// The stream's version the command was decided on; its events take the sequences
    /// after it, and the append fails if another command took one of them first.
    pub after_sequence: i64,
    /// At least one event.
    pub events: Vec<NewEvent>,
}

/// One appended event's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence in the stream.
    pub sequence: i64,
    /// The id the database assigned.
    pub event_id: Uuid,
    /// Its position in the global log (identity order).
    pub global_position: i64,
}

/// Why one command of a batch appended nothing; the batch's other commands are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRejected {
    /// Another command holds one of the stream positions, or the command's idempotency key
    /// (SQLSTATE 23505).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other failure of this command's insert (a trigger's check, a constraint).
    #[error("append failed ({code}): {message}")]
    Failed {
        /// SQLSTATE.
        code: String,
        /// The database's message.
        message: String,
    },
}

/// The outcome of one command of a batch.
pub type AppendOutcome = Result<Vec<Appended>, AppendRejected>;

/// Appends `batch` in one transaction and returns one outcome per command, in order.
///
/// `executor` must not be inside a transaction that has written already (the function
/// refuses: see the migration). An empty batch is not sent.
///
/// # Errors
/// The call failed as a whole (connection, server): then nothing of it is known to be
/// committed, and no command of it may be answered as appended.
pub async fn append_batch<'e>(
    executor: impl PgExecutor<'e>,
    batch: &[StreamAppend],
) -> Result<Vec<AppendOutcome>, sqlx::Error> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let events = batch.iter().map(|append| append.events.len()).sum();
    let mut columns = Columns::with_capacity(events);
    for (command, append) in batch.iter().enumerate() {
        let command = i32::try_from(command).map_err(|_| too_large(batch.len()))?;
        for (offset, event) in (1_i64..).zip(&append.events) {
            columns.push(command, append, append.after_sequence + offset, event);
        }
    }
    let rows = sqlx::query(
        "SELECT command, sequences, event_ids, global_positions, error_code, error_message
           FROM append_events($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(columns.command)
    .bind(columns.aggregate_type)
    .bind(columns.aggregate_id)
    .bind(columns.sequence)
    .bind(columns.event_type)
    .bind(columns.event_version)
    .bind(columns.payload)
    .bind(columns.metadata)
    .fetch_all(executor)
    .await?;

    let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; batch.len()];
    for row in &rows {
        let command: i32 = row.try_get("command")?;
        let slot = usize::try_from(command)
            .ok()
            .and_then(|index| outcomes.get_mut(index))
            .ok_or_else(|| protocol(format!("append_events answered for command {command}")))?;
        let code: Option<String> = row.try_get("error_code")?;
        *slot = Some(match code {
            Some(code) => {
                let message: String = row
                    .try_get::<Option<String>, _>("error_message")?
                    .unwrap_or_default();
                Err(if code == "23505" {
                    AppendRejected::Conflict(message)
                } else {
                    AppendRejected::Failed { code, message }
                })
            }
            None => {
                let sequences: Vec<i64> = row.try_get("sequences")?;
                let event_ids: Vec<Uuid> = row.try_get("event_ids")?;
                let positions: Vec<i64> = row.try_get("global_positions")?;
                Ok(sequences
                    .into_iter()
                    .zip(event_ids)
                    .zip(positions)
                    .map(|((sequence, event_id), global_position)| Appended {
                        sequence,
                        event_id,
                        global_position,
                    })
                    .collect())
            }
        });
    }
    outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| {
            outcome.ok_or_else(|| {
                protocol(format!("append_events gave no answer for command {index}"))
            })
        })
        .collect()
}

/// The batch as the function's parallel arrays, one element per event.
struct Columns<'a> {
    command: Vec<i32>,
    aggregate_type: Vec<&'a str>,
    aggregate_id: Vec<&'a str>,
    sequence: Vec<i64>,
    event_type: Vec<&'a str>,
    event_version: Vec<&'a str>,
    payload: Vec<&'a Value>,
    metadata: Vec<&'a Value>,
}

impl<'a> Columns<'a> {
    fn with_capacity(events: usize) -> Self {
        Self {
            command: Vec::with_capacity(events),
            aggregate_type: Vec::with_capacity(events),
            aggregate_id: Vec::with_capacity(events),
            sequence: Vec::with_capacity(events),
            event_type: Vec::with_capacity(events),
            event_version: Vec::with_capacity(events),
            payload: Vec::with_capacity(events),
            metadata: Vec::with_capacity(events),
        }
    }

    fn push(&mut self, command: i32, append: &'a StreamAppend, sequence: i64, event: &'a NewEvent) {
        self.command.push(command);
        self.aggregate_type.push(&append.aggregate_type);
        self.aggregate_id.push(&append.aggregate_id);
        self.sequence.push(sequence);
        self.event_type.push(&event.event_type);
        self.event_version.push(&event.event_version);
        self.payload.push(&event.payload);
        self.metadata.push(&event.metadata);
    }
}

fn too_large(commands: usize) -> sqlx::Error {
    protocol(format!("a batch of {commands} commands is too large"))
}

fn protocol(message: String) -> sqlx::Error {
    sqlx::Error::Protocol(message)
}
