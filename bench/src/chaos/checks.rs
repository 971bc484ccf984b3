//! What must hold after every fault: nothing acknowledged is missing from the store, every
//! stored event reached Kafka in order (duplicates counted, not failed), the read models
//! hold every event, and every saga flow ended once. At the end of a run, every read model
//! must equal a clean rebuild from the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use event_store::customer_keys::Keyring;
use projections::Projection;
use projections::replay::source::EventStore;
use projections::replay::{self, RebuildOptions, RebuildProgress};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading a segment's messages back may take.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the event log and the topics stood when a segment began.
#[derive(Debug, Clone)]
pub struct Marks {
    pub global_position: i64,
    /// `(topic, partition) → high watermark`.
    pub offsets: BTreeMap<(String, i32), i64>,
}

impl Marks {
    pub async fn take(pool: &PgPool, brokers: &str, topics: &[String]) -> anyhow::Result<Self> {
        Ok(Self {
            global_position: head(pool).await?,
            offsets: end_offsets(brokers, topics).await?,
        })
    }
}

/// The last global position in the store.
pub async fn head(pool: &PgPool) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(pool)
        .await
        .context("reading the store's head")
}

/// What the checks found for one segment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SegmentCheck {
    /// Events the segment appended.
    pub stored_events: u64,
    /// Events named by a 2xx answer.
    pub acknowledged_events: u64,
    /// Of those, not in the store.
    pub lost_acknowledged: u64,
    /// Stored events never seen on Kafka.
    pub missing_on_kafka: u64,
    /// Messages seen more than once (the relay's at-least-once delivery), extra copies.
    pub duplicates: u64,
    /// Aggregates whose events reached Kafka out of sequence order.
    pub reordered_aggregates: u64,
    /// Aggregates some projection's checkpoint is behind the store on.
    pub read_model_behind: u64,
    /// Placed orders whose saga flow never reached a terminal status (or whose order view
    /// never showed it).
    pub unsettled_flows: u64,
    /// Flows that ended `failed` (a step past the point of no return refused).
    pub failed_flows: u64,
    /// A reservation, authorization, capture or refund recorded twice.
    pub double_effects: u64,
    /// Saga flows by final status.
    pub flows_by_status: BTreeMap<String, u64>,
}

impl SegmentCheck {
    /// Lost or skipped events, or a saga that misbehaved.
    pub fn anomalies(&self) -> u64 {
        self.lost_acknowledged
            + self.missing_on_kafka
            + self.reordered_aggregates
            + self.read_model_behind
            + self.saga_anomalies()
    }

    pub fn saga_anomalies(&self) -> u64 {
        self.unsettled_flows + self.failed_flows + self.double_effects
    }
}

/// Runs every per-segment check between `from` and now.
pub async fn segment(
    pool: &PgPool,
    brokers: &str,
    topics: &[String],
    from: &Marks,
    acknowledged: &[Uuid],
    placed: &[Uuid],
    unsettled: u64,
) -> anyhow::Result<SegmentCheck> {
    let to = head(pool).await?;
    let stored: Vec<(Uuid, String, String, i64)> = sqlx::query_as(
        "SELECT event_id, aggregate_type, aggregate_id, sequence FROM events \
         WHERE global_position > $1 AND global_position <= $2 ORDER BY global_position",
    )
    .bind(from.global_position)
    .bind(to)
    .fetch_all(pool)
    .await
    .context("reading the segment's events")?;

    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_id = ANY($1)")
        .bind(acknowledged)
        .fetch_one(pool)
        .await
        .context("looking up acknowledged events")?;

    let wire = read_back(brokers, topics, &from.offsets).await?;
    let stored_ids: HashSet<Uuid> = stored.iter().map(|(id, ..)| *id).collect();
    let missing_on_kafka = stored_ids
        .iter()
        .filter(|id| !wire.copies.contains_key(id))
        .count() as u64;
    let duplicates = wire.copies.values().map(|n| n - 1).sum();

    let (flows_by_status, failed_flows) = flow_statuses(pool, placed).await?;
    Ok(SegmentCheck {
        stored_events: stored.len() as u64,
        acknowledged_events: acknowledged.len() as u64,
        lost_acknowledged: acknowledged.len() as u64 - u64::try_from(found).unwrap_or(0),
        missing_on_kafka,
        duplicates,
        reordered_aggregates: wire.reordered,
        read_model_behind: read_model_behind(pool, from.global_position, to).await?,
        unsettled_flows: unsettled,
        failed_flows,
        double_effects: double_effects(pool, from.global_position, to).await?,
        flows_by_status,
    })
}

/// What came back from the topics.
#[derive(Debug, Default)]
struct WireLog {
    copies: HashMap<Uuid, u64>,
    reordered: u64,
}

/// The high watermark of every partition of `topics`.
async fn end_offsets(
    brokers: &str,
    topics: &[String],
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let brokers = brokers.to_owned();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer = consumer(&brokers)?;
        let mut offsets = BTreeMap::new();
        for topic in &topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
                .with_context(|| format!("reading the metadata of {topic}"))?;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition.id(), KAFKA_TIMEOUT)
                    .with_context(|| format!("reading the end of {topic}/{}", partition.id()))?;
                offsets.insert((topic.clone(), partition.id()), high);
            }
        }
        Ok(offsets)
    })
    .await
    .context("the offset reader panicked")?
}

fn consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("bench-chaos-{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        // The relay writes in transactions; an aborted attempt's copies are not delivered.
        .set("isolation.level", "read_committed")
        .create()
        .context("creating a Kafka consumer")
}

/// Reads every message from `from` to the partitions' current ends: copies per event id,
/// and aggregates whose first sight of each sequence was not in ascending order.
async fn read_back(
    brokers: &str,
    topics: &[String],
    from: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<WireLog> {
    let to = end_offsets(brokers, topics).await?;
    let brokers = brokers.to_owned();
    let from = from.clone();
    tokio::task::spawn_blocking(move || {
        let consumer = consumer(&brokers)?;
        let mut assignment = TopicPartitionList::new();
        let mut remaining = HashMap::new();
        for ((topic, partition), end) in &to {
            let start = from.get(&(topic.clone(), *partition)).copied().unwrap_or(0);
            if *end > start {
                assignment.add_partition_offset(topic, *partition, Offset::Offset(start))?;
                remaining.insert((topic.clone(), *partition), *end);
            }
        }
        consumer
            .assign(&assignment)
            .context("assigning partitions")?;
        let mut log = WireLog::default();
        // Highest sequence seen per aggregate; a new sequence below it is out of order.
        let mut highest: HashMap<(String, String), i64> = HashMap::new();
        let mut reordered: HashSet<(String, String)> = HashSet::new();
        let deadline = std::time::Instant::now() + READ_BACK_TIMEOUT;
        while !remaining.is_empty() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "reading back the segment's messages took over {READ_BACK_TIMEOUT:?}; \
                 partitions left: {remaining:?}"
            );
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.context("reading a message back")?;
            let key = (message.topic().to_owned(), message.partition());
            if remaining
                .get(&key)
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                remaining.remove(&key);
            }
            let header = |name: &str| {
                message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned)
                })
            };
            let (Some(event_id), Some(kind), Some(id), Some(sequence)) = (
                header("event_id").and_then(|v| Uuid::parse_str(&v).ok()),
                header("aggregate_type"),
                header("aggregate_id"),
                header("sequence").and_then(|v| v.parse::<i64>().ok()),
            ) else {
                continue; // not an event of the platform (a benchmark's poison message)
            };
            let copies = log.copies.entry(event_id).or_default();
            *copies += 1;
            if *copies > 1 {
                continue;
            }
            let aggregate = (kind, id);
            let top = highest.entry(aggregate.clone()).or_insert(0);
            if sequence < *top {
                reordered.insert(aggregate);
            } else {
                *top = sequence;
            }
        }
        log.reordered = reordered.len() as u64;
        Ok(log)
    })
    .await
    .context("the read-back task panicked")?
}

/// Whether the outbox is empty and every projection holds every event after `from`;
/// false while the database does not answer.
pub async fn pipeline_idle(pool: &PgPool, from: i64) -> bool {
    let outbox: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(pool)
        .await;
    if !outbox.is_ok_and(|rows| rows == 0) {
        return false;
    }
    match head(pool).await {
        Ok(to) => read_model_behind(pool, from, to)
            .await
            .is_ok_and(|behind| behind == 0),
        Err(_) => false,
    }
}

/// Aggregates of the segment some projection holds less of than the store.
async fn read_model_behind(pool: &PgPool, from: i64, to: i64) -> anyhow::Result<u64> {
    let (names, types): (Vec<&str>, Vec<&str>) = Projection::ALL
        .iter()
        .flat_map(|p| p.sources().iter().map(|s| (p.name(), s.aggregate_type())))
        .unzip();
    let behind: i64 = sqlx::query_scalar(
        "WITH touched AS ( \
             SELECT aggregate_type, aggregate_id, max(sequence) AS last FROM events \
             WHERE global_position > $1 AND global_position <= $2 GROUP BY 1, 2) \
         SELECT count(*) FROM touched t \
         JOIN unnest($3::text[], $4::text[]) AS p(projection, aggregate_type) \
           ON p.aggregate_type = t.aggregate_type \
         LEFT JOIN read_model.checkpoints c ON c.projection = p.projection \
           AND c.aggregate_type = t.aggregate_type AND c.aggregate_id = t.aggregate_id \
         WHERE c.last_sequence IS NULL OR c.last_sequence < t.last",
    )
    .bind(from)
    .bind(to)
    .bind(&names)
    .bind(&types)
    .fetch_one(pool)
    .await
    .context("comparing read-model checkpoints with the store")?;
    Ok(u64::try_from(behind).unwrap_or(0))
}

/// The same reservation, authorization, capture, refund or commit recorded twice.
async fn double_effects(pool: &PgPool, from: i64, to: i64) -> anyhow::Result<u64> {
    let doubles: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ( \
             SELECT aggregate_id, event_type, \
                    coalesce(payload -> event_type ->> 'order_id', '') AS order_id \
             FROM events \
             WHERE global_position > $1 AND global_position <= $2 \
               AND event_type IN ('StockReserved', 'ReservationCommitted', \
                   'PaymentAuthorized', 'PaymentCaptured', 'PaymentRefunded') \
             GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await
    .context("counting double effects")?;
    Ok(u64::try_from(doubles).unwrap_or(0))
}

async fn flow_statuses(
    pool: &PgPool,
    placed: &[Uuid],
) -> anyhow::Result<(BTreeMap<String, u64>, u64)> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM saga_instances WHERE order_id = ANY($1) GROUP BY 1",
    )
    .bind(placed)
    .fetch_all(pool)
    .await
    .context("reading saga statuses")?;
    let by_status: BTreeMap<String, u64> = rows
        .into_iter()
        .map(|(status, n)| (status, u64::try_from(n).unwrap_or(0)))
        .collect();
    let failed = by_status.get("failed").copied().unwrap_or(0);
    Ok((by_status, failed))
}

/// Rows by which one projection's live tables differ from a clean rebuild.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildComparison {
    pub projection: &'static str,
    pub events_read: u64,
    /// `table → rows in one and not the other` (both directions).
    pub differing_rows: BTreeMap<String, u64>,
}

impl RebuildComparison {
    pub fn mismatches(&self) -> u64 {
        self.differing_rows.values().sum()
    }
}

/// Rebuilds every projection from the store, keeping the live tables aside, and counts the
/// rows that differ; then drops the kept tables. Run it once the pipeline is idle.
pub async fn read_models_against_rebuild(pool: &PgPool) -> anyhow::Result<Vec<RebuildComparison>> {
    // The live projector opens personal data with the master key; so must the rebuild, or
    // a forgotten customer's orders would rebuild as `unavailable` rather than `erased`.
    let store = EventStore::new(pool.clone()).with_keyring(master_key()?.map(Arc::new));
    let options = RebuildOptions {
        keep_old: true,
        restart: true,
        ..RebuildOptions::default()
    };
    let mut comparisons = Vec::new();
    for projection in Projection::ALL {
        let (progress, _updates) = watch::channel(RebuildProgress::default());
        let report = replay::rebuild_from_store(
            projection,
            pool,
            &store,
            &options,
            &CancellationToken::new(),
            &progress,
        )
        .await
        .with_context(|| format!("rebuilding {projection} from the store"))?;
        let old = report
            .old_schema
            .clone()
            .with_context(|| format!("the rebuild of {projection} kept no old tables"))?;
        let mut differing_rows = BTreeMap::new();
        for table in projection.tables() {
            let differing: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM ( \
                     (TABLE read_model.\"{table}\" EXCEPT ALL TABLE \"{old}\".\"{table}\") \
                     UNION ALL \
                     (TABLE \"{old}\".\"{table}\" EXCEPT ALL TABLE read_model.\"{table}\")) d"
            ))
            .fetch_one(pool)
            .await
            .with_context(|| format!("comparing {table} with its rebuild"))?;
            differing_rows.insert((*table).to_owned(), u64::try_from(differing).unwrap_or(0));
        }
        sqlx::query(&format!("DROP SCHEMA \"{old}\" CASCADE"))
            .execute(pool)
            .await
            .with_context(|| format!("dropping {old}"))?;
        comparisons.push(RebuildComparison {
            projection: projection.name(),
            events_read: report.events_read,
            differing_rows,
        });
    }
    Ok(comparisons)
}

/// The projector's master key: `KEEL_MASTER_KEY_FILE`, else the local stack's development
/// key (`deploy/secrets/dev-master-key.secret`, which `cargo xtask up` gives the projector).
fn master_key() -> anyhow::Result<Option<Keyring>> {
    let path = std::env::var_os("KEEL_MASTER_KEY_FILE").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/secrets/dev-master-key.secret")
        },
        std::path::PathBuf::from,
    );
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the master key {}", path.display()))?;
    Keyring::from_config(Some(&text), None)
        .with_context(|| format!("the master key in {}", path.display()))
}
