//! The saga process: a Kafka consumer that turns events into transitions, and a dispatcher
//! that sends the decided commands and sweeps deadlines. Both run in [`SagaRunner::run`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rand::Rng;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schemas::AggregateKind;
use schemas::subscription::{self, Subscription};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};
use uuid::Uuid;

use crate::client::{CommandClient, Delivery};
use crate::config::SagaConfig;
use crate::decode::{DecodeError, EventDecoder, is_replay};
use crate::intake::{self, Received, log_transition};
use crate::machine::{Input, SagaCommand, SagaStatus};
use crate::store::{self, Lock, SagaKey, StoreError};
use ops::clock::{Clock, SystemClock};
use schemas::topics::{TopicError, ensure_aggregate_topics};

/// How often `keel_saga_flows` is refreshed from the saga table.
const FLOW_GAUGE_EVERY: Duration = Duration::from_secs(5);

/// Sagas handled per dispatcher round and per deadline sweep.
const ROUND_LIMIT: i64 = 100;
/// Pause before retrying a message after a database or registry outage.
const OUTAGE_RETRY: Duration = Duration::from_millis(500);

/// A test seam: called before each command is sent, and awaited. Production runs without
/// one; tests use it to stop the saga between two steps.
pub trait DispatchHook: Send + Sync + fmt::Debug {
    /// About to send `command` for the saga of `order_id`.
    fn before_dispatch<'a>(&'a self, order_id: Uuid, command: &'a SagaCommand)
    -> BoxFuture<'a, ()>;
}

/// The saga could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Kafka client creation or subscription failed.
    #[error("Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    /// Topics are missing and could not be created.
    #[error(transparent)]
    Topics(#[from] TopicError),
    /// The registry client could not be built.
    #[error("schema registry client: {0}")]
    Registry(#[from] schema_registry_converter::error::SRCError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Handling a message failed in a way that waiting may cure.
#[derive(Debug, thiserror::Error)]
enum Outage {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Registry(DecodeError),
}

struct SagaContext;

impl ClientContext for SagaContext {}

impl ConsumerContext for SagaContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            commit_stored_offsets(consumer);
        }
    }
}

fn commit_stored_offsets<C: ConsumerContext>(consumer: &impl Consumer<C>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => warn!(%error, "committing saga offsets failed"),
    }
}

/// One saga process. Several may run in one consumer group: every transition happens
/// under the saga's row lock and every event passes its aggregate's checkpoint.
pub struct SagaRunner {
    config: SagaConfig,
    pool: PgPool,
    subscription: Subscription<SagaContext>,
    decoder: EventDecoder,
    client: CommandClient,
    clock: Arc<dyn Clock>,
    hook: Option<Arc<dyn DispatchHook>>,
    wake: Notify,
}

impl fmt::Debug for SagaRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaRunner")
            .field("config", &self.config)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl SagaRunner {
    /// Creates missing topics and subscribes the saga's consumer group to the order,
    /// payment and inventory topics. The saga tables must exist (command-api migrations).
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn start(
        config: SagaConfig,
        pool: PgPool,
        hook: Option<Arc<dyn DispatchHook>>,
    ) -> Result<Self, StartError> {
        let topics = ensure_aggregate_topics(
            &config.kafka_brokers,
            &config.topic_prefix,
            config.topic_partitions,
            config.topic_replication_factor,
        )
        .await?;
        let mut consumer_config = ClientConfig::new();
        if let Some(instance) = &config.instance_id {
            consumer_config.set(
                "group.instance.id",
                subscription::static_member_id(instance, &AggregateKind::ALL),
            );
        }
        consumer_config
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("group.id", &config.group_id)
            .set("client.id", "keel-saga")
            .set("auto.offset.reset", config.start_from.as_str())
            // Offsets are stored by hand once the transition is committed.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout.as_millis() / 3)
                    .max(100)
                    .to_string(),
            )
            .set("socket.connection.setup.timeout.ms", "5000")
            // The broker answers a waiting fetch as soon as a message arrives: the wait is
            // what an idle consumer costs, not the flow's latency.
            .set(
                "fetch.wait.max.ms",
                config.fetch_wait.as_millis().to_string(),
            );
        let subscription = Subscription::new(consumer_config, topics, || SagaContext)?;
        let kinds: HashMap<String, AggregateKind> = AggregateKind::ALL
            .iter()
            .map(|kind| (kind.topic(&config.topic_prefix), *kind))
            .collect();
        let decoder = EventDecoder::new(&config.schema_registry_url, kinds)?;
        let client = CommandClient::new(
            &config.command_api_url,
            config.http_timeout,
            config.command_api_token.clone(),
        )?;
        info!(group_id = %config.group_id, instance_id = ?config.instance_id, topics = ?subscription.topics(), command_api = %config.command_api_url, "saga subscribed");
        Ok(Self {
            config,
            pool,
            subscription,
            decoder,
            client,
            clock: Arc::new(SystemClock),
            hook,
            wake: Notify::new(),
        })
    }

    /// Replaces the clock (deadlines are computed from it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Consumes and dispatches until `shutdown`, then commits the offsets of what was
    /// applied and leaves the group.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = info_span!("saga", group_id = %self.config.group_id);
        async {
            tokio::join!(self.consume(&shutdown), self.dispatch(&shutdown));
            info!("stopping: committing the offsets of applied events");
            let consumer = self.subscription.consumer();
            commit_stored_offsets(&*consumer);
            consumer.unsubscribe();
            drop(self.subscription);
            // Closing leaves the group; librdkafka may block meanwhile.
            let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
            info!("saga stopped");
        }
        .instrument(span)
        .await;
    }

    async fn consume(&self, shutdown: &CancellationToken) {
        let mut fatal_check = subscription::fatal_check();
        loop {
            let consumer = self.subscription.consumer();
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = fatal_check.tick() => {
                    self.subscription.renew_if_fatal().await;
                    continue;
                }
                received = consumer.recv() => received,
            };
            let message = match received {
                Ok(message) => message.detach(),
                Err(error) => {
                    warn!(%error, "consumer error");
                    self.subscription.renew_if_fatal().await;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
            };
            let batch = subscription::fill_batch(
                &consumer,
                message,
                self.config.batch_size,
                self.config.batch_linger,
            )
            .await;
            if !self.handle_batch(&batch, shutdown).await {
                return;
            }
            self.store_offsets(&batch);
        }
    }

    /// Applies a batch in one transaction. Should that fail, applies its events one
    /// transaction each, retrying each until it succeeds: a lasting outage then stops the
    /// saga at the event it cannot apply, and a deadlock with another instance (their
    /// batches lock sagas in their own orders) cannot happen twice. False if shutdown
    /// came first.
    async fn handle_batch(&self, batch: &[OwnedMessage], shutdown: &CancellationToken) -> bool {
        let Err(outage) = self.apply(batch).await else {
            return true;
        };
        warn!(error = %outage, messages = batch.len(), "saga cannot apply a batch; applying its events one at a time");
        for message in batch {
            while let Err(outage) = self.apply(std::slice::from_ref(message)).await {
                warn!(error = %outage, topic = message.topic(), offset = message.offset(), "saga cannot handle an event yet; retrying");
                self.decoder.forget_failures();
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(OUTAGE_RETRY) => {}
                }
            }
        }
        true
    }

    /// Stores, per partition, the offset after the batch's last message: committed with
    /// the next automatic commit.
    fn store_offsets(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for message in batch {
            let offset = next
                .entry((message.topic(), message.partition()))
                .or_default();
            *offset = (*offset).max(message.offset() + 1);
        }
        let mut list = TopicPartitionList::new();
        let stored = next
            .into_iter()
            .try_for_each(|((topic, partition), offset)| {
                list.add_partition_offset(topic, partition, Offset::Offset(offset))
            })
            .and_then(|()| self.subscription.consumer().store_offsets(&list));
        if let Err(error) = stored {
            // A partition revoked meanwhile: its next owner re-reads from the committed
            // offset, and the checkpoints make that harmless.
            debug!(%error, "offsets not stored");
        }
    }

    /// Decodes `messages` and applies them in one transaction (see [`crate::intake`]).
    /// Replays and undecodable messages are skipped.
    async fn apply(&self, messages: &[OwnedMessage]) -> Result<(), Outage> {
        let mut events = Vec::with_capacity(messages.len());
        for message in messages {
            if is_replay(message) {
                debug!(
                    topic = message.topic(),
                    offset = message.offset(),
                    "replayed event ignored"
                );
                continue;
            }
            match self.decoder.decode(message).await {
                Ok((metadata, event)) => events.push(Received { metadata, event }),
                Err(error) if error.is_transient() => return Err(Outage::Registry(error)),
                // The projectors dead-letter poison; the saga only needs to not act on it.
                Err(error) => {
                    error!(%error, topic = message.topic(), offset = message.offset(), "undecodable event skipped by the saga");
                }
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let outcome =
            intake::apply(&mut tx, events, self.clock.now(), self.config.step_timeout).await?;
        tx.commit().await?;
        debug!(
            applied = outcome.applied,
            duplicates = outcome.duplicates,
            gaps = outcome.gaps,
            "saga batch committed"
        );
        if outcome.queued {
            self.wake.notify_one();
        }
        Ok(())
    }

    async fn dispatch(&self, shutdown: &CancellationToken) {
        let mut flows_reported: Option<std::time::Instant> = None;
        loop {
            if flows_reported.is_none_or(|at| at.elapsed() >= FLOW_GAUGE_EVERY) {
                self.report_flows().await;
                flows_reported = Some(std::time::Instant::now());
            }
            if let Err(error) = self.sweep_deadlines().await {
                warn!(%error, "deadline sweep failed");
            }
            if let Err(error) = self.dispatch_due().await {
                warn!(%error, "dispatching saga commands failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// Sets `keel_saga_flows{status}` for every status (0 for the empty ones).
    async fn report_flows(&self) {
        match store::count_by_status(&self.pool).await {
            Ok(counts) => {
                for status in SagaStatus::ALL {
                    let flows = counts
                        .iter()
                        .find(|(name, _)| name == status.as_str())
                        .map_or(0, |(_, flows)| *flows);
                    metrics::gauge!("keel_saga_flows", "status" => status.as_str())
                        .set(flows as f64);
                }
            }
            Err(error) => warn!(%error, "counting saga flows failed"),
        }
    }

    async fn sweep_deadlines(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        for order_id in store::sagas_past_deadline(&self.pool, now, ROUND_LIMIT).await? {
            let mut tx = self.pool.begin().await?;
            let Some(mut saga) =
                store::lock_saga(&mut tx, SagaKey::Order(order_id), Lock::SkipLocked).await?
            else {
                continue;
            };
            if saga.deadline.is_none_or(|deadline| deadline > now) {
                continue;
            }
            let last_error = store::last_pending_error(&mut tx, order_id).await?;
            let before = saga.status;
            let decision = saga.handle(
                Input::DeadlinePassed { last_error },
                now,
                self.config.step_timeout,
            );
            store::save_saga(&mut tx, &saga).await?;
            let traceparent = store::flow_traceparent(&mut tx, order_id).await?;
            store::queue_commands(&mut tx, order_id, &decision, traceparent.as_deref()).await?;
            tx.commit().await?;
            log_transition(&saga, before, "deadline");
        }
        Ok(())
    }

    async fn dispatch_due(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        for order_id in store::sagas_with_due_commands(&self.pool, now, ROUND_LIMIT).await? {
            self.dispatch_saga(order_id).await?;
        }
        Ok(())
    }

    /// Sends a saga's due commands in order, under its row lock: no other transition of
    /// this saga can interleave, so a command superseded by compensation is never sent.
    async fn dispatch_saga(&self, order_id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(mut saga) =
            store::lock_saga(&mut tx, SagaKey::Order(order_id), Lock::SkipLocked).await?
        else {
            return Ok(());
        };
        while let Some(queued) = store::next_pending(&mut tx, order_id).await? {
            let now = self.clock.now();
            if queued.next_attempt_at > now {
                break;
            }
            if let Some(hook) = &self.hook {
                hook.before_dispatch(order_id, &queued.command).await;
            }
            let step = queued.command.step();
            // A child of the trace that caused the command (the dispatcher's own span
            // belongs to no flow).
            let span = info_span!("saga_command", %order_id, step);
            ops::telemetry::set_parent(&span, queued.traceparent.as_deref());
            match self.client.send(&saga, &queued).instrument(span).await {
                Delivery::Accepted => {
                    debug!(%order_id, step, "command accepted");
                    store::mark_accepted(&mut tx, queued.id).await?;
                }
                Delivery::Rejected { code } => {
                    info!(%order_id, step, code, "command refused");
                    store::mark_rejected(&mut tx, queued.id, &code).await?;
                    let before = saga.status;
                    let decision = saga.handle(
                        Input::Rejected {
                            command: queued.command,
                            code,
                        },
                        now,
                        self.config.step_timeout,
                    );
                    store::save_saga(&mut tx, &saga).await?;
                    store::queue_commands(
                        &mut tx,
                        order_id,
                        &decision,
                        queued.traceparent.as_deref(),
                    )
                    .await?;
                    log_transition(&saga, before, "refusal");
                }
                Delivery::Transient { error } => {
                    let delay = self.retry_delay(queued.attempts);
                    warn!(%order_id, step, error, attempts = queued.attempts + 1, retry_in_ms = delay.as_millis(), "command not answered; will retry");
                    store::mark_retry(&mut tx, queued.id, later(now, delay), &error).await?;
                    break;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Exponential backoff with full jitter, never below one poll interval.
    fn retry_delay(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
        let ceiling = self
            .config
            .retry_base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.config.retry_max);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis)).max(self.config.poll_interval)
    }
}

fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero())
}
