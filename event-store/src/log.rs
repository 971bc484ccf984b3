//! The global log: every stored event in commit order, read so that no event is ever
//! stepped over because its transaction committed late (invariant 4, design in
//! `docs/adr/0002-outbox-and-global-position.md` and `docs/adr/0008-global-log-horizon.md`).
//!
//! `global_position` comes from an identity, handed out when a row is inserted, not when it
//! commits: a transaction that started first can commit after one that started later, and a
//! reader that went by `global_position` alone would already have moved past it. So the log
//! is ordered by `(transaction_id, global_position)` — `transaction_id` is the appending
//! transaction's `xid8` — and a read stops at a horizon below which every appending
//! transaction has finished: whatever is not returned yet commits after the cursor, never
//! before it.
//!
//! The horizon is the oldest xid, among those running at the read's snapshot, that is an
//! appender's (it holds the marker [`APPENDER_LOCK`], taken by a statement trigger before
//! its first event gets an xid, `migrations/0012_global_log_horizon.sql`) or that has
//! finished since the snapshot was taken (its events, if any, are invisible to the read);
//! the snapshot's `xmax` if there is none. A long transaction that appends nothing — in this
//! database or any other — does not hold readers back; an open append does.
//!
//! The marker is read from `pg_locks`, which a hot standby does not fill with the primary's
//! locks: there every running xid looks finished and the horizon falls back to the oldest
//! running transaction (`pg_snapshot_xmin`), still safe.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

/// A place in the commit order: the appending transaction, then the identity value.
/// Positions only grow for a reader that uses [`read_after`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// `events.transaction_id` (an `xid8`).
    pub transaction_id: i64,
    /// `events.global_position`.
    pub global_position: i64,
}

impl LogPosition {
    /// Before every event.
    pub const START: LogPosition = LogPosition {
        transaction_id: 0,
        global_position: 0,
    };
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.transaction_id, self.global_position)
    }
}

/// One stored event, every column as stored. `payload` and `metadata` are the `json`
/// columns' text byte for byte (what the hash chain covers); decode them as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Its place in the global log.
    pub position: LogPosition,
    /// Unique id of the event (also in `metadata.event_id`).
    pub event_id: Uuid,
    /// `order`, `payment`, `inventory`, ….
    pub aggregate_type: String,
    /// The aggregate's id (a UUID, or the SKU for inventory).
    pub aggregate_id: String,
    /// 1-based position in the aggregate's stream.
    pub sequence: i64,
    /// The event type, e.g. `OrderPlaced`.
    pub event_type: String,
    /// Version of the payload's shape.
    pub event_version: String,
    /// When it was appended (database clock).
    pub recorded_at: DateTime<Utc>,
    /// The stored payload text.
    pub payload: String,
    /// The stored metadata text.
    pub metadata: String,
    /// Its link in the stream's hash chain, sealed at append time.
    pub hash: Option<Vec<u8>>,
}

/// The select list that [`RecordedEvent`] is read from.
pub(crate) const COLUMNS: &str = "transaction_id::text::bigint AS transaction_id, \
     global_position, event_id, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, recorded_at, payload::text AS payload, metadata::text AS metadata, hash";

impl FromRow<'_, PgRow> for RecordedEvent {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: LogPosition {
                transaction_id: row.try_get("transaction_id")?,
                global_position: row.try_get("global_position")?,
            },
            event_id: row.try_get("event_id")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            recorded_at: row.try_get("recorded_at")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            hash: row.try_get("hash")?,
        })
    }
}

/// Which events of the log to read; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// `aggregate_type` is one of these (any type when empty).
    pub aggregate_types: Vec<String>,
    /// `event_type`.
    pub event_type: Option<String>,
    /// `metadata.correlation_id`.
    pub correlation_id: Option<String>,
    /// `metadata.actor`.
    pub actor: Option<String>,
    /// `recorded_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `recorded_at < to`.
    pub to: Option<DateTime<Utc>>,
}

impl LogFilter {
    /// Events of these aggregate types only.
    pub fn aggregate_types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Self {
            aggregate_types: types.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// The marker every appending transaction holds (transaction-level advisory lock, shared,
/// keys `(class, key)`): taken by the trigger of `migrations/0012_global_log_horizon.sql`,
/// which must use the same keys. Class `0x6b6c_6f67` is "klog"; nothing else uses it.
pub const APPENDER_LOCK: (i32, i32) = (0x6b6c_6f67, 1);

/// The read's horizon, computed in the statement's own snapshot (the one its scan of `events`
/// uses) from one reading of `pg_locks`, taken while the statement runs, after that snapshot.
/// One reading, because a transaction seen running in one and gone from a second would be
/// neither "finished" nor "appender".
///
/// A running xid of the snapshot that holds no `transactionid` lock now has finished since
/// the snapshot (or holds none yet, in the instant its xid is being assigned): it counts like
/// an appender, because the snapshot may not see its events. Only a running transaction's own
/// xid is locked `ExclusiveLock` (waiters hold `ShareLock` on others'). The marker's
/// `database` confines appenders to this database; xids and snapshots are cluster-wide.
fn horizon_cte() -> String {
    let (class, key) = APPENDER_LOCK;
    format!(
        "WITH snapshot AS MATERIALIZED ( \
             SELECT pg_current_snapshot() AS snapshot \
         ), locks AS MATERIALIZED ( \
             SELECT locktype, mode, database, classid, objid, objsubid, virtualtransaction, \
                    transactionid \
               FROM pg_locks \
              WHERE granted AND locktype IN ('advisory', 'transactionid') \
         ), own_xids AS MATERIALIZED ( \
             SELECT virtualtransaction, transactionid FROM locks \
              WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' \
         ), appender_xids AS MATERIALIZED ( \
             SELECT own_xids.transactionid \
               FROM locks AS marker JOIN own_xids USING (virtualtransaction) \
              WHERE marker.locktype = 'advisory' AND marker.mode = 'ShareLock' \
                AND marker.database = (SELECT oid FROM pg_database \
                                        WHERE datname = current_database()) \
                AND marker.classid::bigint = {class} AND marker.objid::bigint = {key} \
                AND marker.objsubid = 2 \
         ), horizon AS MATERIALIZED ( \
             SELECT coalesce( \
                      (SELECT min(running) FROM pg_snapshot_xip(snapshot) AS running \
                        WHERE NOT EXISTS (SELECT 1 FROM own_xids \
                                           WHERE own_xids.transactionid = xid(running)) \
                           OR EXISTS (SELECT 1 FROM appender_xids \
                                       WHERE appender_xids.transactionid = xid(running))), \
                      pg_snapshot_xmax(snapshot)) AS horizon \
               FROM snapshot \
         ) "
    )
}

/// Up to `limit` events matching `filter` after `after`, in commit order, only from
/// transactions below the horizon: every appending transaction below it has finished, so an
/// event not returned yet because its transaction is open will come after the cursor, never
/// before it. Long transactions that append nothing do not hold the read back.
///
/// # Errors
/// Database errors.
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    filter: &LogFilter,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "{horizon} SELECT {COLUMNS} FROM events \
         WHERE transaction_id < (SELECT horizon FROM horizon) \
           AND (transaction_id, global_position) > (",
        horizon = horizon_cte(),
    ));
    query
        .push_bind(after.transaction_id.to_string())
        .push("::text::xid8, ")
        .push_bind(after.global_position)
        .push(")");
    push_filter(&mut query, filter);
    // The ORDER BY names the table's columns: unqualified, `transaction_id` would be the
    // output column (the bigint cast), which no index delivers in order, so every read
    // would sort the whole rest of the store before its LIMIT (quadratic over a rebuild:
    // 8.6k events/s at 1M events instead of the index-ordered scan).
    query
        .push(" ORDER BY events.transaction_id, events.global_position LIMIT ")
        .push_bind(limit);
    query.build_query_as().fetch_all(executor).await
}

/// How many stored events match `filter`, committed or not.
///
/// # Errors
/// Database errors.
pub async fn count<'e>(
    executor: impl PgExecutor<'e>,
    filter: &LogFilter,
) -> Result<u64, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT count(*) FROM events WHERE true");
    push_filter(&mut query, filter);
    let count: i64 = query.build_query_scalar().fetch_one(executor).await?;
    Ok(u64::try_from(count).unwrap_or_default())
}

fn push_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &LogFilter) {
    if !filter.aggregate_types.is_empty() {
        query
            .push(" AND aggregate_type = ANY(")
            .push_bind(filter.aggregate_types.clone())
            .push(")");
    }
    if let Some(event_type) = &filter.event_type {
        query
            .push(" AND event_type = ")
            .push_bind(event_type.clone());
    }
    if let Some(correlation_id) = &filter.correlation_id {
        query
            .push(" AND metadata ->> 'correlation_id' = ")
            .push_bind(correlation_id.clone());
    }
    if let Some(actor) = &filter.actor {
        query
            .push(" AND metadata ->> 'actor' = ")
            .push_bind(actor.clone());
    }
    if let Some(from) = filter.from {
        query.push(" AND recorded_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND recorded_at < ").push_bind(to);
    }
}
