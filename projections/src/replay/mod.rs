//! Replay: rebuild a projection from the event store into shadow tables while the live one
//! keeps serving, then swap atomically and hand over to live Kafka consumption.
//!
//! # Rebuild from the store
//!
//! 1. **Shadow.** `read_model_rebuild_<projection>` gets the projection's tables, shaped
//!    from the live tables' catalog definitions ([`shadow`]), its own per-aggregate
//!    checkpoints and a progress row.
//! 2. **Replay.** The store is read in commit order below the oldest running transaction
//!    ([`source`]; never steps over a late commit), `batch_size` events at a time (the next
//!    batch is read while the current one is applied). A batch is split by aggregate over
//!    `workers` connections; each applies its share in one transaction with the live
//!    projector's rule ([`apply`]; the transaction's `search_path` points the unqualified
//!    table names at the shadow), advancing the shadow checkpoints in the same
//!    transaction. By default the share is folded in memory and each touched row written
//!    once with multi-row statements (`set_based`); with [`Fold::PerEvent`] the live apply
//!    code runs event by event. Once every share has committed, the progress row moves to the
//!    batch's last position. A stop (Ctrl-C, [`CancellationToken`]) lands between batches;
//!    running again resumes after the recorded position. Should a crash fall between a
//!    share's commit and the progress row, the batch is read again and the shadow
//!    checkpoints skip what it already holds. A run keeps in memory the checkpoints it has
//!    committed (only the rebuild holding the lock writes the shadow), so it reads only
//!    those of aggregates it has not met yet: none when it created the shadow itself, each
//!    one once when it resumes an earlier run's.
//! 3. **Catch-up and swap.** When a read comes back shorter than a batch, the store's head
//!    is near: the secondary indexes are built and the shadow analyzed, then one
//!    transaction takes the projection's advisory lock exclusively — the lock every live
//!    projector transaction takes in shared mode ([`crate::db::enter_live_transaction`]) —
//!    so live batches in flight finish first and the next ones wait. Inside it: the
//!    remaining events are read and applied; every aggregate whose live checkpoint is still
//!    ahead of the shadow's (events that committed above the read horizon, which the live
//!    projector got from Kafka) gets those events from the store by sequence; then
//!    [`shadow::swap`] replaces the projection's checkpoints with the shadow's, drops (or,
//!    with `keep_old`, moves to `read_model_old_<projection>_<time>`) the live tables and
//!    moves the shadow tables into `read_model`. Queries see the old tables until the commit
//!    and the new ones after it.
//! 4. **Handover.** The live projector carries on from its committed Kafka offsets. Every
//!    aggregate's new checkpoint is at or beyond what the old model held, so a message it
//!    has already applied is skipped as a duplicate, and every event beyond a checkpoint is
//!    one the live projector has not applied yet, so Kafka still brings it (for the first
//!    time, or again: the relay republishes an aggregate's tail in order): nothing is lost
//!    and nothing is applied twice.
//!
//! # No side effects
//!
//! A replay writes read-model tables and nothing else. It never produces to Kafka (the
//! saga and every other consumer read Kafka in their own consumer groups, so a rebuild from
//! the store cannot reach them; saga commands and notifications are never re-fired), and
//! it sends no read-model notification while building: the swap sends one per aggregate
//! the new tables hold further than the old ones did (at most
//! 10 000; waiting readers re-read on their own timer anyway).
//!
//! # Rebuild from Kafka
//!
//! [`kafka`] rebuilds in place from the topics: see its docs.

pub mod apply;
pub mod kafka;
mod set_based;
pub mod shadow;
pub mod source;
pub mod status;

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use ops::clock::{Clock, SystemClock};

use read_model::locks::REBUILD_LOCK_CLASS;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::apply::Fold;
use self::apply::{KnownCheckpoints, SliceStats, apply_events};
use self::shadow::{StoredProgress, shadow_schema};
use self::source::{EventStore, LogPosition, SourceError, StoredEvent};
use crate::Projection;
use crate::db;
use crate::event::AggregateKey;

/// Source name recorded in a shadow built from the event store.
const STORE_SOURCE: &str = "store";

/// A replay failed; what it committed stays, and running it again resumes.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The read-model or event-store database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event does not decode.
    #[error(transparent)]
    Source(SourceError),
    /// The projection refused a stored event for its data (a projection bug or an
    /// inconsistent store): the rebuild stops there, before swapping anything.
    #[error(
        "{aggregate_type} {aggregate_id} #{sequence} (position {position}) refused by the projection: {error}"
    )]
    Refused {
        /// Source aggregate type.
        aggregate_type: String,
        /// Source aggregate id.
        aggregate_id: String,
        /// Its sequence.
        sequence: i64,
        /// Its log position.
        position: LogPosition,
        /// Why.
        error: String,
    },
    /// The store lacks events an aggregate's later event needs.
    #[error(
        "event store: {aggregate_type} {aggregate_id} has no events between {after} and {before}"
    )]
    MissingEvents {
        /// Source aggregate type.
        aggregate_type: String,
        /// Source aggregate id.
        aggregate_id: String,
        /// Last sequence applied.
        after: i64,
        /// The sequence found.
        before: i64,
    },
    /// Another process is rebuilding this projection.
    #[error("a rebuild of {0} is already running")]
    AlreadyRunning(Projection),
    /// The shadow left by an earlier run was built from another source.
    #[error(
        "the unfinished rebuild of {projection} reads from {found}; finish it with the same source or start over (--restart)"
    )]
    OtherSource {
        /// The projection.
        projection: Projection,
        /// The shadow's source.
        found: String,
    },
    /// Kafka failed (rebuild from Kafka).
    #[error("Kafka: {0}")]
    Kafka(String),
}

impl From<SourceError> for ReplayError {
    fn from(error: SourceError) -> Self {
        match error {
            SourceError::Database(error) => Self::Database(error),
            other => Self::Source(other),
        }
    }
}

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Events read from the store per batch.
    pub batch_size: usize,
    /// Connections applying a batch in parallel (aggregates are split among them).
    pub workers: usize,
    /// Keep the replaced tables in `read_model_old_<projection>_<time>` instead of dropping
    /// them.
    pub keep_old: bool,
    /// Throw away an unfinished rebuild's shadow and start from the beginning.
    pub restart: bool,
    /// Set-based (the default), or event by event with the live apply code.
    pub fold: Fold,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            batch_size: 20_000,
            workers: 2,
            keep_old: false,
            restart: false,
            fold: Fold::SetBased,
        }
    }
}

/// What a rebuild is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Preparing the shadow.
    #[default]
    Starting,
    /// Applying batches from the store.
    Replaying,
    /// Building secondary indexes.
    Indexing,
    /// Holding the projection's lock: last events, then the swap.
    Swapping,
    /// Swapped: the new tables are live.
    Done,
    /// Stopped between batches; run again to resume.
    Interrupted,
}

/// Where a rebuild stands, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RebuildProgress {
    /// What it is doing.
    pub phase: Phase,
    /// Events of the projection's sources in the store when this run started.
    pub events_total: u64,
    /// Events read so far (earlier runs included).
    pub events_read: u64,
    /// Events read by earlier runs (a resumed rebuild starts there).
    pub events_read_before: u64,
    /// Events applied so far (earlier runs included).
    pub events_applied: u64,
    /// Last store position applied.
    pub position: LogPosition,
}

/// What a finished (or interrupted) run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    /// The projection.
    pub projection: Projection,
    /// Swapped, or interrupted (and resumable).
    pub swapped: bool,
    /// Whether this run resumed an earlier one.
    pub resumed: bool,
    /// Events read from the store by this run.
    pub events_read: u64,
    /// Events applied by this run.
    pub events_applied: u64,
    /// Wall time of this run.
    pub elapsed: Duration,
    /// Last store position applied.
    pub position: LogPosition,
    /// Where the replaced tables were kept.
    pub old_schema: Option<String>,
    /// Aggregates the swap advanced beyond what the live tables held.
    pub advanced_at_swap: i64,
}

impl RebuildReport {
    /// Events read per second of wall time.
    pub fn events_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.events_read as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Rebuilds `projection` from the event store (see the module docs): resumes an unfinished
/// rebuild, or starts one; returns when swapped, or when `stop` is cancelled (after the
/// batch in progress).
///
/// # Errors
/// [`ReplayError`]. Committed work stays; running again resumes.
pub async fn rebuild_from_store(
    projection: Projection,
    read_model: &PgPool,
    store: &EventStore,
    options: &RebuildOptions,
    stop: &CancellationToken,
    progress: &watch::Sender<RebuildProgress>,
) -> Result<RebuildReport, ReplayError> {
    let started = Instant::now();
    let guard = RebuildGuard::acquire(read_model, projection).await?;
    let outcome = rebuild(
        projection, read_model, store, options, stop, progress, started,
    )
    .await;
    guard.release().await;
    outcome
}

async fn rebuild(
    projection: Projection,
    read_model: &PgPool,
    store: &EventStore,
    options: &RebuildOptions,
    stop: &CancellationToken,
    progress: &watch::Sender<RebuildProgress>,
    started: Instant,
) -> Result<RebuildReport, ReplayError> {
    let batch_size = options.batch_size.max(1);
    if options.restart {
        shadow::drop(read_model, projection).await?;
    }
    let resumed = shadow::exists(read_model, projection).await?;
    let mut known = if resumed {
        KnownCheckpoints::of_existing_shadow()
    } else {
        shadow::create(read_model, projection, STORE_SOURCE).await?;
        KnownCheckpoints::of_new_shadow()
    };
    let (mut committed, source) = shadow::progress(read_model, projection).await?;
    if source != STORE_SOURCE {
        return Err(ReplayError::OtherSource {
            projection,
            found: source,
        });
    }
    let before = committed;
    let events_total = store.count(projection).await?;
    info!(
        projection = projection.name(),
        resumed,
        position = %committed.position,
        events_total,
        "rebuilding from the event store"
    );
    let publish = |phase: Phase, at: &StoredProgress| {
        progress.send_replace(RebuildProgress {
            phase,
            events_total,
            events_read: at.events_read,
            events_read_before: before.events_read,
            events_applied: at.events_applied,
            position: at.position,
        });
    };
    publish(Phase::Replaying, &committed);

    let (batches, reader) = spawn_reader(store.clone(), projection, committed.position, batch_size);
    let mut batches = batches;
    let report = |committed: &StoredProgress, swapped: bool, swap: Option<shadow::Swapped>| {
        let (old_schema, advanced_at_swap) = swap.map_or((None, 0), |s| (s.old_schema, s.advanced));
        RebuildReport {
            projection,
            swapped,
            resumed,
            events_read: committed.events_read - before.events_read,
            events_applied: committed.events_applied - before.events_applied,
            elapsed: started.elapsed(),
            position: committed.position,
            old_schema,
            advanced_at_swap,
        }
    };
    loop {
        if stop.is_cancelled() {
            reader.abort();
            publish(Phase::Interrupted, &committed);
            info!(projection = projection.name(), position = %committed.position, "rebuild interrupted; run again to resume");
            return Ok(report(&committed, false, None));
        }
        let Some(batch) = batches.recv().await else {
            // The reader stops only after a short batch or on an error it reported.
            break;
        };
        let batch = batch?;
        let last_batch = batch.len() < batch_size;
        if let Some(last) = batch.last() {
            let stats =
                apply_batch(read_model, projection, store, &batch, options, &mut known).await?;
            committed.position = last.position;
            committed.events_read += batch.len() as u64;
            committed.events_applied += stats.applied;
            let mut connection = read_model.acquire().await?;
            shadow::save_progress(&mut connection, projection, &committed).await?;
            publish(Phase::Replaying, &committed);
        }
        if last_batch {
            break;
        }
    }
    reader.abort();

    publish(Phase::Indexing, &committed);
    shadow::create_secondary_indexes(read_model, projection).await?;

    publish(Phase::Swapping, &committed);
    let keep_old_suffix = options
        .keep_old
        .then(|| SystemClock.now().format("%Y%m%d%H%M%S").to_string());
    let swapped = catch_up_and_swap(
        projection,
        read_model,
        store,
        options,
        &mut committed,
        &mut known,
        keep_old_suffix.as_deref(),
    )
    .await?;
    publish(Phase::Done, &committed);
    let report = report(&committed, true, Some(swapped));
    info!(
        projection = projection.name(),
        events_read = report.events_read,
        elapsed = ?report.elapsed,
        events_per_second = report.events_per_second() as u64,
        old_schema = report.old_schema,
        "rebuild swapped in"
    );
    Ok(report)
}

/// Reads batches ahead of the applier; ends after the first short batch.
fn spawn_reader(
    store: EventStore,
    projection: Projection,
    from: LogPosition,
    batch_size: usize,
) -> (
    mpsc::Receiver<Result<Vec<StoredEvent>, SourceError>>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, receiver) = mpsc::channel(2);
    let task = tokio::spawn(async move {
        let mut position = from;
        loop {
            let batch = store.read_after(projection, position, batch_size).await;
            let short = match &batch {
                Ok(events) => {
                    if let Some(last) = events.last() {
                        position = last.position;
                    }
                    events.len() < batch_size
                }
                Err(_) => true,
            };
            if sender.send(batch).await.is_err() || short {
                return;
            }
        }
    });
    (receiver, task)
}

/// Applies a batch with `workers` connections, each aggregate on one of them, each share in
/// one transaction; returns once every share has committed (and `known` has taken in the
/// checkpoints they committed).
async fn apply_batch(
    pool: &PgPool,
    projection: Projection,
    store: &EventStore,
    batch: &[StoredEvent],
    options: &RebuildOptions,
    known: &mut KnownCheckpoints,
) -> Result<SliceStats, ReplayError> {
    let workers = options.workers.clamp(1, 64);
    let mut shares: Vec<Vec<&StoredEvent>> = vec![Vec::new(); workers];
    for event in batch {
        let mut hasher = DefaultHasher::new();
        event.event.metadata.aggregate_type.hash(&mut hasher);
        event.event.metadata.aggregate_id.hash(&mut hasher);
        let worker = usize::try_from(hasher.finish() % workers as u64).unwrap_or_default();
        shares[worker].push(event);
    }
    let shared: &KnownCheckpoints = known;
    let applied = futures::future::try_join_all(
        shares
            .iter()
            .filter(|share| !share.is_empty())
            .map(|share| apply_share(pool, projection, store, share, options.fold, shared)),
    )
    .await?;
    let mut total = SliceStats::default();
    for (stats, checkpoints) in applied {
        total += stats;
        known.record(checkpoints);
    }
    Ok(total)
}

async fn apply_share(
    pool: &PgPool,
    projection: Projection,
    store: &EventStore,
    share: &[&StoredEvent],
    fold: Fold,
    known: &KnownCheckpoints,
) -> Result<(SliceStats, HashMap<AggregateKey, i64>), ReplayError> {
    let mut tx = pool.begin().await?;
    enter_shadow(&mut tx, projection, false).await?;
    let applied = apply_events(&mut tx, projection, share, store, fold, known).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Points the transaction's unqualified names at the shadow. Replay transactions may
/// commit asynchronously: a crash loses only whole, latest transactions (progress row
/// included), which a resumed run simply replays again.
async fn enter_shadow(
    connection: &mut PgConnection,
    projection: Projection,
    durable: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('search_path', $1, true), \
                set_config('synchronous_commit', $2, true)",
    )
    .bind(shadow_schema(projection))
    .bind(if durable { "on" } else { "off" })
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn catch_up_and_swap(
    projection: Projection,
    read_model: &PgPool,
    store: &EventStore,
    options: &RebuildOptions,
    committed: &mut StoredProgress,
    known: &mut KnownCheckpoints,
    keep_old_suffix: Option<&str>,
) -> Result<shadow::Swapped, ReplayError> {
    let (batch_size, fold) = (options.batch_size.max(1), options.fold);
    let mut tx = read_model.begin().await?;
    db::lock_projection_exclusive(&mut tx, projection).await?;
    enter_shadow(&mut tx, projection, true).await?;
    let lock_taken = Instant::now();
    loop {
        let batch = store
            .read_after(projection, committed.position, batch_size)
            .await?;
        let Some(last) = batch.last() else { break };
        let events: Vec<&StoredEvent> = batch.iter().collect();
        // Recorded before the commit: should the swap fail, this run ends with it.
        let (stats, checkpoints) =
            apply_events(&mut tx, projection, &events, store, fold, known).await?;
        known.record(checkpoints);
        committed.position = last.position;
        committed.events_read += batch.len() as u64;
        committed.events_applied += stats.applied;
    }
    let behind = shadow::behind_live(&mut tx, projection).await?;
    if !behind.is_empty() {
        info!(
            projection = projection.name(),
            aggregates = behind.len(),
            "live model ahead of the store's read horizon; taking those events by sequence"
        );
    }
    for (aggregate_type, aggregate_id, shadow_sequence, live_sequence) in behind {
        let key = AggregateKey {
            aggregate_type,
            aggregate_id,
        };
        let events = store
            .read_stream(&key, shadow_sequence, live_sequence)
            .await?;
        let events: Vec<&StoredEvent> = events.iter().collect();
        let (stats, checkpoints) =
            apply_events(&mut tx, projection, &events, store, fold, known).await?;
        known.record(checkpoints);
        committed.events_applied += stats.applied;
    }
    let swapped = shadow::swap(&mut tx, projection, keep_old_suffix).await?;
    tx.commit().await?;
    info!(
        projection = projection.name(),
        held = ?lock_taken.elapsed(),
        "swap committed; live projection lock released"
    );
    Ok(swapped)
}

/// A session advisory lock on a connection of its own: one rebuild per projection at a
/// time. Released when the connection closes, also if the process dies.
struct RebuildGuard {
    connection: PgConnection,
}

impl RebuildGuard {
    async fn acquire(pool: &PgPool, projection: Projection) -> Result<Self, ReplayError> {
        let connection: PoolConnection<Postgres> = pool.acquire().await?;
        let mut connection = connection.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(REBUILD_LOCK_CLASS)
            .bind(projection.ordinal())
            .fetch_one(&mut connection)
            .await?;
        if !locked {
            connection.close().await.ok();
            return Err(ReplayError::AlreadyRunning(projection));
        }
        Ok(Self { connection })
    }

    async fn release(self) {
        if let Err(error) = self.connection.close().await {
            warn!(%error, "closing the rebuild lock's connection");
        }
    }
}

/// Whether a rebuild of `projection` holds its lock right now (any process).
///
/// # Errors
/// Database errors.
pub async fn is_running(pool: &PgPool, projection: Projection) -> Result<bool, sqlx::Error> {
    read_model::locks::rebuild_running(pool, projection.ordinal()).await
}
