//! Group commit: concurrent commands' appends gathered into batches, each batch appended in
//! one transaction (`event_store::append`), so that one WAL flush serves many commands
//! (`docs/adr/0010-group-commit.md`).
//!
//! One task gathers: it takes the first waiting append, then every append already queued,
//! and, if [`GroupCommitSettings::max_wait`] is not zero, waits that long at most for more,
//! up to [`GroupCommitSettings::max_batch`]. At most [`GroupCommitSettings::in_flight`]
//! batches are committing at once; while they are, the next batch fills, so batches grow
//! with the load. A batch holds its lane while it waits, which makes batches larger still
//! under load; a lone command waits for the wait's length. Every command keeps its own
//! outcome: a lost race or a held idempotency key rolls back that command alone. A command is
//! answered only after its batch's commit returned, so nothing is acknowledged before it
//! is durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_store::append::{AppendOutcome, StreamAppend, append_batch};
use event_store::doorbell::Doorbell;
use sqlx::PgPool;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// The largest [`GroupCommitSettings::max_batch`] accepted: PostgreSQL keeps the ids of
/// at most 64 subtransactions of a running transaction in shared memory; beyond that every
/// snapshot taken meanwhile has to consult `pg_subtrans`.
pub const MAX_BATCH_LIMIT: usize = 64;

/// How batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitSettings {
    /// Most commands in one transaction (each is a subtransaction there; at most
    /// [`MAX_BATCH_LIMIT`]).
    pub max_batch: usize,
    /// How long a batch waits for more commands once its first one came; zero = take what
    /// is queued and go.
    pub max_wait: Duration,
    /// Batches committing at once (each on its own connection).
    pub in_flight: usize,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        Self {
            max_batch: MAX_BATCH_LIMIT,
            max_wait: DEFAULT_WAIT,
            in_flight: 2,
        }
    }
}

/// The default [`GroupCommitSettings::max_wait`]. At 1,000 commands/s it makes about 4
/// commands per commit instead of 1.6 to 2.0, and each commit saved spares about 0.4 ms of CPU
/// (BENCHMARKS.md, "2026-12-07 (night)"); a lone command pays it once.
pub const DEFAULT_WAIT: Duration = Duration::from_micros(500);

/// Why an append has no outcome of its own.
#[derive(Debug, thiserror::Error)]
pub enum GroupCommitError {
    /// The batch's statement failed as a whole (connection, server): nothing of it is known
    /// to be committed.
    #[error("the batch append failed: {0}")]
    Batch(#[source] Arc<sqlx::Error>),
    /// The committer has stopped (the process is shutting down).
    #[error("the group commit has stopped")]
    Stopped,
}

/// The queue into the committer; cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

#[derive(Debug)]
struct Pending {
    append: StreamAppend,
    reply: oneshot::Sender<Result<AppendOutcome, GroupCommitError>>,
}

/// Appends queued beyond this make their callers wait to enqueue (back-pressure).
const QUEUE: usize = 4096;

impl GroupCommit {
    /// Starts the committer on the current Tokio runtime; it stops when every handle is
    /// dropped and the queue is drained.
    pub fn start(pool: PgPool, settings: GroupCommitSettings, doorbell: Doorbell) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(gather(pool, settings, doorbell, pending));
        Self { queue }
    }

    /// Appends one command's events in the next batch and returns its own outcome once the
    /// batch has committed.
    ///
    /// # Errors
    /// [`GroupCommitError`]: the command's outcome is unknown (treat as not appended,
    /// retry only with an idempotency key).
    pub async fn append(&self, append: StreamAppend) -> Result<AppendOutcome, GroupCommitError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { append, reply })
            .await
            .map_err(|_| GroupCommitError::Stopped)?;
        answer.await.map_err(|_| GroupCommitError::Stopped)?
    }
}

async fn gather(
    pool: PgPool,
    settings: GroupCommitSettings,
    doorbell: Doorbell,
    mut pending: mpsc::Receiver<Pending>,
) {
    let max_batch = settings.max_batch.max(1);
    let permits = Arc::new(Semaphore::new(settings.in_flight.max(1)));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let Some(first) = pending.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + settings.max_wait;
        while batch.len() < max_batch {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if settings.max_wait.is_zero() => break,
                Err(TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, pending.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        tokio::spawn(commit(pool.clone(), doorbell.clone(), batch, permit));
    }
}

async fn commit(
    pool: PgPool,
    doorbell: Doorbell,
    mut batch: Vec<Pending>,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    // Batches in flight at once take their streams' row locks in one order, so that two of
    // them writing the same streams wait for each other instead of deadlocking (PostgreSQL
    // would break the cycle only after `deadlock_timeout`, failing a command of one).
    batch.sort_by(|a, b| {
        (&a.append.aggregate_type, &a.append.aggregate_id)
            .cmp(&(&b.append.aggregate_type, &b.append.aggregate_id))
    });
    let (appends, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.append, pending.reply))
        .unzip();
    let result = append_batch(&pool, &appends).await;
    metrics::histogram!("keel_group_commit_batch_commands").record(appends.len() as f64);
    metrics::histogram!("keel_group_commit_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(outcomes) => {
            if outcomes.iter().any(Result::is_ok) {
                doorbell.ring();
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A caller that gave up (its request timed out) no longer listens.
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            tracing::error!(
                error = %error,
                commands = appends.len(),
                "batch append failed; none of its commands is answered as appended"
            );
            let error = Arc::new(error);
            for reply in replies {
                let _ = reply.send(Err(GroupCommitError::Batch(Arc::clone(&error))));
            }
        }
    }
}
