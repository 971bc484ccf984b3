//! Read-your-writes: which aggregates the projectors have just advanced, and bounded waits
//! for a read model to reach a version.
//!
//! Projectors `NOTIFY` on [`CHANGES_CHANNEL`] when a batch commits, one payload per advanced
//! aggregate: `<projection>:<aggregate type>:<sequence>:<aggregate id>`. One task per
//! process ([`ChangeFeed::spawn`]) holds the `LISTEN` connection and fans notifications out
//! over a broadcast channel; each waiting request filters for its own aggregate.
//!
//! Notifications are only a wake-up: a waiter always re-reads the row, and re-reads every
//! `recheck_interval` anyway, because a notification can be lost (PostgreSQL does not
//! queue them for a listener that is reconnecting, and a slow waiter can lag behind the
//! broadcast buffer). Losing one therefore costs latency, never correctness.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The channel projectors notify on (`projections::checkpoint::CHANGES_CHANNEL`).
pub const CHANGES_CHANNEL: &str = "keel_read_model";

/// Notifications buffered per waiter before it lags (and then simply re-reads).
const BROADCAST_CAPACITY: usize = 1024;
/// First delay before reconnecting the listener; doubles up to [`MAX_RECONNECT_DELAY`].
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(100);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// One aggregate advanced by one projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The projection that applied the events (`orders`, `stock`, `payments`).
    pub projection: String,
    /// The source aggregate's type (`order`, `inventory`, `payment`).
    pub aggregate_type: String,
    /// The last sequence of that aggregate the projection has applied.
    pub sequence: i64,
    /// The source aggregate's id.
    pub aggregate_id: String,
}

impl Change {
    /// Parses `<projection>:<aggregate type>:<sequence>:<aggregate id>`; the id is last so
    /// that it may contain `:`.
    pub fn parse(payload: &str) -> Option<Self> {
        let mut parts = payload.splitn(4, ':');
        let projection = parts.next()?;
        let aggregate_type = parts.next()?;
        let sequence = parts.next()?.parse().ok()?;
        let aggregate_id = parts.next()?;
        Some(Self {
            projection: projection.to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            sequence,
            aggregate_id: aggregate_id.to_owned(),
        })
    }

    fn reaches(&self, target: &WaitTarget<'_>, min_version: i64) -> bool {
        self.sequence >= min_version
            && self.aggregate_id == target.aggregate_id
            && self.aggregate_type == target.aggregate_type
            && self.projection == target.projection
    }
}

/// What the feed broadcasts.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A projection advanced an aggregate.
    Advanced(Arc<Change>),
    /// The listener lost its connection: notifications may have been missed, every waiter
    /// should re-read.
    Resync,
}

/// The process-wide feed of read-model changes.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Signal>,
}

impl ChangeFeed {
    /// Starts the listener task on a connection of `pool`'s database; it reconnects with
    /// backoff until `stop` is cancelled.
    pub fn spawn(pool: PgPool, stop: CancellationToken) -> (Self, JoinHandle<()>) {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        let task = tokio::spawn(listen(pool, sender.clone(), stop));
        (Self { sender }, task)
    }

    /// A feed with no listener behind it: waiters rely on re-reading alone.
    pub fn detached() -> Self {
        Self {
            sender: broadcast::channel(1).0,
        }
    }

    /// Signals from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.sender.subscribe()
    }
}

async fn listen(pool: PgPool, sender: broadcast::Sender<Signal>, stop: CancellationToken) {
    let mut delay = MIN_RECONNECT_DELAY;
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = connect(&pool) => connected,
        };
        match connected {
            Ok(mut listener) => {
                tracing::info!(
                    channel = CHANGES_CHANNEL,
                    "listening for read-model changes"
                );
                delay = MIN_RECONNECT_DELAY;
                // Whatever was notified while no connection listened is lost: wake everyone.
                let _ = sender.send(Signal::Resync);
                let error = tokio::select! {
                    () = stop.cancelled() => return,
                    error = forward(&mut listener, &sender) => error,
                };
                match error {
                    Some(error) => {
                        tracing::warn!(error = %error, "read-model change listener failed")
                    }
                    None => tracing::warn!("read-model change listener lost its connection"),
                }
                let _ = sender.send(Signal::Resync);
            }
            Err(error) => {
                tracing::warn!(error = %error, retry_in = ?delay, "cannot listen for read-model changes");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications until the connection is lost (`None`) or fails. A fresh listener
/// is built after either rather than relying on `PgListener`'s silent reconnect, so each
/// gap is logged and announced with [`Signal::Resync`].
async fn forward(
    listener: &mut PgListener,
    sender: &broadcast::Sender<Signal>,
) -> Option<sqlx::Error> {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match Change::parse(notification.payload()) {
                // No receivers is normal: nobody is waiting right now.
                Some(change) => {
                    let _ = sender.send(Signal::Advanced(Arc::new(change)));
                }
                None => {
                    tracing::warn!(
                        payload = notification.payload(),
                        "ignoring malformed read-model notification"
                    );
                }
            },
            Ok(None) => return None,
            Err(error) => return Some(error),
        }
    }
}

/// The row a wait is for: one source aggregate in one projection.
#[derive(Debug, Clone, Copy)]
pub struct WaitTarget<'a> {
    /// The projection maintaining the row.
    pub projection: &'static str,
    /// The source aggregate's type.
    pub aggregate_type: &'static str,
    /// The source aggregate's id (a UUID's hyphenated form, or the SKU).
    pub aggregate_id: &'a str,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The row's version is at least the one asked for.
    Reached,
    /// The deadline passed first; the row's version then (`None`: no row yet).
    TimedOut {
        /// The version last read.
        current: Option<i64>,
    },
}

/// Bounded waits for a read-model row to reach a version.
#[derive(Debug, Clone)]
pub struct VersionWaiter {
    feed: ChangeFeed,
    timeout: Duration,
    recheck_interval: Duration,
}

impl VersionWaiter {
    /// Waits on `feed` for at most `timeout`, re-reading at least every `recheck_interval`.
    pub fn new(feed: ChangeFeed, timeout: Duration, recheck_interval: Duration) -> Self {
        Self {
            feed,
            timeout,
            recheck_interval,
        }
    }

    /// The longest wait.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Reads the row's version with `probe` until it is at least `min_version` or the
    /// timeout passes. A missing row (`None`) is waited for too: the pending event may be
    /// the one that creates it.
    ///
    /// # Errors
    /// The first error of `probe`.
    pub async fn wait_for<F, Fut>(
        &self,
        target: WaitTarget<'_>,
        min_version: i64,
        mut probe: F,
    ) -> Result<WaitOutcome, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<i64>, sqlx::Error>>,
    {
        // Subscribe before the first read, so a change committed in between still wakes us.
        let mut signals = self.feed.subscribe();
        let deadline = Instant::now() + self.timeout;
        loop {
            let current = probe().await?;
            if current.is_some_and(|version| version >= min_version) {
                return Ok(WaitOutcome::Reached);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(WaitOutcome::TimedOut { current });
            }
            let recheck_at = deadline.min(now + self.recheck_interval);
            next_wake_up(&mut signals, target, min_version, recheck_at).await;
        }
    }
}

/// Returns on a relevant change, a resync, or at `until`, whichever comes first.
async fn next_wake_up(
    signals: &mut broadcast::Receiver<Signal>,
    target: WaitTarget<'_>,
    min_version: i64,
    until: Instant,
) {
    loop {
        match tokio::time::timeout_at(until, signals.recv()).await {
            Err(_elapsed) => return,
            Ok(Ok(Signal::Advanced(change))) => {
                if change.reaches(&target, min_version) {
                    return;
                }
            }
            Ok(Ok(Signal::Resync) | Err(RecvError::Lagged(_))) => return,
            Ok(Err(RecvError::Closed)) => {
                tokio::time::sleep_until(until).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn parses_notification_payloads() {
        assert_eq!(
            Change::parse("stock:inventory:12:SKU-1"),
            Some(Change {
                projection: "stock".into(),
                aggregate_type: "inventory".into(),
                sequence: 12,
                aggregate_id: "SKU-1".into(),
            })
        );
        let change = Change::parse("orders:order:3:a:b").unwrap();
        assert_eq!(change.aggregate_id, "a:b");
        for bad in [
            "",
            "orders",
            "orders:order",
            "orders:order:x:id",
            "orders:order:3",
        ] {
            assert_eq!(Change::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_change_reaches_only_its_own_target_and_version() {
        let target = WaitTarget {
            projection: "stock",
            aggregate_type: "inventory",
            aggregate_id: "SKU-1",
        };
        let change = Change::parse("stock:inventory:5:SKU-1").unwrap();
        assert!(change.reaches(&target, 5));
        assert!(change.reaches(&target, 4));
        assert!(!change.reaches(&target, 6));
        assert!(
            !Change::parse("stock:inventory:5:SKU-2")
                .unwrap()
                .reaches(&target, 5)
        );
        assert!(
            !Change::parse("orders:inventory:5:SKU-1")
                .unwrap()
                .reaches(&target, 5)
        );
    }

    const TARGET: WaitTarget<'static> = WaitTarget {
        projection: "payments",
        aggregate_type: "payment",
        aggregate_id: "p",
    };

    #[tokio::test(start_paused = true)]
    async fn a_notification_wakes_the_waiter_before_the_recheck() {
        let (sender, _) = broadcast::channel(8);
        let feed = ChangeFeed {
            sender: sender.clone(),
        };
        let waiter = VersionWaiter::new(feed, Duration::from_secs(60), Duration::from_secs(30));
        let version = Arc::new(AtomicI64::new(1));
        let reads = Arc::new(AtomicUsize::new(0));
        let (v, r) = (Arc::clone(&version), Arc::clone(&reads));
        let started = Instant::now();
        let wait = tokio::spawn(async move {
            waiter
                .wait_for(TARGET, 2, || {
                    r.fetch_add(1, Ordering::SeqCst);
                    let current = v.load(Ordering::SeqCst);
                    async move { Ok(Some(current)) }
                })
                .await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Irrelevant changes do not trigger a read.
        sender
            .send(Signal::Advanced(Arc::new(
                Change::parse("payments:payment:9:other").unwrap(),
            )))
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        version.store(2, Ordering::SeqCst);
        sender
            .send(Signal::Advanced(Arc::new(
                Change::parse("payments:payment:2:p").unwrap(),
            )))
            .unwrap();
        assert_eq!(wait.await.unwrap().unwrap(), WaitOutcome::Reached);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn without_notifications_the_recheck_finds_the_version() {
        let waiter = VersionWaiter::new(
            ChangeFeed::detached(),
            Duration::from_secs(2),
            Duration::from_millis(100),
        );
        let reads = AtomicUsize::new(0);
        let outcome = waiter
            .wait_for(TARGET, 3, || {
                let n = reads.fetch_add(1, Ordering::SeqCst);
                async move { Ok((n >= 4).then_some(3)) }
            })
            .await
            .unwrap();
        assert_eq!(outcome, WaitOutcome::Reached);
        assert_eq!(reads.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_at_the_timeout_with_the_current_version() {
        let waiter = VersionWaiter::new(
            ChangeFeed::detached(),
            Duration::from_millis(500),
            Duration::from_millis(100),
        );
        let started = Instant::now();
        let outcome = waiter
            .wait_for(TARGET, 3, || async { Ok(Some(2)) })
            .await
            .unwrap();
        assert_eq!(outcome, WaitOutcome::TimedOut { current: Some(2) });
        assert_eq!(started.elapsed(), Duration::from_millis(500));
    }
}
