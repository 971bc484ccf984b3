//! The write path on the PostgreSQL event store: load an aggregate, check the caller's
//! version precondition, let the aggregate decide, append its events with their metadata,
//! and describe what was recorded — honouring idempotency keys throughout.
//!
//! cqrs-es's `CqrsFramework::execute_with_metadata` takes no expected version and hides the
//! loaded version, so commands go through the [`EventStore`] API directly: `load_aggregate`
//! gives the version, `commit` appends at `version + 1 ..`, and the events table's primary
//! key `(aggregate_type, aggregate_id, sequence)` turns any concurrent append at the same
//! position into a unique violation that postgres-es reports as `AggregateConflict`. No
//! update is ever lost: the loser appends nothing and is told so.
//!
//! The append itself goes through the [`group_commit`]: concurrent commands share one
//! transaction, each with its own outcome, and the database returns each event's id and
//! global position, so nothing is read back. The one exception is a commit that also writes
//! a snapshot (an inventory item's every 100th event): postgres-es appends it alone.

pub mod group_commit;
pub mod idempotency;
pub mod recent;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::{Duration, Instant};

use aggregates::{NamedCommand, Redecide};
use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventStore};
use event_store::append::{AppendRejected, NewEvent, StreamAppend};
use event_store::doorbell::Doorbell;
use postgres_es::PostgresEventRepository;
use schemas::metadata_keys;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use self::group_commit::GroupCommit;
use self::idempotency::{IdempotencyRecord, IdempotentRequest};
use self::recent::{Cached, Recent};

/// How many times a command that lost a race is decided again before it is answered 409
/// (see [`AggregateStore::execute`]).
pub const REDECISIONS: u32 = 3;

/// Metadata key that carries the request fingerprint to the `events` trigger of migration
/// 0002, which moves it into `idempotency_keys` and removes it from the stored metadata.
pub const REQUEST_FINGERPRINT_KEY: &str = "request_fingerprint";

/// Boxed error of the event store or its database driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Who asked, on whose behalf and when: the envelope facts every event of a command carries.
/// The event id is not here: the database assigns one per event (migration 0001).
#[derive(Debug, Clone)]
pub struct CommandMetadata {
    /// Shared by every message of one business flow.
    pub correlation_id: Uuid,
    /// The message that caused this command, if the caller said.
    pub causation_id: Option<Uuid>,
    /// Who issued the command.
    pub actor: String,
    /// When the command was accepted (the injected clock).
    pub occurred_at: DateTime<Utc>,
    /// W3C trace context of the request.
    pub traceparent: Option<String>,
}

impl CommandMetadata {
    /// The cqrs-es metadata map, keyed as `schemas::metadata_keys` says.
    pub fn to_map(&self, idempotency: Option<&IdempotentRequest>) -> HashMap<String, String> {
        use metadata_keys as k;
        let mut map = HashMap::from([
            (
                k::CORRELATION_ID.to_owned(),
                self.correlation_id.to_string(),
            ),
            (k::ACTOR.to_owned(), self.actor.clone()),
            (
                k::OCCURRED_AT.to_owned(),
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ]);
        if let Some(causation_id) = self.causation_id {
            map.insert(k::CAUSATION_ID.to_owned(), causation_id.to_string());
        }
        if let Some(traceparent) = &self.traceparent {
            map.insert(k::TRACEPARENT.to_owned(), traceparent.clone());
        }
        if let Some(request) = idempotency {
            map.insert(
                k::IDEMPOTENCY_KEY.to_owned(),
                request.key.as_str().to_owned(),
            );
            map.insert(
                REQUEST_FINGERPRINT_KEY.to_owned(),
                request.fingerprint.as_str().to_owned(),
            );
        }
        map
    }
}

/// The version a caller expects the aggregate to be at (`If-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// `*`: any version, as long as the aggregate exists.
    Exists,
    /// One of these versions (an empty list matches nothing).
    OneOf(Vec<u64>),
}

impl ExpectedVersion {
    /// Whether an aggregate at `current` (0 = no events) satisfies the expectation.
    pub fn admits(&self, current: u64) -> bool {
        match self {
            Self::Exists => current > 0,
            Self::OneOf(versions) => versions.contains(&current),
        }
    }
}

/// One command addressed to one aggregate, with everything needed to record it.
#[derive(Debug)]
pub struct CommandEnvelope<A: Aggregate> {
    /// The target aggregate.
    pub aggregate_id: String,
    /// What to do.
    pub command: A::Command,
    /// Optimistic-concurrency precondition, if the caller gave one.
    pub expected_version: Option<ExpectedVersion>,
    /// Envelope facts for the events.
    pub metadata: CommandMetadata,
    /// Idempotency key and request fingerprint, if the caller gave a key.
    pub idempotency: Option<IdempotentRequest>,
    /// The server drew `aggregate_id` for this very command (a create without a client id
    /// or an idempotency key to derive one from): nothing can be stored under it, so it is
    /// not loaded. The append's position check still guards against the collision that
    /// cannot happen.
    pub fresh_id: bool,
}

/// What an accepted command recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// `Aggregate::TYPE` of the target.
    pub aggregate_type: String,
    /// The target aggregate.
    pub aggregate_id: String,
    /// The aggregate's version after the command (= sequence of its last event).
    pub version: u64,
    /// The events the command appended, in order; empty for an idempotent no-op.
    pub events: Vec<RecordedEvent>,
    /// True when this is the stored outcome of an earlier request with the same key.
    pub replayed: bool,
}

/// One appended event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The event type (variant name).
    pub event_type: String,
    /// Position in the aggregate's stream, from 1.
    pub sequence: u64,
    /// The event's id, assigned by the database.
    pub event_id: Uuid,
    /// Position in the global log (identity order, not commit order).
    pub global_position: i64,
}

/// Why a command was not accepted. Nothing was appended in any case.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate rejected the command.
    #[error(transparent)]
    Domain(E),
    /// `If-Match` named another version than the current one.
    #[error("the aggregate is at version {current_version}, not the expected one")]
    PreconditionFailed {
        /// The version found.
        current_version: u64,
    },
    /// Another command appended to the aggregate between our load and our append.
    #[error("the aggregate was changed concurrently; it is now at version {current_version}")]
    Conflict {
        /// The version after the competing append.
        current_version: u64,
    },
    /// The idempotency key was first used for a different request.
    #[error("the idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// The database could not be reached or failed; retrying may succeed.
    #[error("event store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// A stored event or snapshot could not be read back; retrying will not help.
    #[error("event store holds unreadable data: {0}")]
    Corrupt(#[source] BoxError),
}

/// Test seam: awaited after the aggregate decided and before its events are appended, so a
/// test can line up racing commands deterministically. Production wiring installs none.
pub trait AppendHook: Send + Sync + fmt::Debug + 'static {
    /// Called once per command that has events to append.
    fn before_append<'a>(
        &'a self,
        aggregate_type: &'static str,
        aggregate_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// What every aggregate type's store writes through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    /// The event store's database.
    pub pool: PgPool,
    /// The batches appends are committed in.
    pub group_commit: GroupCommit,
    /// Rung after every commit that queued events (the group commit rings its own).
    pub doorbell: Doorbell,
    /// The test seam, if a test installed one.
    pub append_hook: Option<Arc<dyn AppendHook>>,
    /// States kept per aggregate type for the next command ([`Recent`]); `None`: no cache
    /// and no turns.
    pub cache_entries: Option<std::num::NonZeroUsize>,
}

/// The event store for one aggregate type, and the way commands reach it.
pub struct AggregateStore<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    services: A::Services,
    pool: PgPool,
    group_commit: GroupCommit,
    doorbell: Doorbell,
    snapshot_every: Option<usize>,
    append_hook: Option<Arc<dyn AppendHook>>,
    recent: Recent<A>,
}

impl<A: Aggregate> fmt::Debug for AggregateStore<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateStore")
            .field("aggregate_type", &A::TYPE)
            .finish_non_exhaustive()
    }
}

type Outcome<A> = Result<CommandOutcome, CommandError<<A as Aggregate>::Error>>;

impl<A> AggregateStore<A>
where
    A: Aggregate + Clone,
    A::Command: NamedCommand + Redecide + Clone,
{
    /// A store writing through `writer`; with `snapshot_every = Some(n)` the aggregate is
    /// snapshotted every `n` events and loaded from its latest snapshot.
    pub fn new(writer: &Writer, services: A::Services, snapshot_every: Option<usize>) -> Self {
        let repository = PostgresEventRepository::new(writer.pool.clone());
        let store = match snapshot_every {
            Some(every) => PersistedEventStore::new_snapshot_store(repository, every),
            None => PersistedEventStore::new_event_store(repository),
        };
        Self {
            store,
            services,
            pool: writer.pool.clone(),
            group_commit: writer.group_commit.clone(),
            doorbell: writer.doorbell.clone(),
            snapshot_every,
            append_hook: writer.append_hook.clone(),
            recent: Recent::new(writer.cache_entries),
        }
    }

    /// Executes one command: see the module docs for the sequence and
    /// `docs/adr/0003-command-api-concurrency-and-idempotency.md` for the guarantees.
    ///
    /// # Errors
    /// [`CommandError`]; in every case nothing was appended.
    pub async fn execute(&self, envelope: CommandEnvelope<A>) -> Outcome<A> {
        let command = envelope.command.command_name();
        let started = Instant::now();
        let outcome = self.execute_once(envelope).await;
        record_command_metrics(A::TYPE, command, &outcome, started.elapsed());
        outcome
    }

    async fn execute_once(&self, envelope: CommandEnvelope<A>) -> Outcome<A> {
        let Some(request) = envelope.idempotency.clone() else {
            return self.decide_and_append(envelope).await;
        };
        let actor = envelope.metadata.actor.clone();
        if let Some(record) = self.find_key(&actor, &request).await? {
            return self.replay(record, &request).await;
        }
        match self.decide_and_append(envelope).await {
            // A request with the same key may have committed after the look above, so that
            // this one saw its effects (a create that now exists, a moved version) or lost
            // the append to it: then its answer is the one to give.
            Err(
                error @ (CommandError::Domain(_)
                | CommandError::PreconditionFailed { .. }
                | CommandError::Conflict { .. }),
            ) => match self.find_key(&actor, &request).await? {
                Some(record) => self.replay(record, &request).await,
                None => Err(error),
            },
            other => other,
        }
    }

    async fn find_key(
        &self,
        actor: &str,
        request: &IdempotentRequest,
    ) -> Result<Option<IdempotencyRecord>, CommandError<A::Error>> {
        idempotency::find(&self.pool, actor, &request.key)
            .await
            .map_err(unavailable)
    }

    /// Decides and appends; a command without `If-Match` that loses the race to the append
    /// is decided again on the fresh state, up to [`REDECISIONS`] times, when its aggregate
    /// says that is harmless ([`Redecide`]). With `If-Match` the caller asked for the
    /// version it saw, so a lost race is its answer. A request whose idempotency key another
    /// request now holds is not decided again either: that request's answer is the one to
    /// give (the caller replays it).
    ///
    /// The command takes its turn on the aggregate first ([`Recent`]): in this process no
    /// other command on it runs meanwhile, so a race can only be lost to another process.
    /// A command that may be decided again starts from the cached state, if there is one;
    /// any outcome of a cached decision that its append did not confirm (a rejection, a
    /// conflict, nothing to append) is checked again on the stored state, once.
    async fn decide_and_append(&self, envelope: CommandEnvelope<A>) -> Outcome<A> {
        let _turn = self.recent.turn(&envelope.aggregate_id).await;
        // What may be decided again may also be decided on a cached state (and confirmed).
        let cacheable = envelope.command.may_redecide();
        let redecidable = envelope.expected_version.is_none() && cacheable;
        let mut use_cache = cacheable && !envelope.fresh_id;
        let mut redecisions = 0;
        loop {
            let cached = if use_cache {
                self.recent.get(&envelope.aggregate_id)
            } else {
                None
            };
            let from_cache = cached.is_some();
            let attempt = CommandEnvelope {
                aggregate_id: envelope.aggregate_id.clone(),
                command: envelope.command.clone(),
                expected_version: envelope.expected_version.clone(),
                metadata: envelope.metadata.clone(),
                idempotency: envelope.idempotency.clone(),
                // Something is stored under the id once a first attempt lost a race.
                fresh_id: envelope.fresh_id && redecisions == 0,
            };
            let outcome = self
                .decide_and_append_once(attempt, cached, cacheable)
                .await;
            let confirmed = matches!(&outcome, Ok(outcome) if !outcome.events.is_empty());
            if from_cache && !confirmed {
                self.recent.forget(&envelope.aggregate_id);
                use_cache = false;
                metrics::counter!("keel_aggregate_cache_rechecks_total", "aggregate" => A::TYPE)
                    .increment(1);
                continue;
            }
            let Err(CommandError::Conflict { .. }) = &outcome else {
                return outcome;
            };
            if !redecidable || redecisions == REDECISIONS {
                return outcome;
            }
            if let Some(request) = &envelope.idempotency
                && self
                    .find_key(&envelope.metadata.actor, request)
                    .await?
                    .is_some()
            {
                return outcome;
            }
            redecisions += 1;
            metrics::counter!("keel_command_redecisions_total", "aggregate" => A::TYPE)
                .increment(1);
        }
    }

    /// One decision and append, on `cached` if given, else on the stored state (kept in
    /// the cache for the next command when `keep_loaded`).
    async fn decide_and_append_once(
        &self,
        envelope: CommandEnvelope<A>,
        cached: Option<Cached<A>>,
        keep_loaded: bool,
    ) -> Outcome<A> {
        let CommandEnvelope {
            aggregate_id,
            command,
            expected_version,
            metadata,
            idempotency,
            fresh_id,
        } = envelope;

        let known = cached.or_else(|| fresh_id.then(Cached::empty));
        let context = if let Some(known) = known {
            EventStoreAggregateContext {
                aggregate_id: aggregate_id.clone(),
                aggregate: known.aggregate,
                current_sequence: usize::try_from(known.version).unwrap_or(usize::MAX),
                current_snapshot: known.current_snapshot,
            }
        } else {
            let loaded = self
                .store
                .load_aggregate(&aggregate_id)
                .await
                .map_err(store_failure)?;
            if keep_loaded {
                self.recent.put(
                    &aggregate_id,
                    Cached {
                        version: to_u64(loaded.current_sequence),
                        aggregate: loaded.aggregate.clone(),
                        current_snapshot: loaded.current_snapshot,
                    },
                );
            }
            loaded
        };
        let current_version = to_u64(context.current_sequence);
        if let Some(expected) = &expected_version
            && !expected.admits(current_version)
        {
            return Err(CommandError::PreconditionFailed { current_version });
        }

        // Decide on a copy: cqrs-es's `EventSink::write` applies each event to the aggregate
        // it is given, while a snapshot store's `commit` applies the events once more to the
        // context's aggregate. Handling the context's own aggregate would snapshot every
        // event twice.
        let mut decider = context.aggregate.clone();
        let sink = EventSink::default();
        decider
            .handle(command, &self.services, &sink)
            .await
            .map_err(CommandError::Domain)?;
        let events = sink.collect().await;

        if events.is_empty() {
            if let Some(request) = &idempotency {
                let recorded = idempotency::record_unchanged(
                    &self.pool,
                    &metadata.actor,
                    request,
                    A::TYPE,
                    &aggregate_id,
                    current_version,
                )
                .await
                .map_err(unavailable)?;
                if !recorded {
                    return self.replay_recorded(&metadata.actor, request).await;
                }
            }
            return Ok(CommandOutcome {
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id,
                version: current_version,
                events: Vec::new(),
                replayed: false,
            });
        }

        if let Some(hook) = &self.append_hook {
            hook.before_append(A::TYPE, &aggregate_id).await;
        }
        let appended = to_u64(events.len());
        let map = metadata.to_map(idempotency.as_ref());
        let snapshot_due = self.snapshot_due(current_version, events.len());
        let current_snapshot = context.current_snapshot;
        let events = if snapshot_due {
            self.commit_with_snapshot(events, context, map).await
        } else {
            self.group_commit(&aggregate_id, current_version, events, &map)
                .await
        };
        let events = match events {
            Ok(events) => events,
            // Another command took this position in the stream, or (through the trigger of
            // migration 0002) another request holds our idempotency key.
            Err(CommandError::Conflict { .. }) => {
                let current_version = self
                    .current_version(&aggregate_id)
                    .await
                    .map_err(unavailable)?;
                return Err(CommandError::Conflict { current_version });
            }
            Err(other) => {
                // Appended or not, it is unknown: the next command loads.
                self.recent.forget(&aggregate_id);
                return Err(other);
            }
        };
        // `decider` applied its own events while deciding: it is the state now stored.
        self.recent.put(
            &aggregate_id,
            Cached {
                version: current_version + appended,
                aggregate: decider,
                current_snapshot: if snapshot_due {
                    Some(current_snapshot.map_or(1, |taken| taken + 1))
                } else {
                    current_snapshot
                },
            },
        );
        Ok(CommandOutcome {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id,
            version: current_version + appended,
            events,
            replayed: false,
        })
    }

    /// Whether appending `count` events to a stream at `version` reaches the next snapshot
    /// (cqrs-es's rule for a snapshot store).
    fn snapshot_due(&self, version: u64, count: usize) -> bool {
        self.snapshot_every.is_some_and(|every| {
            let version = usize::try_from(version).unwrap_or(usize::MAX);
            every - version % every <= count
        })
    }

    /// Appends in the next group commit; the database returns what it assigned.
    async fn group_commit(
        &self,
        aggregate_id: &str,
        current_version: u64,
        events: Vec<A::Event>,
        metadata: &HashMap<String, String>,
    ) -> Result<Vec<RecordedEvent>, CommandError<A::Error>> {
        let metadata = serde_json::to_value(metadata).map_err(corrupt)?;
        let events = events
            .iter()
            .map(|event| {
                Ok(NewEvent {
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_value(event).map_err(corrupt)?,
                    metadata: metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, CommandError<A::Error>>>()?;
        let append = StreamAppend {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            after_sequence: to_i64(current_version),
            events,
        };
        let event_types: Vec<String> = append
            .events
            .iter()
            .map(|event| event.event_type.clone())
            .collect();
        match self.group_commit.append(append).await {
            Ok(Ok(appended)) => appended
                .into_iter()
                .zip(event_types)
                .map(|(appended, event_type)| {
                    Ok(RecordedEvent {
                        event_type,
                        sequence: stored_u64("sequence", appended.sequence).map_err(unavailable)?,
                        event_id: appended.event_id,
                        global_position: appended.global_position,
                    })
                })
                .collect(),
            Ok(Err(AppendRejected::Conflict(_))) => Err(CommandError::Conflict { current_version }),
            Ok(Err(failed @ AppendRejected::Failed { .. })) => {
                Err(CommandError::Unavailable(Box::new(failed)))
            }
            Err(error) => Err(CommandError::Unavailable(Box::new(error))),
        }
    }

    /// Appends with the snapshot the commit reaches, through postgres-es (one transaction of
    /// its own), then reads back what the database assigned.
    async fn commit_with_snapshot(
        &self,
        events: Vec<A::Event>,
        context: EventStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<RecordedEvent>, CommandError<A::Error>> {
        let after = to_u64(context.current_sequence);
        let through = after + to_u64(events.len());
        let aggregate_id = context.aggregate_id.clone();
        match self.store.commit(events, context, metadata).await {
            Ok(_) => self.doorbell.ring(),
            Err(AggregateError::AggregateConflict) => {
                return Err(CommandError::Conflict {
                    current_version: after,
                });
            }
            Err(other) => return Err(store_failure(other)),
        }
        self.recorded_events(A::TYPE, &aggregate_id, after, through)
            .await
            .map_err(unavailable)
    }

    async fn replay_recorded(&self, actor: &str, request: &IdempotentRequest) -> Outcome<A> {
        match self.find_key(actor, request).await? {
            Some(record) => self.replay(record, request).await,
            // Recorded and gone again cannot happen (keys are never deleted yet); be safe.
            None => Err(CommandError::IdempotencyKeyReused),
        }
    }

    /// The response of the request that first used the key, rebuilt from the event store.
    async fn replay(&self, record: IdempotencyRecord, request: &IdempotentRequest) -> Outcome<A> {
        if !record.matches(request) || record.aggregate_type != A::TYPE {
            return Err(CommandError::IdempotencyKeyReused);
        }
        let first = record.version.saturating_sub(record.event_count);
        let events = self
            .recorded_events(A::TYPE, &record.aggregate_id, first, record.version)
            .await
            .map_err(unavailable)?;
        Ok(CommandOutcome {
            aggregate_type: record.aggregate_type,
            aggregate_id: record.aggregate_id,
            version: record.version,
            events,
            replayed: true,
        })
    }

    /// Events with `after < sequence <= through`. Stored events never change, so reading
    /// them back after the commit is exact.
    async fn recorded_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: u64,
        through: u64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT event_type, sequence, event_id, global_position
               FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2
                AND sequence > $3 AND sequence <= $4
              ORDER BY sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(to_i64(after))
        .bind(to_i64(through))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RecordedEvent {
                    event_type: row.try_get("event_type")?,
                    sequence: stored_u64("sequence", row.try_get("sequence")?)?,
                    event_id: row.try_get("event_id")?,
                    global_position: row.try_get("global_position")?,
                })
            })
            .collect()
    }

    async fn current_version(&self, aggregate_id: &str) -> Result<u64, sqlx::Error> {
        let version: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(sequence), 0)::bigint
               FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_one(&self.pool)
        .await?;
        stored_u64("sequence", version)
    }
}

/// A database error as a command's outcome: stored data that does not decode is corrupt
/// (retrying will not help), anything else is an outage.
fn unavailable<E: std::error::Error>(error: sqlx::Error) -> CommandError<E> {
    match error {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            CommandError::Corrupt(Box::new(error))
        }
        _ => CommandError::Unavailable(Box::new(error)),
    }
}

/// A stored sequence, version or count as the API's `u64`. The schema forbids negative
/// values; one read anyway is corrupt data, reported as such rather than clamped.
pub(crate) fn stored_u64(column: &str, value: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(value).map_err(|_| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("corrupt: negative {column} {value}").into(),
    })
}

fn corrupt<E: std::error::Error>(error: serde_json::Error) -> CommandError<E> {
    CommandError::Corrupt(Box::new(error))
}

fn store_failure<E: std::error::Error>(error: AggregateError<E>) -> CommandError<E> {
    match error {
        AggregateError::UserError(error) => CommandError::Domain(error),
        // Only `commit` can conflict, and it is matched there; a load never does.
        AggregateError::AggregateConflict => CommandError::Conflict { current_version: 0 },
        AggregateError::DatabaseConnectionError(error) | AggregateError::UnexpectedError(error) => {
            CommandError::Unavailable(error)
        }
        AggregateError::DeserializationError(error) => CommandError::Corrupt(error),
    }
}

fn to_u64<T: TryInto<u64>>(value: T) -> u64 {
    value.try_into().unwrap_or(u64::MAX)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `keel_commands_total{aggregate, command, outcome}`, the command latency histogram, and
/// `keel_concurrency_conflicts_total{aggregate}` for lost races (409 and 412).
fn record_command_metrics<E: std::error::Error>(
    aggregate: &'static str,
    command: &'static str,
    outcome: &Result<CommandOutcome, CommandError<E>>,
    elapsed: Duration,
) {
    let label = match outcome {
        Ok(outcome) if outcome.replayed => "replayed",
        Ok(outcome) if outcome.events.is_empty() => "unchanged",
        Ok(_) => "accepted",
        Err(CommandError::Domain(_)) => "rejected",
        Err(CommandError::PreconditionFailed { .. }) => "precondition_failed",
        Err(CommandError::Conflict { .. }) => "conflict",
        Err(CommandError::IdempotencyKeyReused) => "idempotency_key_reused",
        Err(CommandError::Unavailable(_)) => "unavailable",
        Err(CommandError::Corrupt(_)) => "corrupt",
    };
    if matches!(
        outcome,
        Err(CommandError::Conflict { .. } | CommandError::PreconditionFailed { .. })
    ) {
        metrics::counter!("keel_concurrency_conflicts_total", "aggregate" => aggregate)
            .increment(1);
    }
    metrics::counter!(
        "keel_commands_total",
        "aggregate" => aggregate,
        "command" => command,
        "outcome" => label,
    )
    .increment(1);
    metrics::histogram!(
        "keel_command_duration_seconds",
        "aggregate" => aggregate,
        "command" => command,
    )
    .record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::idempotency::{Fingerprint, IdempotencyKey};

    #[test]
    fn a_negative_stored_sequence_is_corrupt_not_clamped() {
        assert_eq!(stored_u64("sequence", 7).unwrap(), 7);
        let error = stored_u64("sequence", -3).unwrap_err();
        assert!(
            error.to_string().contains("negative sequence -3"),
            "{error}"
        );
        let outcome: CommandError<std::io::Error> = unavailable(error);
        assert!(matches!(outcome, CommandError::Corrupt(_)), "{outcome:?}");
        let outage: CommandError<std::io::Error> = unavailable(sqlx::Error::PoolTimedOut);
        assert!(matches!(outage, CommandError::Unavailable(_)), "{outage:?}");
    }

    #[test]
    fn expected_versions() {
        assert!(ExpectedVersion::Exists.admits(1));
        assert!(!ExpectedVersion::Exists.admits(0));
        assert!(ExpectedVersion::OneOf(vec![0]).admits(0));
        assert!(ExpectedVersion::OneOf(vec![2, 3]).admits(3));
        assert!(!ExpectedVersion::OneOf(vec![2, 3]).admits(4));
        assert!(!ExpectedVersion::OneOf(vec![]).admits(0));
    }

    #[test]
    fn metadata_map_uses_the_schema_keys() {
        let metadata = CommandMetadata {
            correlation_id: Uuid::from_u128(1),
            causation_id: Some(Uuid::from_u128(2)),
            actor: "user:7".into(),
            occurred_at: DateTime::from_timestamp_micros(1_714_564_800_123_456).unwrap(),
            traceparent: None,
        };
        let plain = metadata.to_map(None);
        assert_eq!(plain.len(), 4);
        assert_eq!(plain["occurred_at"], "2024-05-01T12:00:00.123456Z");
        assert_eq!(plain["causation_id"], Uuid::from_u128(2).to_string());

        let request = IdempotentRequest {
            key: IdempotencyKey::new("k").unwrap(),
            fingerprint: Fingerprint::of("op", "id", &()),
        };
        let keyed = metadata.to_map(Some(&request));
        assert_eq!(keyed["idempotency_key"], "k");
        assert_eq!(keyed[REQUEST_FINGERPRINT_KEY], request.fingerprint.as_str());
    }
}
