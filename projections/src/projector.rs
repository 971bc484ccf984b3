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
//! # When something fails
//!
//! - An **outage** (database, registry or broker unreachable, deadlock, missing table) is
//!   retried with backoff until it ends or shutdown is requested; it never dead-letters.
//! - A **poison** message (undecodable, or refused by the read model for its data) is
//!   isolated: the clean events before it are committed, it is retried alone up to
//!   `max_attempts` times with backoff, then recorded in `read_model.dead_letters` (and
//!   copied to the dead-letter topic) and its aggregate is **parked**: the aggregate's later
//!   events are dead-lettered as `parked` rather than applied across the gap. Every other
//!   aggregate keeps flowing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ops::clock::{Clock, SystemClock};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schemas::AggregateKind;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, instrument, warn};

use crate::config::{KafkaSettings, ProjectorSettings, RetryPolicy};
use crate::dead_letter::{self, DeadLetter, DeadLetterPublisher, DeadLetterReason};
use crate::decode::{DecodeError, EventDecoder};
use crate::event::{AggregateKey, ProjectedEvent};
use crate::projection::{ApplyError, Projection, is_data_error};
use crate::{checkpoint, db};
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

/// One decoded (or undecodable) message of a batch.
struct Item {
    message: OwnedMessage,
    decoded: Result<ProjectedEvent, DecodeError>,
}

impl Item {
    fn event(&self) -> Option<&ProjectedEvent> {
        self.decoded.as_ref().ok()
    }
}

/// What one transaction did.
enum TxOutcome {
    Committed(TxStats),
    /// The event at this index of the run is refused for its data; nothing was committed.
    PoisonAt {
        index: usize,
        error: ApplyError,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct TxStats {
    applied: u64,
    duplicates: u64,
    gaps: u64,
    parked: u64,
}

/// A running projection: its consumer, decoder and dead-letter publisher.
pub struct Projector {
    projection: Projection,
    pool: PgPool,
    consumer: StreamConsumer<ProjectorContext>,
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
        topics::ensure_topics(&kafka.brokers, &wanted, kafka.topic_partitions).await?;

        let group_id = settings.group_id(projection);
        let context = ProjectorContext {
            projection: projection.name(),
            rebalances: AtomicU64::new(0),
        };
        let consumer: StreamConsumer<ProjectorContext> = ClientConfig::new()
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
            // librdkafka's default (500 ms) is how long a fetch may wait for data; with a
            // broker that answers only at the deadline it becomes the read side's latency.
            .set("fetch.wait.max.ms", "10")
            .create_with_context(context)?;
        let topic_names: Vec<String> = sources.keys().cloned().collect();
        let topic_refs: Vec<&str> = topic_names.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs)?;

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
            consumer,
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
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = sweep.tick(), if dead_letters_pending => {
                    dead_letters_pending = self.publish_dead_letters().await;
                    continue;
                }
                // `recv` is cancellation safe: no message is lost when another branch wins.
                received = self.consumer.recv() => received,
            };
            let message = match first {
                Ok(message) => message.detach(),
                Err(error) => {
                    warn!(%error, "consumer error");
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
                Ok(dead_lettered) => {
                    if dead_lettered || dead_letters_pending {
                        dead_letters_pending = self.publish_dead_letters().await;
                    }
                }
                Err(Interrupted) => break,
            }
        }
        info!("stopping: committing the offsets of applied messages");
        commit_stored_offsets(&self.consumer, self.projection.name());
        self.consumer.unsubscribe();
        if dead_letters_pending {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.publish_dead_letters()).await;
        }
        // Closing the consumer leaves the group; librdkafka may block while doing so.
        let consumer = self.consumer;
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
        let rebalances = self.consumer.context().rebalances.load(Ordering::SeqCst);
        let mut batch = vec![first];
        let deadline = Instant::now() + self.settings.batch_linger;
        while batch.len() < self.settings.batch_size {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                Ok(Err(error)) => {
                    warn!(%error, "consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        if self.consumer.context().rebalances.load(Ordering::SeqCst) != rebalances {
            let assignment = self.consumer.assignment().unwrap_or_default();
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

    /// Decodes and applies a batch. Returns whether messages were dead-lettered.
    #[instrument(skip_all, fields(
        projection = self.projection.name(),
        messages = batch.len(),
        applied,
        duplicates,
        dead_lettered,
    ))]
    async fn process(
        &self,
        batch: Vec<OwnedMessage>,
        shutdown: &CancellationToken,
    ) -> Result<bool, Interrupted> {
        let before = self.progress.borrow().clone();
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
        let mut start = 0;
        while start < items.len() {
            let end = items[start..]
                .iter()
                .position(|item| item.decoded.is_err())
                .map_or(items.len(), |offset| start + offset);
            if end > start {
                self.apply_run(&items[start..end], shutdown).await?;
                start = end;
            } else {
                self.retry_undecodable(&mut items[start], shutdown).await?;
                start += 1;
            }
        }
        let after = self.progress.borrow().clone();
        let span = tracing::Span::current();
        span.record("applied", after.applied - before.applied);
        span.record("duplicates", after.duplicates - before.duplicates);
        span.record("dead_lettered", after.dead_lettered - before.dead_lettered);
        Ok(after.dead_lettered > before.dead_lettered)
    }

    /// Decodes, waiting out registry outages.
    async fn decode(
        &self,
        message: &OwnedMessage,
        shutdown: &CancellationToken,
    ) -> Result<Result<ProjectedEvent, DecodeError>, Interrupted> {
        let mut attempt = 1;
        loop {
            match self
                .decoder
                .decode_keyed(message)
                .await
                .map(|(metadata, event)| ProjectedEvent { metadata, event })
            {
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    warn!(%error, attempt, "schema registry unavailable; retrying");
                    self.pause(self.outage_backoff(attempt), shutdown).await?;
                }
                outcome => return Ok(outcome),
            }
        }
    }

    /// Applies decoded items, isolating poison events.
    async fn apply_run(
        &self,
        run: &[Item],
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let mut start = 0;
        let mut end = run.len();
        while start < run.len() {
            match self.transaction(&run[start..end], shutdown).await? {
                TxOutcome::Committed(stats) => {
                    self.committed(&run[start..end], stats);
                    start = end;
                    end = run.len();
                }
                TxOutcome::PoisonAt { index: 0, error } => {
                    self.retry_poison(&run[start], error, shutdown).await?;
                    start += 1;
                    end = run.len();
                }
                // Commit the clean events before the poison on their own first.
                TxOutcome::PoisonAt { index, .. } => end = start + index,
            }
        }
        Ok(())
    }

    /// Retries a poison event alone, then dead-letters it.
    async fn retry_poison(
        &self,
        item: &Item,
        first_error: ApplyError,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let policy = self.settings.retry;
        let mut error = first_error;
        for attempt in 2..=policy.max_attempts {
            warn!(%error, attempt, offset = item.message.offset(), "event refused; retrying");
            self.pause(policy.backoff(attempt), shutdown).await?;
            match self
                .transaction(std::slice::from_ref(item), shutdown)
                .await?
            {
                TxOutcome::Committed(stats) => {
                    self.committed(std::slice::from_ref(item), stats);
                    return Ok(());
                }
                TxOutcome::PoisonAt { error: again, .. } => error = again,
            }
        }
        let event = item.event();
        let letter = DeadLetter {
            message: &item.message,
            aggregate: event.map(ProjectedEvent::aggregate),
            sequence: event.map(ProjectedEvent::sequence),
            reason: DeadLetterReason::Poison,
            error: format!("apply failed: {error}"),
            attempts: policy.max_attempts,
        };
        self.dead_letter(letter, shutdown).await
    }

    /// Retries decoding a message (the registry may learn its schema), then dead-letters it.
    async fn retry_undecodable(
        &self,
        item: &mut Item,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let policy = self.settings.retry;
        for attempt in 2..=policy.max_attempts {
            if let Err(error) = &item.decoded {
                warn!(%error, attempt, offset = item.message.offset(), "message does not decode; retrying");
            }
            self.pause(policy.backoff(attempt), shutdown).await?;
            self.decoder.forget_failures();
            item.decoded = self.decode(&item.message, shutdown).await?;
            if item.decoded.is_ok() {
                return self.apply_run(std::slice::from_ref(item), shutdown).await;
            }
        }
        let error = match &item.decoded {
            Err(error) => format!("decode failed: {error}"),
            Ok(_) => String::new(),
        };
        let letter = DeadLetter {
            message: &item.message,
            aggregate: self.aggregate_of_raw(&item.message),
            sequence: header(&item.message, "sequence").and_then(|s| s.parse().ok()),
            reason: DeadLetterReason::Poison,
            error,
            attempts: policy.max_attempts,
        };
        self.dead_letter(letter, shutdown).await
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

    /// Records a dead letter and parks its aggregate, in one transaction, then moves past
    /// the message.
    async fn dead_letter(
        &self,
        letter: DeadLetter<'_>,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        error!(
            reason = %letter.reason,
            error = letter.error,
            topic = letter.message.topic(),
            partition = letter.message.partition(),
            offset = letter.message.offset(),
            aggregate = ?letter.aggregate,
            "dead-lettering message"
        );
        let name = self.projection.name();
        metrics::counter!(
            "keel_projector_dead_letters_total",
            "projection" => name,
            "reason" => letter.reason.to_string(),
        )
        .increment(1);
        let mut attempt = 1;
        loop {
            let outcome = async {
                let mut tx = self.pool.begin().await?;
                db::enter_live_transaction(&mut tx, self.projection).await?;
                let id = dead_letter::record(&mut tx, name, &letter).await?;
                if let Some(key) = &letter.aggregate {
                    checkpoint::park(&mut tx, name, key, id).await?;
                }
                tx.commit().await
            }
            .await;
            match outcome {
                Ok(()) => break,
                Err(error) => {
                    attempt += 1;
                    warn!(%error, attempt, "recording the dead letter failed; retrying");
                    self.pause(self.outage_backoff(attempt), shutdown).await?;
                }
            }
        }
        self.store_offsets(std::slice::from_ref(letter.message));
        self.progress.send_modify(|p| p.dead_lettered += 1);
        Ok(())
    }

    /// Runs [`Self::try_transaction`], waiting out outages.
    async fn transaction(
        &self,
        run: &[Item],
        shutdown: &CancellationToken,
    ) -> Result<TxOutcome, Interrupted> {
        let mut attempt = 1;
        loop {
            match self.try_transaction(run).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) => {
                    attempt += 1;
                    error!(%error, attempt, "read-model transaction failed; retrying");
                    self.pause(self.outage_backoff(attempt), shutdown).await?;
                }
            }
        }
    }

    /// Applies a run of decoded events in one transaction. `Err` is an outage; a poison
    /// event is an `Ok(PoisonAt)` with nothing committed.
    async fn try_transaction(&self, run: &[Item]) -> Result<TxOutcome, sqlx::Error> {
        let name = self.projection.name();
        let events: Vec<&ProjectedEvent> = run.iter().filter_map(Item::event).collect();
        let keys: BTreeSet<AggregateKey> = events.iter().map(|e| e.aggregate()).collect();
        let mut tx = self.pool.begin().await?;
        db::enter_live_transaction(&mut tx, self.projection).await?;
        let mut checkpoints = checkpoint::lock(&mut tx, name, &keys).await?;
        let mut advanced = HashMap::new();
        let mut stats = TxStats::default();
        for (index, item) in run.iter().enumerate() {
            let Some(event) = item.event() else { continue };
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
                dead_letter::record(&mut tx, name, &letter).await?;
                stats.parked += 1;
                continue;
            }
            if sequence > checkpoint.last_sequence + 1 {
                // Never applied across a gap: the relay publishes at least once and, after
                // any failed delivery, publishes the aggregate's unacknowledged events again
                // from the first one, in order. The missing event and this one will come
                // again; applying this one now would turn the missing one into a
                // "duplicate" and lose its effect for good.
                warn!(
                    aggregate_type = key.aggregate_type,
                    aggregate_id = key.aggregate_id,
                    expected = checkpoint.last_sequence + 1,
                    sequence,
                    "sequence gap: event skipped until the missing ones are redelivered"
                );
                stats.gaps += 1;
                continue;
            }
            match self.projection.apply(&mut tx, event).await {
                Ok(()) => {
                    checkpoint.last_sequence = sequence;
                    advanced.insert(key, sequence);
                    stats.applied += 1;
                }
                Err(ApplyError::Database(error)) if !is_data_error(&error) => return Err(error),
                Err(error) => return Ok(TxOutcome::PoisonAt { index, error }),
            }
        }
        checkpoint::advance(&mut tx, name, &advanced).await?;
        checkpoint::notify(&mut tx, name, &advanced).await?;
        tx.commit().await?;
        Ok(TxOutcome::Committed(stats))
    }

    /// Bookkeeping after a commit: offsets, progress.
    fn committed(&self, run: &[Item], stats: TxStats) {
        let messages: Vec<&OwnedMessage> = run.iter().map(|item| &item.message).collect();
        self.store_offsets(messages.iter().copied());
        self.record_metrics(run, &stats);
        self.progress.send_modify(|p| {
            p.applied += stats.applied;
            p.duplicates += stats.duplicates;
            p.gaps += stats.gaps;
            p.dead_lettered += stats.parked;
            p.transactions += 1;
        });
    }

    /// `keel_projector_events_total{projection, outcome}` and the age of applied events
    /// (occurred → visible in the read model). The lag per partition comes from
    /// librdkafka's statistics ([`ProjectorContext::stats`]).
    fn record_metrics(&self, run: &[Item], stats: &TxStats) {
        let projection = self.projection.name();
        for (outcome, count) in [
            ("applied", stats.applied),
            ("duplicate", stats.duplicates),
            ("gap", stats.gaps),
            ("parked", stats.parked),
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
        let now = SystemClock.now();
        let age =
            metrics::histogram!("keel_projector_event_age_seconds", "projection" => projection);
        for event in run.iter().filter_map(Item::event) {
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
        if let Err(error) = self.consumer.store_offsets(&list) {
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
