//! Applying stored events to a shadow: the live projector's rule (an event is applied only
//! if its sequence is its aggregate's checkpoint + 1, in the transaction that advances the
//! checkpoint) and its very apply code, on tables resolved in the shadow schema.

use std::collections::{BTreeSet, HashMap};

use event_store::customer_keys::Keyring;
use sqlx::PgConnection;

use super::ReplayError;
use super::set_based::{self, AppliedBefore, Prior};
use super::source::{EventStore, StoredEvent};
use crate::Projection;
use crate::event::AggregateKey;
use crate::projection::{ApplyError, is_data_error};

/// What one slice of events did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct SliceStats {
    /// Events applied, gap fillers included.
    pub applied: u64,
    /// Events skipped because the shadow already held them (a resumed batch).
    pub duplicates: u64,
}

impl std::ops::AddAssign for SliceStats {
    fn add_assign(&mut self, other: Self) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
    }
}

/// Applies `events` (commit order) inside the caller's transaction, whose `search_path` is
/// the shadow schema. An event whose predecessors are not applied yet (its transaction took
/// its id before its predecessor's committed, so it sorts first in commit order) gets them
/// from the store first, by aggregate and sequence: nothing is ever applied across a gap
/// and nothing is skipped.
///
/// With [`Fold::SetBased`] the whole slice is folded in memory and each touched row written
/// once (`set_based`); with [`Fold::PerEvent`] it goes through the live projector's apply
/// code, event by event.
///
/// `known` holds checkpoints this run already knows; only the others are read. Returns,
/// next to the counts, the checkpoint of every aggregate of the slice after it, for
/// [`KnownCheckpoints::record`] once the transaction has committed.
pub(super) async fn apply_events(
    connection: &mut PgConnection,
    projection: Projection,
    events: &[&StoredEvent],
    store: &EventStore,
    fold: Fold,
    known: &KnownCheckpoints,
) -> Result<(SliceStats, HashMap<AggregateKey, i64>), ReplayError> {
    let keys: BTreeSet<AggregateKey> = events.iter().map(|e| e.event.aggregate()).collect();
    let mut checkpoints: HashMap<AggregateKey, i64> = HashMap::with_capacity(keys.len());
    let mut unknown = BTreeSet::new();
    for key in keys {
        match known.get(&key) {
            Some(sequence) => {
                checkpoints.insert(key, sequence);
            }
            None => {
                unknown.insert(key);
            }
        }
    }
    checkpoints.extend(load_checkpoints(connection, &unknown).await?);
    for key in unknown {
        checkpoints.entry(key).or_insert(0);
    }
    // The aggregates whose rows the tables may hold: only those with an event applied.
    let applied_before = match fold {
        Fold::SetBased => AppliedBefore::of(&checkpoints),
        Fold::PerEvent => AppliedBefore::default(),
    };
    let mut advanced: HashMap<AggregateKey, i64> = HashMap::new();
    let mut stats = SliceStats::default();
    // Gap fillers read from the store, owned here; `plan` lists what to apply, in order.
    let mut fillers: Vec<Vec<StoredEvent>> = Vec::new();
    let mut plan: Vec<Planned> = Vec::with_capacity(events.len());
    for (index, stored) in events.iter().enumerate() {
        let key = stored.event.aggregate();
        let sequence = stored.event.sequence();
        let checkpoint = checkpoints.get(&key).copied().unwrap_or_default();
        if sequence <= checkpoint {
            stats.duplicates += 1;
            continue;
        }
        if sequence > checkpoint + 1 {
            let missing = store.read_stream(&key, checkpoint, sequence - 1).await?;
            let expected = usize::try_from(sequence - 1 - checkpoint).unwrap_or(usize::MAX);
            if missing.len() != expected {
                return Err(ReplayError::MissingEvents {
                    aggregate_type: key.aggregate_type,
                    aggregate_id: key.aggregate_id,
                    after: checkpoint,
                    before: sequence,
                });
            }
            plan.extend((0..missing.len()).map(|at| Planned::Filler(fillers.len(), at)));
            fillers.push(missing);
        }
        plan.push(Planned::Event(index));
        checkpoints.insert(key.clone(), sequence);
        advanced.insert(key, sequence);
    }
    let ordered: Vec<&StoredEvent> = plan
        .iter()
        .map(|planned| match *planned {
            Planned::Event(index) => events[index],
            Planned::Filler(set, at) => &fillers[set][at],
        })
        .collect();
    if fold == Fold::SetBased {
        let prior = Prior::Applied(&applied_before);
        set_based::apply(connection, projection, &ordered, store.keyring(), prior).await?;
    } else {
        for stored in &ordered {
            apply_one(connection, projection, stored, store.keyring()).await?;
        }
    }
    stats.applied += ordered.len() as u64;
    store_checkpoints(connection, &advanced).await?;
    Ok((stats, checkpoints))
}

/// The shadow checkpoints one run knows, as its committed transactions left them, so that
/// a slice reads only the checkpoints of aggregates the run has not met yet. Only the
/// rebuild holding the projection's rebuild lock writes the shadow, so what this run
/// committed stays true; what an earlier run committed is known only once read.
#[derive(Debug, Default)]
pub(super) struct KnownCheckpoints {
    sequences: HashMap<AggregateKey, i64>,
    /// `sequences` holds every checkpoint the shadow has: an aggregate it lacks has none.
    complete: bool,
}

impl KnownCheckpoints {
    /// Aggregates known at most (some 150 bytes each); beyond, the map starts over and
    /// misses are read.
    const LIMIT: usize = 1 << 20;

    /// For a shadow this run created: it holds no checkpoint but those this run commits.
    pub(super) fn of_new_shadow() -> Self {
        Self {
            sequences: HashMap::new(),
            complete: true,
        }
    }

    /// For a shadow an earlier run may have filled (a resumed rebuild): checkpoints are
    /// read from it before they are known.
    pub(super) fn of_existing_shadow() -> Self {
        Self::default()
    }

    fn get(&self, key: &AggregateKey) -> Option<i64> {
        match self.sequences.get(key) {
            Some(sequence) => Some(*sequence),
            None => self.complete.then_some(0),
        }
    }

    /// Takes in the checkpoints a slice returned, once its transaction has committed.
    pub(super) fn record(&mut self, checkpoints: HashMap<AggregateKey, i64>) {
        if self.sequences.len() + checkpoints.len() > Self::LIMIT {
            self.sequences.clear();
            self.complete = false;
        }
        self.sequences.extend(checkpoints);
    }
}

/// How a slice is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fold {
    /// In memory, each touched row written once (the default).
    #[default]
    SetBased,
    /// Event by event with the live apply code, always (to compare against).
    PerEvent,
}

/// One event to apply: from the slice, or a gap filler read from the store.
#[derive(Debug, Clone, Copy)]
enum Planned {
    Event(usize),
    Filler(usize, usize),
}

/// Applies one event with the live projector's apply code; an event it cannot take is
/// [`ReplayError::Refused`].
pub(super) async fn apply_one(
    connection: &mut PgConnection,
    projection: Projection,
    stored: &StoredEvent,
    keys: Option<&Keyring>,
) -> Result<(), ReplayError> {
    match projection.apply(connection, &stored.event, keys).await {
        Ok(()) => Ok(()),
        Err(ApplyError::Database(error)) if !is_data_error(&error) => {
            Err(ReplayError::Database(error))
        }
        Err(error) => Err(ReplayError::Refused {
            aggregate_type: stored.event.metadata.aggregate_type.clone(),
            aggregate_id: stored.event.metadata.aggregate_id.clone(),
            sequence: stored.event.sequence(),
            position: stored.position,
            error: error.to_string(),
        }),
    }
}

async fn load_checkpoints(
    connection: &mut PgConnection,
    keys: &BTreeSet<AggregateKey>,
) -> Result<HashMap<AggregateKey, i64>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (types, ids): (Vec<&str>, Vec<&str>) = keys
        .iter()
        .map(|k| (k.aggregate_type.as_str(), k.aggregate_id.as_str()))
        .unzip();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT c.aggregate_type, c.aggregate_id, c.last_sequence \
         FROM checkpoints c \
         JOIN unnest($1::text[], $2::text[]) AS k(aggregate_type, aggregate_id) \
           ON c.aggregate_type = k.aggregate_type AND c.aggregate_id = k.aggregate_id",
    )
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *connection)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(aggregate_type, aggregate_id, sequence)| {
            (
                AggregateKey {
                    aggregate_type,
                    aggregate_id,
                },
                sequence,
            )
        })
        .collect())
}

async fn store_checkpoints(
    connection: &mut PgConnection,
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
        "INSERT INTO checkpoints AS c (aggregate_type, aggregate_id, last_sequence) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
         ON CONFLICT (aggregate_type, aggregate_id) \
         DO UPDATE SET last_sequence = EXCLUDED.last_sequence, updated_at = now()",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .execute(&mut *connection)
    .await?;
    Ok(())
}
