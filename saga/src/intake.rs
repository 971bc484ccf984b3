//! Events in, transitions out: a batch of decoded events applied in one transaction.
//!
//! Every event passes its aggregate's checkpoint ([`store::admit`], three statements for
//! the whole batch), in the batch's order, which keeps each partition's order. Only an
//! event that starts or feeds a saga costs statements of its own: the saga's row lock, its
//! processed-event record, its new state and the commands it decided. Most events (an
//! order's lines, stock added, ...) cost the saga nothing but their share of the batch.
//!
//! The batch commits as a whole or not at all. A crash before the commit redelivers the
//! whole batch; a crash after it redelivers what the offsets did not cover yet, and the
//! checkpoints skip that.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::EventMetadata;
use sqlx::PgConnection;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::decode::{DomainEvent, Route, route};
use crate::machine::{Fulfilment, Input, SagaStatus};
use crate::store::{self, Checkpoint, Lock, Position, StoreError};

/// A decoded event.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its envelope.
    pub metadata: EventMetadata,
    /// The event.
    pub event: DomainEvent,
}

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Events that were the next of their aggregate (acted on, or of no interest).
    pub applied: usize,
    /// Redeliveries skipped.
    pub duplicates: usize,
    /// Events ahead of their checkpoint skipped.
    pub gaps: usize,
    /// Whether some transition queued a command: the dispatcher has work.
    pub queued: bool,
}

/// Applies `events`, in order, in the caller's transaction: nothing is visible before the
/// caller commits.
///
/// # Errors
/// [`StoreError`]: the caller rolls back and may retry; the batch left no trace.
pub async fn apply(
    tx: &mut PgConnection,
    events: Vec<Received>,
    now: DateTime<Utc>,
    step_timeout: Duration,
) -> Result<Outcome, StoreError> {
    let sequences: Vec<i64> = events
        .iter()
        .map(|received| i64::try_from(received.metadata.sequence).unwrap_or(i64::MAX))
        .collect();
    let positions: Vec<Position<'_>> = events
        .iter()
        .zip(&sequences)
        .map(|(received, &sequence)| Position {
            aggregate_type: &received.metadata.aggregate_type,
            aggregate_id: &received.metadata.aggregate_id,
            sequence,
        })
        .collect();
    let verdicts = store::admit(tx, &positions).await?;
    let mut outcome = Outcome::default();
    for ((received, verdict), sequence) in events.into_iter().zip(verdicts).zip(sequences) {
        let metadata = &received.metadata;
        match verdict {
            Checkpoint::Apply => outcome.applied += 1,
            Checkpoint::Duplicate => {
                outcome.duplicates += 1;
                debug!(aggregate_id = %metadata.aggregate_id, sequence, "redelivered event skipped");
                continue;
            }
            Checkpoint::Gap { last } => {
                outcome.gaps += 1;
                warn!(aggregate_id = %metadata.aggregate_id, sequence, last, "event ahead of the checkpoint skipped until the missing ones arrive");
                continue;
            }
        }
        // A child of the trace that caused the event, so one trace shows the command, the
        // event and what the saga did about it.
        let span = info_span!(
            "saga_event",
            aggregate_type = %metadata.aggregate_type,
            aggregate_id = %metadata.aggregate_id,
            sequence,
            correlation_id = %metadata.correlation_id,
        );
        ops::telemetry::set_parent(&span, metadata.traceparent.as_deref());
        outcome.queued |= transition(tx, received, now, step_timeout)
            .instrument(span)
            .await?;
    }
    Ok(outcome)
}

/// What an admitted event does to its saga; true if it queued commands.
async fn transition(
    tx: &mut PgConnection,
    Received { metadata, event }: Received,
    now: DateTime<Utc>,
    step_timeout: Duration,
) -> Result<bool, StoreError> {
    let event_type = event.event_type();
    let (order_id, decision) = match route(&metadata, event) {
        Route::Ignore => return Ok(false),
        Route::Start(placed) => {
            let (saga, decision) = Fulfilment::start(placed, now, step_timeout);
            if !store::insert_saga(tx, &saga).await? {
                return Ok(false);
            }
            store::record_processed(tx, metadata.event_id, saga.order_id, event_type).await?;
            info!(order_id = %saga.order_id, correlation_id = %saga.correlation_id, status = %saga.status, reason = saga.reason.as_deref(), "fulfilment started");
            (saga.order_id, decision)
        }
        Route::Feed { key, event } => {
            let Some(mut saga) = store::lock_saga(tx, key, Lock::Wait).await? else {
                return Ok(false);
            };
            if !store::record_processed(tx, metadata.event_id, saga.order_id, event_type).await? {
                return Ok(false);
            }
            let before = saga.status;
            let decision = saga.handle(
                Input::Event {
                    event_id: metadata.event_id,
                    event,
                },
                now,
                step_timeout,
            );
            store::save_saga(tx, &saga).await?;
            log_transition(&saga, before, event_type);
            (saga.order_id, decision)
        }
    };
    store::queue_commands(tx, order_id, &decision, metadata.traceparent.as_deref()).await?;
    Ok(!decision.commands.is_empty())
}

/// Logs a saga's move to another status, with its cause.
pub fn log_transition(saga: &Fulfilment, before: SagaStatus, cause: &str) {
    if saga.status != before {
        info!(
            order_id = %saga.order_id,
            correlation_id = %saga.correlation_id,
            from = %before,
            to = %saga.status,
            cause,
            reason = saga.reason.as_deref(),
            "fulfilment moved"
        );
    }
}
