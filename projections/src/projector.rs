//! The projector: one consumer group per projection, folding events into the read model
//! with exactly-once effect.
//!
//! # How a batch goes
//!
//! 1. Up to `batch_size` messages are taken from the consumer (waiting at most
//!    `batch_linger` once the first one is there). Messages keep their partition order, and
//!    an aggregate's events share a partition (key = aggregate id), so per-aggregate order
//!    holds inside a batch.
//! 2. Each message is decoded through the schema registry (writer schema by id).
//! 3. The decoded run is applied in **one transaction**: the checkpoints of every aggregate
//!    in it are locked and read; an event is applied only if its sequence is exactly the
//!    checkpoint + 1. Below that it is a redelivery and is skipped; above that an earlier
//!    event is missing (the relay's at-least-once redelivery restarts from it, in order) and
//!    it is skipped until it comes again. Checkpoints advance, and a notification per
//!    advanced aggregate is sent at commit. The transaction first takes the projection's
//!    advisory lock in shared mode ([`db::enter_live_transaction`]): a rebuild's swap
//!    ([`crate::replay`]) takes it exclusively, so no batch straddles a swap.
//! 4. Only after the commit are the messages' offsets stored; librdkafka commits stored
//!    offsets periodically, and this module commits them synchronously when partitions are
//!    revoked and at shutdown. A crash between commit and offset commit redelivers
//!    messages that step 3 then skips.
//!
//! # When something fails (ADR 0007)
//!
//! Each failure is classified before anything is retried:
//! - An **outage** (database or registry unreachable, missing table, permissions) is
//!   nobody's message's fault: the batch waits it out with backoff until it ends or shutdown
//!   is requested, and nothing is dead-lettered.
//! - A message that **can never succeed** is dead-lettered at once, in the batch's own
//!   transaction, without a retry budget: not a Confluent frame, a schema id the registry
//!   answers 404 for, a record that is not an event of its topic, a datum that does not fit
//!   its schema, a key that is not the event's aggregate id, a value the read model refuses
//!   as a data exception (SQLSTATE 22). It goes to `read_model.dead_letters` (and is copied
//!   to the dead-letter topic), and its aggregate is **parked**: the aggregate's later
//!   events are dead-lettered as `parked` rather than applied across the gap, until an
//!   operator retries or skips the dead letter ([`crate::operator`]).
//! - An event that **may pass later** (a row lock held past `lock_timeout`, a deadlock, a
//!   constraint or a reference the read model does not satisfy yet) **holds its
//!   aggregate**: the event and the aggregate's later events go to `retry_events` in the
//!   same transaction ([`crate::retry`]), the checkpoint records when to try again, and
//!   every other aggregate of the batch is applied and committed. The retry sweep applies
//!   the held events in order when they are due, with backoff; after `max_attempts` the
//!   failing event is dead-lettered and the aggregate parked.
//!
//! A refused event rolls its transaction back; the transaction then runs again with the
//! verdict on that event, so one refusal costs one more try of the batch, not a pause.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ops::clock::{Clock, SystemClock};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schemas::AggregateKind;
use schemas::subscription::{self, Subscription};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, instrument, warn};

use crate::checkpoint::{Checkpoint, RetryChange};
use crate::config::{KafkaSettings, ProjectorSettings, RetryPolicy};
use crate::dead_letter::{self, DeadLetter, DeadLetterPublisher, DeadLetterReason};
use crate::decode::{DecodeError, EventDecoder};
use crate::event::{AggregateKey, ProjectedEvent};
use crate::projection::{ApplyError, Failure, Projection, database_failure};
use crate::{checkpoint, db, retry};
use schemas::topics;

/// What a projector has done so far; watch it with [`Projector::progress`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Next offset to read per (topic, partition), for messages whose effect is committed
    /// in the database (applied, skipped as duplicates, or dead-lettered).
    pub positions: BTreeMap<(String, i32), i64>,
    /// Events applied to the read model.
    pub applied: u64,
    /// Redelivered events skipped because their aggregate's checkpoint was already past them.
    pub duplicates: u64,
    /// Events skipped because an earlier event of their aggregate had not been applied yet
    /// (an out-of-order redelivery; they are applied when they come again in order).
    pub gaps: u64,
    /// Events held for a retry because they failed for a reason that may pass (each
    /// time they are held: a retry that fails again counts again).
    pub held: u64,
    /// Messages dead-lettered (poison and parked).
    pub dead_lettered: u64,
    /// Transactions committed.
    pub transactions: u64,
}

impl Progress {
    /// The next offset to read on `topic` / `partition`, if anything was committed there.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(&(topic.to_owned(), partition)).copied()
    }
}

/// A projector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Kafka client could not be created or could not subscribe.
    #[error("Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    /// A topic is missing and could not be created.
    #[error(transparent)]
    Topic(#[from] topics::TopicError),
    /// The registry client could not be built.
    #[error("schema registry client: {0}")]
    Registry(#[from] schema_registry_converter::error::SRCError),
}

/// Shutdown was requested while a batch was waiting out an outage; its remaining messages
/// were not applied and their offsets not stored.
#[derive(Debug)]
struct Interrupted;

/// Consumer callbacks: commit what was applied before partitions move away.
struct ProjectorContext {
    projection: &'static str,
    rebalances: AtomicU64,
}

/// The longest a projector goes without looking for due retries (another instance, or an
/// operator, may have left some).
const IDLE_RETRY_SWEEP: Duration = Duration::from_secs(5);

/// Retrying aggregates taken per round.
const RETRY_SWEEP_LIMIT: i64 = 100;

/// The pause between two rounds of due retries, for the consumer's sake.
const NEXT_RETRY_ROUND: Duration = Duration::from_millis(10);

/// How often librdkafka reports statistics (the source of the lag gauge).
const STATISTICS_INTERVAL_MS: &str = "5000";

impl ClientContext for ProjectorContext {
    /// `keel_projector_lag_messages{projection, topic, partition}`: messages between the
    /// group's position (stored offset) and the partition's end, for assigned partitions.
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                // -1: the internal unassigned partition, or a lag librdkafka does not know.
                if *partition < 0 || stats.consumer_lag_stored < 0 {
                    continue;
                }
                metrics::gauge!(
                    "keel_projector_lag_messages",
                    "projection" => self.projection,
                    "topic" => topic.clone(),
                    "partition" => partition.to_string(),
                )
                .set(stats.consumer_lag_stored as f64);
            }
        }
    }
}

impl ConsumerContext for ProjectorContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(partitions) = rebalance {
            // Stored offsets cover applied messages only, so this commits exactly what the
            // read model holds; the next owner starts right after it.
            commit_stored_offsets(consumer, self.projection);
            info!(
                projection = self.projection,
                partitions = partitions.count(),
                "partitions revoked"
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => info!(
                projection = self.projection,
                partitions = partitions.count(),
                "partitions assigned"
            ),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                warn!(projection = self.projection, %error, "rebalance failed");
            }
        }
    }
}

fn commit_stored_offsets<C: ConsumerContext>(consumer: &impl Consumer<C>, projection: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => debug!(projection, "applied offsets committed"),
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => warn!(projection, %error, "committing applied offsets failed"),
    }
}

/// One decoded (or undecodable) message: of a batch, or held for a retrying aggregate.
struct Item {
    message: OwnedMessage,
    decoded: Result<ProjectedEvent, DecodeError>,
}

impl Item {
    fn event(&self) -> Option<&ProjectedEvent> {
        self.decoded.as_ref().ok()
    }

    fn id(&self) -> MessageId {
        (
            self.message.topic().to_owned(),
            self.message.partition(),
            self.message.offset(),
        )
    }
}

/// Where a message was read: topic, partition, offset.
type MessageId = (String, i32, i64);

/// What an earlier try of the same transaction learned about one event.
#[derive(Debug, Clone)]
enum Verdict {
    /// It can never be applied: dead-letter it, with this error.
    DeadLetter(String),
    /// It may apply later: hold its aggregate for a retry, with this error.
    Hold(String),
}

/// What a transaction works on.
#[derive(Clone, Copy)]
enum Work<'a> {
    /// Messages read from Kafka, in partition order.
    Batch(&'a [Item]),
    /// The held events of one retrying aggregate whose retry is due.
    Retry(&'a AggregateKey),
}

/// What one try of a transaction did.
enum TxOutcome {
    Committed(TxStats),
    /// This event failed and nothing was committed; the next try knows what to do with it.
    Refused {
        id: MessageId,
        verdict: Verdict,
    },
}

/// Why a transaction could not run: nothing is wrong with the messages.
#[derive(Debug, thiserror::Error)]
enum Outage {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Registry(DecodeError),
}

#[derive(Debug, Default, Clone, Copy)]
struct TxStats {
    applied: u64,
    duplicates: u64,
    gaps: u64,
    /// Events dead-lettered because their aggregate is parked.
    parked: u64,
    /// Messages dead-lettered as poison.
    poison: u64,
    /// Events held for a retry.
    held: u64,
}

impl TxStats {
    fn dead_lettered(&self) -> u64 {
        self.parked + self.poison
    }
}

/// A running projection: its consumer, decoder and dead-letter publisher.
pub struct Projector {
    projection: Projection,
    pool: PgPool,
    subscription: Subscription<ProjectorContext>,
    decoder: EventDecoder,
    dead_letters: DeadLetterPublisher,
    settings: ProjectorSettings,
    group_id: String,
    progress: watch::Sender<Progress>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("projection", &self.projection)
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl Projector {
    /// Creates missing topics (event topics and the dead-letter topic), then a consumer in
    /// group `settings.group_id(projection)` subscribed to the projection's topics.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn start(
        projection: Projection,
        pool: PgPool,
        kafka: &KafkaSettings,
        settings: &ProjectorSettings,
    ) -> Result<Self, StartError> {
        // Shown (as 0) before the first dead letter, so an alert on it has a series.
        for reason in [DeadLetterReason::Poison, DeadLetterReason::Parked] {
            metrics::counter!(
                "keel_projector_dead_letters_total",
                "projection" => projection.name(),
                "reason" => reason.to_string(),
            )
            .increment(0);
        }
        let sources: HashMap<String, AggregateKind> = projection
            .sources()
            .iter()
            .map(|kind| (kind.topic(&kafka.topic_prefix), *kind))
            .collect();
        let dead_letter_topic =
            dead_letter::dead_letter_topic(&kafka.topic_prefix, projection.name());
        let mut wanted: Vec<&str> = sources.keys().map(String::as_str).collect();
        wanted.push(&dead_letter_topic);
        topics::ensure_topics(
            &kafka.brokers,
            &wanted,
            kafka.topic_partitions,
            kafka.topic_replication_factor,
        )
        .await?;

        let group_id = settings.group_id(projection);
        let mut config = ClientConfig::new();
        if let Some(instance) = settings.group_instance_id(projection) {
            config.set("group.instance.id", instance);
        }
        config
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", &group_id)
            .set("client.id", format!("keel-projector-{}", projection.name()))
            .set("auto.offset.reset", "earliest")
            // Offsets are stored by hand after the read-model commit; librdkafka commits
            // what is stored, periodically and on revoke.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .set(
                "auto.commit.interval.ms",
                kafka.auto_commit_interval.as_millis().to_string(),
            )
            .set(
                "session.timeout.ms",
                kafka.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (kafka.session_timeout.as_millis() / 3).max(100).to_string(),
            )
            .set("socket.connection.setup.timeout.ms", "5000")
            // The broker answers a waiting fetch as soon as a message arrives: the wait is
            // what an idle consumer costs, not the read side's latency.
            .set(
                "fetch.wait.max.ms",
                kafka.fetch_wait.as_millis().to_string(),
            );
        let topic_names: Vec<String> = sources.keys().cloned().collect();
        let subscription =
            Subscription::new(config, topic_names.clone(), move || ProjectorContext {
                projection: projection.name(),
                rebalances: AtomicU64::new(0),
            })?;

        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set(
                "client.id",
                format!("keel-projector-{}-dlq", projection.name()),
            )
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "15000")
            .create()?;
        let decoder = EventDecoder::new(&kafka.schema_registry_url, sources)?;
        info!(
            projection = projection.name(),
            group_id,
            topics = ?topic_names,
            dead_letter_topic,
            "projector subscribed"
        );
        Ok(Self {
            projection,
            pool,
            subscription,
            decoder,
            dead_letters: DeadLetterPublisher::new(producer, dead_letter_topic, projection.name()),
            settings: settings.clone(),
            group_id,
            progress: watch::Sender::new(Progress::default()),
        })
    }

    /// The consumer group.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The dead-letter topic.
    pub fn dead_letter_topic(&self) -> &str {
        self.dead_letters.topic()
    }

    /// Follows what the projector has committed.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Consumes until `shutdown` is cancelled, then commits the offsets of what was applied
    /// (nothing more), leaves the group and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = info_span!("projector", projection = self.projection.name());
        self.run_inner(shutdown).instrument(span).await;
    }

    async fn run_inner(self, shutdown: CancellationToken) {
        let mut dead_letters_pending = self.publish_dead_letters().await;
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        // The first look at retrying aggregates is at start-up: an earlier run (or another
        // instance) may have left some.
        let mut next_retry_sweep = Instant::now();
        let mut fatal_check = subscription::fatal_check();
        loop {
            let consumer = self.subscription.consumer();
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = sweep.tick(), if dead_letters_pending => {
                    dead_letters_pending = self.publish_dead_letters().await;
                    continue;
                }
                () = tokio::time::sleep_until(next_retry_sweep) => {
                    match self.sweep_retries(&shutdown).await {
                        Ok((next, dead_lettered)) => {
                            next_retry_sweep = Instant::now() + next;
                            if dead_lettered {
                                dead_letters_pending = self.publish_dead_letters().await;
                            }
                        }
                        Err(Interrupted) => break,
                    }
                    continue;
                }
                _ = fatal_check.tick() => {
                    self.subscription.renew_if_fatal().await;
                    continue;
                }
                // `recv` is cancellation safe: no message is lost when another branch wins.
                received = consumer.recv() => received,
            };
            let message = match first {
                Ok(message) => message.detach(),
                Err(error) => {
                    warn!(%error, "consumer error");
                    self.subscription.renew_if_fatal().await;
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
            };
            let batch = self.fill_batch(message).await;
            if batch.is_empty() {
                continue;
            }
            match self.process(batch, &shutdown).await {
                Ok(stats) => {
                    if stats.held > 0 {
                        let first_retry = Instant::now() + self.settings.retry.backoff(2);
                        next_retry_sweep = next_retry_sweep.min(first_retry);
                    }
                    if stats.dead_lettered() > 0 || dead_letters_pending {
                        dead_letters_pending = self.publish_dead_letters().await;
                    }
                }
                Err(Interrupted) => break,
            }
        }
        info!("stopping: committing the offsets of applied messages");
        let consumer = self.subscription.consumer();
        commit_stored_offsets(&*consumer, self.projection.name());
        consumer.unsubscribe();
        if dead_letters_pending {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.publish_dead_letters()).await;
        }
        // Closing the consumer leaves the group; librdkafka may block while doing so.
        drop(self.subscription);
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        info!("projector stopped");
    }

    /// Publishes recorded dead letters; returns whether some are still pending.
    async fn publish_dead_letters(&self) -> bool {
        match self.dead_letters.publish_pending(&self.pool).await {
            Ok(0) => false,
            Ok(published) => {
                info!(
                    published,
                    topic = self.dead_letters.topic(),
                    "dead letters published"
                );
                false
            }
            Err(error) => {
                warn!(%error, "dead letters not published yet; will retry");
                true
            }
        }
    }

    /// Completes a batch started by `first`: more messages until `batch_size` or until
    /// `batch_linger` has passed. Drops messages of partitions revoked meanwhile: their new
    /// owner reads them from the committed offset.
    async fn fill_batch(&self, first: OwnedMessage) -> Vec<OwnedMessage> {
        let consumer = self.subscription.consumer();
        let rebalances = consumer.context().rebalances.load(Ordering::SeqCst);
        let mut batch = subscription::fill_batch(
            &consumer,
            first,
            self.settings.batch_size,
            self.settings.batch_linger,
        )
        .await;
        if consumer.context().rebalances.load(Ordering::SeqCst) != rebalances {
            let assignment = consumer.assignment().unwrap_or_default();
            let assigned: BTreeSet<(String, i32)> = assignment
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let before = batch.len();
            batch.retain(|m| assigned.contains(&(m.topic().to_owned(), m.partition())));
            if batch.len() != before {
                info!(
                    dropped = before - batch.len(),
                    "dropped messages of revoked partitions"
                );
            }
        }
        batch
    }

    /// Decodes and applies a batch (see the module docs).
    #[instrument(skip_all, fields(
        projection = self.projection.name(),
        messages = batch.len(),
        applied,
        duplicates,
        held,
        dead_lettered,
    ))]
    async fn process(
        &self,
        batch: Vec<OwnedMessage>,
        shutdown: &CancellationToken,
    ) -> Result<TxStats, Interrupted> {
        let mut items = Vec::with_capacity(batch.len());
        let span = tracing::Span::current();
        for message in batch {
            let decoded = self.decode(&message, shutdown).await?;
            if let Ok(event) = &decoded {
                // One batch, many traces: each event's trace is linked, not parented.
                ops::telemetry::add_link(&span, event.metadata.traceparent.as_deref());
            }
            items.push(Item { message, decoded });
        }
        let stats = self.run_work(Work::Batch(&items), shutdown).await?;
        self.store_offsets(items.iter().map(|item| &item.message));
        self.record_event_ages(&items);
        span.record("applied", stats.applied);
        span.record("duplicates", stats.duplicates);
        span.record("held", stats.held);
        span.record("dead_lettered", stats.dead_lettered());
        Ok(stats)
    }

    /// Decodes, waiting out registry outages; every other failure is the message's own.
    async fn decode(
        &self,
        message: &OwnedMessage,
        shutdown: &CancellationToken,
    ) -> Result<Result<ProjectedEvent, DecodeError>, Interrupted> {
        let mut attempt = 1;
        loop {
            match self.decode_once(message).await {
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    warn!(%error, attempt, "schema registry unavailable; retrying");
                    self.pause(self.outage_backoff(attempt), shutdown).await?;
                    // The client caches some failed lookups (an error status): ask again.
                    self.decoder.forget_failures();
                }
                outcome => return Ok(outcome),
            }
        }
    }

    async fn decode_once(&self, message: &OwnedMessage) -> Result<ProjectedEvent, DecodeError> {
        self.decoder
            .decode_keyed(message)
            .await
            .map(|(metadata, event)| ProjectedEvent { metadata, event })
    }

    /// Applies the retrying aggregates whose retry is due (one round, so that consuming
    /// goes on between rounds). Returns how long until the next look (soon when something
    /// was due; else the earliest retry not yet due, at most [`IDLE_RETRY_SWEEP`]) and
    /// whether anything was dead-lettered.
    async fn sweep_retries(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<(Duration, bool), Interrupted> {
        let name = self.projection.name();
        let pending = match retry::pending(&self.pool, name, RETRY_SWEEP_LIMIT).await {
            Ok(pending) => pending,
            Err(error) => {
                warn!(%error, "looking for due retries failed; looking again later");
                return Ok((self.settings.retry.backoff(2), false));
            }
        };
        metrics::gauge!("keel_projector_retrying_aggregates", "projection" => name)
            .set(pending.retrying as f64);
        if pending.due.is_empty() {
            let next = pending
                .next_in
                .map_or(IDLE_RETRY_SWEEP, |next| next.min(IDLE_RETRY_SWEEP));
            return Ok((next, false));
        }
        let mut dead_lettered = false;
        for key in &pending.due {
            let stats = self.run_work(Work::Retry(key), shutdown).await?;
            dead_lettered |= stats.dead_lettered() > 0;
        }
        Ok((NEXT_RETRY_ROUND, dead_lettered))
    }

    /// Runs `work` in one transaction until it commits: a refused event gets its verdict
    /// and the transaction runs again without applying it (so the events before it, and
    /// every other aggregate's, still commit together); an outage is waited out.
    async fn run_work(
        &self,
        work: Work<'_>,
        shutdown: &CancellationToken,
    ) -> Result<TxStats, Interrupted> {
        let mut verdicts = HashMap::new();
        let mut attempt = 1;
        loop {
            match self.try_transaction(work, &verdicts).await {
                Ok(TxOutcome::Committed(stats)) => {
                    self.committed(&stats);
                    return Ok(stats);
                }
                Ok(TxOutcome::Refused { id, verdict }) => {
                    debug!(
                        ?id,
                        ?verdict,
                        "event refused; running the transaction without it"
                    );
                    verdicts.insert(id, verdict);
                }
                Err(error) => {
                    attempt += 1;
                    error!(%error, attempt, "read-model transaction failed; retrying");
                    self.pause(self.outage_backoff(attempt), shutdown).await?;
                }
            }
        }
    }

    /// One try of `work`'s transaction.
    async fn try_transaction(
        &self,
        work: Work<'_>,
        verdicts: &HashMap<MessageId, Verdict>,
    ) -> Result<TxOutcome, Outage> {
        let name = self.projection.name();
        let mut tx = self.pool.begin().await?;
        db::enter_live_transaction(&mut tx, self.projection).await?;
        let taken;
        let (items, resumed, mut checkpoints) = match work {
            Work::Batch(items) => {
                let keys: BTreeSet<AggregateKey> = items
                    .iter()
                    .filter_map(|item| match &item.decoded {
                        Ok(event) => Some(event.aggregate()),
                        Err(_) => self.aggregate_of_raw(&item.message),
                    })
                    .collect();
                let checkpoints = checkpoint::lock(&mut tx, name, &keys).await?;
                (items, None, checkpoints)
            }
            Work::Retry(key) => {
                // Every held event is the aggregate's own: its checkpoint is the only one.
                let checkpoints =
                    checkpoint::lock(&mut tx, name, &BTreeSet::from([key.clone()])).await?;
                if !checkpoints.get(key).is_some_and(|c| c.retry_due) {
                    // Swept meanwhile (by another instance), or released by an operator.
                    return Ok(TxOutcome::Committed(TxStats::default()));
                }
                let mut items = Vec::new();
                for message in retry::take(&mut tx, name, key).await? {
                    let decoded = match self.decode_once(&message).await {
                        Err(error) if error.is_transient() => return Err(Outage::Registry(error)),
                        decoded => decoded,
                    };
                    items.push(Item { message, decoded });
                }
                taken = items;
                (taken.as_slice(), Some(key), checkpoints)
            }
        };
        db::bound_lock_waits(&mut tx, self.settings.lock_timeout).await?;
        let outcome = self
            .fold(&mut tx, items, resumed, &mut checkpoints, verdicts)
            .await?;
        if matches!(outcome, TxOutcome::Committed(_)) {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// Folds `items` into the read model inside `tx`, whose checkpoints of every aggregate
    /// concerned are locked in `checkpoints`. `resumed` is the retrying aggregate whose
    /// held events `items` are.
    async fn fold(
        &self,
        tx: &mut PgConnection,
        items: &[Item],
        resumed: Option<&AggregateKey>,
        checkpoints: &mut HashMap<AggregateKey, Checkpoint>,
        verdicts: &HashMap<MessageId, Verdict>,
    ) -> Result<TxOutcome, Outage> {
        let name = self.projection.name();
        let policy = self.settings.retry;
        let mut advanced = HashMap::new();
        let mut retries = HashMap::new();
        let mut stats = TxStats::default();
        if let Some(key) = resumed {
            // Its held events are applied now; if one fails again it is held again.
            checkpoints.entry(key.clone()).or_default().retrying = false;
            retries.insert(key.clone(), RetryChange::Clear);
        }
        for item in items {
            let event = match &item.decoded {
                Ok(event) => event,
                Err(error) => {
                    // Never transient here (those were waited out): this message cannot
                    // decode, however often it is tried.
                    let aggregate = self.aggregate_of_raw(&item.message);
                    let letter = DeadLetter {
                        message: &item.message,
                        aggregate: aggregate.clone(),
                        sequence: header(&item.message, "sequence").and_then(|s| s.parse().ok()),
                        reason: DeadLetterReason::Poison,
                        error: format!("decode failed: {error}"),
                        attempts: 1,
                    };
                    let id = self.record_dead_letter(tx, &letter).await?;
                    if let Some(key) = aggregate {
                        checkpoint::park(tx, name, &key, id).await?;
                        checkpoints
                            .entry(key)
                            .or_default()
                            .parked_by
                            .get_or_insert(id);
                    }
                    stats.poison += 1;
                    continue;
                }
            };
            let key = event.aggregate();
            let sequence = event.sequence();
            let checkpoint = checkpoints.entry(key.clone()).or_default();
            if sequence <= checkpoint.last_sequence {
                stats.duplicates += 1;
                continue;
            }
            if let Some(parked_by) = checkpoint.parked_by {
                let letter = DeadLetter {
                    message: &item.message,
                    aggregate: Some(key),
                    sequence: Some(sequence),
                    reason: DeadLetterReason::Parked,
                    error: format!(
                        "aggregate is parked behind dead letter {parked_by}; \
                         its events are not applied across the gap"
                    ),
                    attempts: 0,
                };
                self.record_dead_letter(tx, &letter).await?;
                stats.parked += 1;
                continue;
            }
            if checkpoint.retrying {
                retry::hold(tx, name, &key, Some(sequence), &item.message).await?;
                stats.held += 1;
                continue;
            }
            let expected = checkpoint.last_sequence + 1;
            let verdict = verdicts.get(&item.id()).cloned().or_else(|| {
                // A held event is never skipped: the ones before it are held too, or still
                // to be redelivered, and are then held behind it.
                (resumed.is_some() && sequence > expected).then(|| {
                    Verdict::Hold(format!(
                        "sequence gap: event {expected} has not arrived yet"
                    ))
                })
            });
            match verdict {
                Some(Verdict::Hold(error))
                    if checkpoint.retry_attempts + 1 < policy.max_attempts =>
                {
                    checkpoint.retrying = true;
                    checkpoint.retry_attempts += 1;
                    let attempts = checkpoint.retry_attempts;
                    let delay = policy.backoff(attempts + 1);
                    warn!(
                        aggregate_type = key.aggregate_type,
                        aggregate_id = key.aggregate_id,
                        sequence,
                        attempts,
                        retry_in = ?delay,
                        error,
                        "event failed; its aggregate is held for a retry"
                    );
                    retry::hold(tx, name, &key, Some(sequence), &item.message).await?;
                    retries.insert(
                        key,
                        RetryChange::Schedule {
                            delay,
                            attempts,
                            error,
                        },
                    );
                    stats.held += 1;
                    continue;
                }
                Some(verdict) => {
                    let attempts = checkpoint.retry_attempts + 1;
                    let error = match verdict {
                        Verdict::DeadLetter(error) => error,
                        Verdict::Hold(error) => {
                            format!("gave up after {attempts} attempts: {error}")
                        }
                    };
                    let letter = DeadLetter {
                        message: &item.message,
                        aggregate: Some(key.clone()),
                        sequence: Some(sequence),
                        reason: DeadLetterReason::Poison,
                        error,
                        attempts,
                    };
                    let id = self.record_dead_letter(tx, &letter).await?;
                    checkpoint::park(tx, name, &key, id).await?;
                    checkpoint.parked_by = Some(id);
                    checkpoint.retry_attempts = 0;
                    if checkpoint.retrying || resumed == Some(&key) {
                        retries.insert(key, RetryChange::Clear);
                    }
                    stats.poison += 1;
                    continue;
                }
                None => {}
            }
            if sequence > expected {
                // Never applied across a gap: the relay publishes at least once and, after
                // any failed delivery, publishes the aggregate's unacknowledged events again
                // from the first one, in order. The missing event and this one will come
                // again; applying this one now would turn the missing one into a
                // "duplicate" and lose its effect for good.
                warn!(
                    aggregate_type = key.aggregate_type,
                    aggregate_id = key.aggregate_id,
                    expected,
                    sequence,
                    "sequence gap: event skipped until the missing ones are redelivered"
                );
                stats.gaps += 1;
                continue;
            }
            match self
                .projection
                .apply(tx, event, self.settings.keyring.as_deref())
                .await
            {
                Ok(()) => {
                    checkpoint.last_sequence = sequence;
                    advanced.insert(key, sequence);
                    stats.applied += 1;
                }
                Err(ApplyError::Database(error)) if database_failure(&error) == Failure::Outage => {
                    return Err(Outage::Database(error));
                }
                Err(error) => {
                    let reason = format!("apply failed: {error}");
                    let verdict = match error.failure() {
                        Failure::Permanent => Verdict::DeadLetter(reason),
                        Failure::MayPass | Failure::Outage => Verdict::Hold(reason),
                    };
                    return Ok(TxOutcome::Refused {
                        id: item.id(),
                        verdict,
                    });
                }
            }
        }
        checkpoint::advance(tx, name, &advanced).await?;
        checkpoint::change_retries(tx, name, &retries).await?;
        checkpoint::notify(tx, name, &advanced).await?;
        Ok(TxOutcome::Committed(stats))
    }

    /// Records a dead letter in the transaction that moves past it.
    async fn record_dead_letter(
        &self,
        tx: &mut PgConnection,
        letter: &DeadLetter<'_>,
    ) -> Result<i64, sqlx::Error> {
        error!(
            reason = %letter.reason,
            error = letter.error,
            topic = letter.message.topic(),
            partition = letter.message.partition(),
            offset = letter.message.offset(),
            aggregate = ?letter.aggregate,
            "dead-lettering message"
        );
        dead_letter::record(tx, self.projection.name(), letter).await
    }

    /// The aggregate of a message that does not decode: its topic's aggregate type and its
    /// key (the relay keys by aggregate id).
    fn aggregate_of_raw(&self, message: &OwnedMessage) -> Option<AggregateKey> {
        let kind = self.decoder.topic_kind(message.topic())?;
        let id = std::str::from_utf8(message.key()?).ok()?;
        Some(AggregateKey {
            aggregate_type: kind.aggregate_type().to_owned(),
            aggregate_id: id.to_owned(),
        })
    }

    /// Bookkeeping after a commit: progress and counters.
    fn committed(&self, stats: &TxStats) {
        self.progress.send_modify(|p| {
            p.applied += stats.applied;
            p.duplicates += stats.duplicates;
            p.gaps += stats.gaps;
            p.held += stats.held;
            p.dead_lettered += stats.dead_lettered();
            p.transactions += 1;
        });
        let projection = self.projection.name();
        for (outcome, count) in [
            ("applied", stats.applied),
            ("duplicate", stats.duplicates),
            ("gap", stats.gaps),
            ("held", stats.held),
            ("parked", stats.parked),
            ("poison", stats.poison),
        ] {
            if count > 0 {
                metrics::counter!(
                    "keel_projector_events_total",
                    "projection" => projection,
                    "outcome" => outcome,
                )
                .increment(count);
            }
        }
        for (reason, count) in [
            (DeadLetterReason::Poison, stats.poison),
            (DeadLetterReason::Parked, stats.parked),
        ] {
            if count > 0 {
                metrics::counter!(
                    "keel_projector_dead_letters_total",
                    "projection" => projection,
                    "reason" => reason.to_string(),
                )
                .increment(count);
            }
        }
    }

    /// The age of a batch's events (occurred → visible in the read model). The lag per
    /// partition comes from librdkafka's statistics ([`ProjectorContext::stats`]).
    fn record_event_ages(&self, items: &[Item]) {
        let now = SystemClock.now();
        let age = metrics::histogram!(
            "keel_projector_event_age_seconds",
            "projection" => self.projection.name()
        );
        for event in items.iter().filter_map(Item::event) {
            let micros = (now - event.metadata.occurred_at)
                .num_microseconds()
                .unwrap_or(0)
                .max(0);
            age.record(micros as f64 / 1e6);
        }
    }

    /// Stores (for the next commit) the offset after each partition's last message.
    fn store_offsets<'m>(&self, messages: impl IntoIterator<Item = &'m OwnedMessage>) {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for message in messages {
            let position = next
                .entry((message.topic().to_owned(), message.partition()))
                .or_default();
            *position = (*position).max(message.offset() + 1);
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            if let Err(error) =
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                warn!(%error, topic, partition, "offset not stored");
            }
        }
        if let Err(error) = self.subscription.consumer().store_offsets(&list) {
            // A partition revoked meanwhile: its new owner re-reads from the committed
            // offset, and the checkpoints make that harmless.
            debug!(%error, "offsets not stored");
        }
        self.progress.send_modify(|p| {
            for (key, offset) in next {
                let position = p.positions.entry(key).or_default();
                *position = (*position).max(offset);
            }
        });
    }

    fn outage_backoff(&self, attempt: u32) -> Duration {
        let policy = RetryPolicy {
            max_attempts: u32::MAX,
            ..self.settings.retry
        };
        policy.backoff(attempt)
    }

    async fn pause(
        &self,
        delay: Duration,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        tokio::select! {
            () = shutdown.cancelled() => Err(Interrupted),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
