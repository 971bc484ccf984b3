//! The relay loop: lease shards, read a batch, publish it pipelined, delete it once every
//! delivery is acknowledged; on any failure keep the rows and try again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use ops::clock::{Clock, SystemClock};
use ops::ids::{IdSource, RandomIds};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};
use uuid::Uuid;

use crate::wakeups::Wakeups;
use crate::{
    PendingEvent, RelayConfig, RelayError, SchemaIds, ShardLeases, backlog, delete_published,
    encode_for_wire, fetch_batch, register_schemas, relay_id_for,
};
use event_store::outbox::note_failed_attempt;
use schemas::topics::ensure_aggregate_topics;

const REBALANCE_EVERY: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What one publish round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishedBatch {
    /// Global positions acknowledged by the broker.
    pub acknowledged: Vec<i64>,
    /// Global positions held back because an earlier event of the same aggregate could
    /// not be encoded; they stay queued, in order.
    pub held_back: Vec<i64>,
}

/// A relay instance. Several may run against one event store; see `ShardLeases`.
#[derive(Debug)]
pub struct OutboxRelay {
    config: RelayConfig,
    relay_id: Uuid,
    schema_ids: SchemaIds,
}

impl OutboxRelay {
    /// Registers the schemas and creates the topics; fails if the registry or the broker
    /// cannot be reached, so a misconfigured relay stops at start-up with the cause.
    pub async fn prepare(config: RelayConfig) -> Result<Self, RelayError> {
        let schema_ids =
            register_schemas(&config.schema_registry_url, &config.topic_prefix).await?;
        ensure_aggregate_topics(
            &config.kafka_brokers,
            &config.topic_prefix,
            config.topic_partitions,
            config.topic_replication_factor,
        )
        .await?;
        let relay_id = config
            .instance_id
            .as_deref()
            .map_or_else(|| RandomIds.new_id(), relay_id_for);
        tracing::info!(%relay_id, schemas = schema_ids.len(), "outbox relay ready");
        Ok(Self {
            config,
            relay_id,
            schema_ids,
        })
    }

    pub fn relay_id(&self) -> Uuid {
        self.relay_id
    }

    /// Runs until `cancel` fires. Failures of the database or the broker are logged with
    /// their cause and retried with backoff; nothing is dropped.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            match self.run_session(&cancel).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(relay_id = %self.relay_id, %error, retry_in_ms = backoff.as_millis(), "outbox relay session failed");
                    sleep_or_cancel(backoff, &cancel).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::info!(relay_id = %self.relay_id, "outbox relay stopped");
    }

    /// One database session: its advisory locks are the shard leases, so when it breaks
    /// the leases are gone and a new session starts from scratch.
    async fn run_session(&self, cancel: &CancellationToken) -> Result<(), RelayError> {
        let mut connection = PgConnection::connect_with(&self.config.database).await?;
        let mut leases = ShardLeases::new(self.relay_id);
        let mut producer = self.producer()?;
        let mut wakeups = Wakeups::new(&self.config.database);
        let mut last_rebalance: Option<Instant> = None;
        let mut last_report: Option<Instant> = None;
        let mut failures = 0_u32;
        let outcome = loop {
            if cancel.is_cancelled() {
                break Ok(());
            }
            if last_rebalance.is_none_or(|at| at.elapsed() >= REBALANCE_EVERY) {
                if let Err(error) = leases.rebalance(&mut connection).await {
                    leases.forget();
                    break Err(error.into());
                }
                last_rebalance = Some(Instant::now());
            }
            if last_report.is_none_or(|at| at.elapsed() >= self.config.backlog_report_interval) {
                self.report_backlog(&mut connection, &leases).await?;
                last_report = Some(Instant::now());
            }
            let shards = leases.held();
            if shards.is_empty() {
                sleep_or_cancel(self.config.poll_interval, cancel).await;
                continue;
            }
            wakeups.forget_earlier();
            let batch = fetch_batch(&mut connection, &shards, self.config.batch_size).await?;
            if batch.is_empty() {
                wakeups.wait(self.config.poll_interval, cancel).await;
                continue;
            }
            let span =
                info_span!("outbox_publish", relay_id = %self.relay_id, events = batch.len());
            match self
                .publish(&producer, &batch, cancel)
                .instrument(span)
                .await
            {
                Ok(Some(published)) => {
                    delete_published(&mut connection, &published.acknowledged).await?;
                    record_published(&batch, &published);
                    if !published.held_back.is_empty() {
                        note_failed_attempt(&mut connection, &published.held_back).await?;
                        sleep_or_cancel(self.config.poll_interval, cancel).await;
                    }
                    failures = 0;
                }
                Ok(None) => break Ok(()),
                Err(error) => {
                    failures += 1;
                    metrics::counter!("keel_relay_publish_failures_total").increment(1);
                    let positions: Vec<i64> =
                        batch.iter().map(|event| event.global_position).collect();
                    note_failed_attempt(&mut connection, &positions).await?;
                    let backoff = backoff_after(failures);
                    tracing::warn!(%error, events = batch.len(), failures, retry_in_ms = backoff.as_millis(),
                        "publish failed; events stay queued and will be published again");
                    // A fresh producer drops whatever the old one still queued, and a broker
                    // that lost its topics (restart of an in-memory broker) gets them back.
                    producer = self.producer()?;
                    if let Err(error) = ensure_aggregate_topics(
                        &self.config.kafka_brokers,
                        &self.config.topic_prefix,
                        self.config.topic_partitions,
                        self.config.topic_replication_factor,
                    )
                    .await
                    {
                        tracing::warn!(%error, "topics could not be ensured");
                    }
                    sleep_or_cancel(backoff, cancel).await;
                }
            }
        };
        if outcome.is_ok()
            && let Err(error) = leases.release_all(&mut connection).await
        {
            tracing::warn!(%error, "could not release shard leases; they end with the session");
        }
        outcome
    }

    /// Reads one batch of the given shards and publishes it without deleting anything:
    /// the first half of a relay round, exposed so tests can stop a relay between publish
    /// and delete, as a crash would.
    pub async fn publish_pending(
        &self,
        connection: &mut PgConnection,
        shards: &[i16],
    ) -> Result<PublishedBatch, RelayError> {
        let batch = fetch_batch(connection, shards, self.config.batch_size).await?;
        let producer = self.producer()?;
        let published = self
            .publish(&producer, &batch, &CancellationToken::new())
            .await?
            .unwrap_or_default();
        Ok(published)
    }

    /// Sends every event of the batch before awaiting any acknowledgement (pipelined), then
    /// waits for all of them. `Ok(None)` if cancelled while waiting.
    async fn publish(
        &self,
        producer: &FutureProducer,
        batch: &[PendingEvent],
        cancel: &CancellationToken,
    ) -> Result<Option<PublishedBatch>, RelayError> {
        let mut blocked: HashSet<(&str, &str)> = HashSet::new();
        let mut held_back = Vec::new();
        let mut records = Vec::with_capacity(batch.len());
        for event in batch {
            let aggregate = (event.aggregate_type.as_str(), event.aggregate_id.as_str());
            if blocked.contains(&aggregate) {
                held_back.push(event.global_position);
                continue;
            }
            match encode_for_wire(event, &self.schema_ids, &self.config.topic_prefix) {
                Ok(record) => records.push((event.global_position, record)),
                Err(error) => {
                    // Never skip: the aggregate's later events wait behind this one.
                    tracing::error!(%error, global_position = event.global_position, "event held back");
                    blocked.insert(aggregate);
                    held_back.push(event.global_position);
                }
            }
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for (position, record) in &records {
            let headers =
                record
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |headers, (key, value)| {
                        headers.insert(Header {
                            key,
                            value: Some(value.as_bytes()),
                        })
                    });
            let mut message = FutureRecord::to(&record.topic)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers);
            let delivery = loop {
                match producer.send_result(message) {
                    Ok(delivery) => break delivery,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        message = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((source, _)) => return Err(self.kafka_error(source)),
                }
            };
            deliveries.push((*position, delivery));
        }
        let (positions, futures): (Vec<i64>, Vec<_>) = deliveries.into_iter().unzip();
        let results = tokio::select! {
            results = join_all(futures) => results,
            () = cancel.cancelled() => return Ok(None),
        };
        for result in results {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(self.kafka_error(source)),
                Err(_) => return Err(self.kafka_error(KafkaError::Canceled)),
            }
        }
        Ok(Some(PublishedBatch {
            acknowledged: positions,
            held_back,
        }))
    }

    fn producer(&self) -> Result<FutureProducer, RelayError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.config.kafka_brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.config.linger_ms.to_string())
            .set("batch.size", self.config.producer_batch_bytes.to_string())
            .set(
                "message.timeout.ms",
                self.config.message_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(|source| self.kafka_error(source))
    }

    fn kafka_error(&self, source: KafkaError) -> RelayError {
        RelayError::Kafka {
            brokers: self.config.kafka_brokers.clone(),
            source,
        }
    }

    async fn report_backlog(
        &self,
        connection: &mut PgConnection,
        leases: &ShardLeases,
    ) -> Result<(), RelayError> {
        let backlog = backlog(connection).await?;
        let oldest_age_ms = backlog
            .oldest_age(SystemClock.now())
            .map(|age| age.num_milliseconds())
            .unwrap_or(0);
        metrics::gauge!("keel_outbox_backlog_events").set(backlog.events as f64);
        metrics::gauge!("keel_outbox_oldest_unpublished_age_seconds")
            .set(oldest_age_ms as f64 / 1000.0);
        metrics::gauge!("keel_relay_shards_held").set(leases.held().len() as f64);
        tracing::info!(
            relay_id = %self.relay_id,
            backlog_events = backlog.events,
            oldest_unpublished_age_ms = oldest_age_ms,
            shards_held = leases.held().len(),
            "outbox backlog"
        );
        Ok(())
    }
}

fn backoff_after(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(7);
    (Duration::from_millis(100) * 2_u32.pow(exponent)).min(MAX_BACKOFF)
}

pub(crate) async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = cancel.cancelled() => {}
    }
}

/// `keel_relay_events_published_total{aggregate}` and the lag from append to broker
/// acknowledgement, `keel_relay_publish_lag_seconds`.
fn record_published(batch: &[PendingEvent], published: &PublishedBatch) {
    let acknowledged: HashSet<i64> = published.acknowledged.iter().copied().collect();
    let now = SystemClock.now();
    let lag = metrics::histogram!("keel_relay_publish_lag_seconds");
    let mut per_aggregate: HashMap<&str, u64> = HashMap::new();
    for event in batch
        .iter()
        .filter(|event| acknowledged.contains(&event.global_position))
    {
        *per_aggregate.entry(&event.aggregate_type).or_default() += 1;
        let micros = (now - event.recorded_at)
            .num_microseconds()
            .unwrap_or(0)
            .max(0);
        lag.record(micros as f64 / 1e6);
    }
    for (aggregate, events) in per_aggregate {
        metrics::counter!(
            "keel_relay_events_published_total",
            "aggregate" => aggregate.to_owned(),
        )
        .increment(events);
    }
}
