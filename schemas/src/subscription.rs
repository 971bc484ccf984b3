//! A consumer group subscription that outlives its consumer. librdkafka gives up on a
//! consumer for good after a fatal error (for one, a static member fenced by its own rejoin
//! once the broker restarted): it delivers nothing ever again. A [`Subscription`] replaces
//! such a consumer by a new one in the same group, which resumes from the committed
//! offsets; what the old one applied but could not commit comes again, and the readers'
//! checkpoints skip it.
//!
//! A fatal error does not always reach `recv` as an error: librdkafka may report it through
//! the client's error callback only, and then `recv` waits forever. So the readers also
//! look at the consumer's fatal-error state every [`FATAL_CHECK`], with
//! [`fatal_check`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::OwnedMessage;
use tracing::{error, info, warn};

/// The `group.instance.id` of a static member named `name` that reads the topics of
/// `kinds`: the name followed by the topics' suffixes, sorted (`local-saga.customer_inventory_order_payment`).
///
/// The subscription is part of the name because a static member that comes back with a
/// different subscription keeps the assignment it had (seen with Apache Kafka 4.3 and
/// librdkafka: a projector upgraded to read one more topic got none of its partitions until
/// it was restarted once more). Under a new name it joins as a new member and gets a fresh
/// assignment; the old name's partitions move once its session times out.
pub fn static_member_id(name: &str, kinds: &[crate::AggregateKind]) -> String {
    let mut suffixes: Vec<&str> = kinds.iter().map(|kind| kind.topic_suffix()).collect();
    suffixes.sort_unstable();
    suffixes.dedup();
    format!("{name}.{}", suffixes.join("_"))
}

/// How often a reader looks for a fatal error that `recv` did not report.
pub const FATAL_CHECK: Duration = Duration::from_secs(1);

/// A timer for the fatal-error check: select on its `tick()` beside `recv` and call
/// [`Subscription::renew_if_fatal`] when it fires.
pub fn fatal_check() -> tokio::time::Interval {
    let mut interval = tokio::time::interval(FATAL_CHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// `config` subscribed to `topics`, with a context made by `context` for each consumer.
pub struct Subscription<C: ConsumerContext + 'static> {
    config: ClientConfig,
    topics: Vec<String>,
    context: Box<dyn Fn() -> C + Send + Sync>,
    consumer: Mutex<Arc<StreamConsumer<C>>>,
}

impl<C: ConsumerContext + 'static> std::fmt::Debug for Subscription<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl<C: ConsumerContext + 'static> Subscription<C> {
    /// Creates the first consumer and subscribes it.
    ///
    /// # Errors
    /// The client could not be created or subscribed (a bad setting).
    pub fn new(
        config: ClientConfig,
        topics: Vec<String>,
        context: impl Fn() -> C + Send + Sync + 'static,
    ) -> KafkaResult<Self> {
        let context: Box<dyn Fn() -> C + Send + Sync> = Box::new(context);
        let consumer = Arc::new(subscribe(&config, &topics, context())?);
        Ok(Self {
            config,
            topics,
            context,
            consumer: Mutex::new(consumer),
        })
    }

    /// The current consumer.
    pub fn consumer(&self) -> Arc<StreamConsumer<C>> {
        Arc::clone(&self.consumer.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The subscribed topics.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Call after a consumer error, and every [`FATAL_CHECK`]: when the consumer has hit a fatal error, it is
    /// replaced by a new one (the old one is closed off the async threads). Returns
    /// whether it was.
    pub async fn renew_if_fatal(&self) -> bool {
        let current = self.consumer();
        let Some((code, reason)) = current.client().fatal_error() else {
            return false;
        };
        error!(
            ?code,
            reason, "fatal Kafka consumer error; replacing the consumer"
        );
        match subscribe(&self.config, &self.topics, (self.context)()) {
            Ok(consumer) => {
                let old = std::mem::replace(
                    &mut *self.consumer.lock().unwrap_or_else(PoisonError::into_inner),
                    Arc::new(consumer),
                );
                drop(current);
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                info!("consumer replaced; resuming from the committed offsets");
                true
            }
            Err(error) => {
                error!(%error, "replacing the consumer failed; will try again");
                false
            }
        }
    }
}

/// Completes a batch started by `first`: more messages, in the order received (which keeps
/// each partition's order), until the batch holds `max` or `linger` has passed. A consumer
/// error ends the batch early; the next `recv` reports it again if it lasts.
pub async fn fill_batch<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    first: OwnedMessage,
    max: usize,
    linger: Duration,
) -> Vec<OwnedMessage> {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(error)) => {
                warn!(%error, "consumer error");
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

fn subscribe<C: ConsumerContext + 'static>(
    config: &ClientConfig,
    topics: &[String],
    context: C,
) -> KafkaResult<StreamConsumer<C>> {
    let consumer: StreamConsumer<C> = config.create_with_context(context)?;
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AggregateKind;

    #[test]
    fn a_static_member_id_names_its_subscription_in_a_stable_order() {
        assert_eq!(
            static_member_id(
                "pod-1.orders",
                &[
                    AggregateKind::Payment,
                    AggregateKind::Order,
                    AggregateKind::Payment
                ]
            ),
            "pod-1.orders.order_payment"
        );
        assert_ne!(
            static_member_id("pod-1", &[AggregateKind::Order]),
            static_member_id("pod-1", &[AggregateKind::Order, AggregateKind::Customer])
        );
    }
}
