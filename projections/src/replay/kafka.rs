//! Rebuild from Kafka: in place, from the beginning of the topics, in the projection's own
//! consumer group. The simple version, for when the event store is not at hand (a read
//! model in another database) or to check the topics themselves:
//!
//! 1. The projection's live projector must be stopped: its group must have no member
//!    (checked; a running member would commit its own position over the reset).
//! 2. A marker (the shadow schema, holding only the progress row with source `kafka`)
//!    records that a Kafka rebuild is under way; if it exists already, this is a resumed
//!    run and steps 3 and 4 are skipped.
//! 3. The group's committed offsets are reset to the start of every partition of the
//!    projection's topics. Done before emptying anything: if the reset fails nothing has
//!    changed, and if the emptying fails the projector simply re-reads everything as
//!    duplicates.
//! 4. The projection's tables and checkpoints are emptied in one transaction holding the
//!    projection's exclusive lock. **Queries see the projection empty from here until it
//!    has caught up: this mode is not zero-downtime** (the store mode is).
//! 5. The ordinary projector (same code, same group) consumes until it has reached the end
//!    of every partition as it was at the start of the run, then commits and leaves; the
//!    marker is dropped. Interrupted (Ctrl-C), it commits what it applied, and running the
//!    command again resumes from there. Then start the live projector again.
//!
//! The topics must still hold every event (retention): the store mode has no such limit.
//! Nothing is produced except dead letters of poison messages, as the live projector does.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{ReplayError, shadow};
use crate::config::{KafkaSettings, ProjectorSettings};
use read_model::READ_MODEL_SCHEMA;

use crate::db;
use schemas::topics;

use crate::{Projection, Projector};

const KAFKA_SOURCE: &str = "kafka";
const TIMEOUT: Duration = Duration::from_secs(15);

/// What a Kafka rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRebuildReport {
    /// The projection.
    pub projection: Projection,
    /// The consumer group rebuilt.
    pub group_id: String,
    /// Whether it reached the end of the topics (else it was interrupted).
    pub finished: bool,
    /// Whether this run resumed an earlier one.
    pub resumed: bool,
    /// Events applied by this run.
    pub applied: u64,
    /// Duplicates skipped by this run.
    pub duplicates: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl std::fmt::Display for KafkaRebuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            self.applied as f64 / seconds
        } else {
            0.0
        };
        write!(
            f,
            "{}: {} from Kafka (group {}){}; {} events applied, {} duplicates in {seconds:.1} s \
             ({rate:.0} events/s){}",
            self.projection,
            if self.finished {
                "rebuilt"
            } else {
                "interrupted"
            },
            self.group_id,
            if self.resumed { ", resumed" } else { "" },
            self.applied,
            self.duplicates,
            if self.finished {
                "; start its live projector again"
            } else {
                "; run the same command again to resume"
            }
        )
    }
}

fn kafka_error(error: impl std::fmt::Display) -> ReplayError {
    ReplayError::Kafka(error.to_string())
}

/// Rebuilds `projection` in place from its topics (see the module docs).
///
/// # Errors
/// [`ReplayError`]; a group with members is [`ReplayError::Kafka`].
pub async fn rebuild_from_kafka(
    projection: Projection,
    read_model: &PgPool,
    kafka: &KafkaSettings,
    settings: &ProjectorSettings,
    stop: &CancellationToken,
) -> Result<KafkaRebuildReport, ReplayError> {
    let started = std::time::Instant::now();
    let group_id = settings.group_id(projection);
    let topic_names: Vec<String> = projection
        .sources()
        .iter()
        .map(|kind| kind.topic(&kafka.topic_prefix))
        .collect();
    let wanted: Vec<&str> = topic_names.iter().map(String::as_str).collect();
    topics::ensure_topics(
        &kafka.brokers,
        &wanted,
        kafka.topic_partitions,
        kafka.topic_replication_factor,
    )
    .await
    .map_err(kafka_error)?;

    let resumed = shadow::exists(read_model, projection).await?;
    if resumed {
        let (_, source) = shadow::progress(read_model, projection).await?;
        if source != KAFKA_SOURCE {
            return Err(ReplayError::OtherSource {
                projection,
                found: source,
            });
        }
    }
    let (ends, already_at) = {
        let brokers = kafka.brokers.clone();
        let group = group_id.clone();
        let topics = topic_names.clone();
        tokio::task::spawn_blocking(move || prepare_group(&brokers, &group, &topics, !resumed))
            .await
            .map_err(kafka_error)??
    };
    if !resumed {
        shadow::create_marker(read_model, projection, KAFKA_SOURCE).await?;
        empty_projection(read_model, projection).await?;
    }
    info!(
        projection = projection.name(),
        group_id, resumed, "rebuilding from Kafka"
    );

    let projector = Projector::start(projection, read_model.clone(), kafka, settings)
        .await
        .map_err(kafka_error)?;
    let mut progress = projector.progress();
    let run_stop = stop.child_token();
    let task = tokio::spawn(projector.run(run_stop.clone()));
    let reached_end = |p: &crate::Progress| {
        ends.iter().all(|(key, end)| {
            already_at.get(key).is_some_and(|at| at >= end)
                || p.position(&key.0, key.1).is_some_and(|at| at >= *end)
        })
    };
    let finished = tokio::select! {
        waited = progress.wait_for(|p| reached_end(p)) => waited.is_ok(),
        () = stop.cancelled() => false,
    };
    run_stop.cancel();
    task.await.map_err(kafka_error)?;
    let last = progress.borrow().clone();
    if finished {
        shadow::drop(read_model, projection).await?;
    }
    Ok(KafkaRebuildReport {
        projection,
        group_id,
        finished,
        resumed,
        applied: last.applied,
        duplicates: last.duplicates,
        elapsed: started.elapsed(),
    })
}

type PartitionKey = (String, i32);

/// Offset per partition.
type Offsets = BTreeMap<PartitionKey, i64>;

/// Checks the group is empty, reads every partition's end, and (when `reset`) commits the
/// group's offsets to every partition's start. Returns the ends and the group's committed
/// offsets before any reset.
fn prepare_group(
    brokers: &str,
    group_id: &str,
    topics: &[String],
    reset: bool,
) -> Result<(Offsets, Offsets), ReplayError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka_error)?;
    let groups = consumer
        .fetch_group_list(Some(group_id), TIMEOUT)
        .map_err(kafka_error)?;
    if let Some(group) = groups.groups().iter().find(|g| g.name() == group_id)
        && !group.members().is_empty()
    {
        return Err(ReplayError::Kafka(format!(
            "consumer group {group_id} has {} member(s): stop the projector first",
            group.members().len()
        )));
    }
    let mut starts = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(kafka_error)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), TIMEOUT)
                .map_err(kafka_error)?;
            starts
                .add_partition_offset(topic, partition.id(), Offset::Offset(low))
                .map_err(kafka_error)?;
            if high > low {
                ends.insert((topic.clone(), partition.id()), high);
            }
        }
    }
    let committed = consumer
        .committed_offsets(starts.clone(), TIMEOUT)
        .map_err(kafka_error)?;
    let mut already_at = BTreeMap::new();
    if !reset {
        for element in committed.elements() {
            if let Offset::Offset(at) = element.offset() {
                already_at.insert((element.topic().to_owned(), element.partition()), at);
            }
        }
    }
    if reset && starts.count() > 0 {
        consumer
            .commit(&starts, CommitMode::Sync)
            .map_err(kafka_error)?;
    }
    Ok((ends, already_at))
}

/// Empties the projection's live tables and checkpoints, atomically, with no live batch in
/// flight.
async fn empty_projection(pool: &PgPool, projection: Projection) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    db::lock_projection_exclusive(&mut tx, projection).await?;
    let tables: Vec<String> = projection
        .tables()
        .iter()
        .map(|t| format!("{READ_MODEL_SCHEMA}.\"{t}\""))
        .collect();
    sqlx::query(&format!("TRUNCATE {}", tables.join(", ")))
        .execute(&mut *tx)
        .await?;
    // The topics are read again from the start: held events come again with them.
    for table in ["checkpoints", "retry_events"] {
        sqlx::query(&format!(
            "DELETE FROM {READ_MODEL_SCHEMA}.{table} WHERE projection = $1"
        ))
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
