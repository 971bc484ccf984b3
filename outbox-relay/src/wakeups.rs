//! Waiting on an empty outbox: the relay listens on the doorbell's channel
//! (`event_store::doorbell`) and polls again as soon as a writer rings, or after
//! `KEEL_RELAY_POLL_MS` if none does.
//!
//! A ring is a hint. The listener's connection may drop (its notifications are then lost),
//! and a writer that does not ring (a script, an older command API) is found by the poll.
//! Rings that arrived before a poll announce commits that poll sees, so they are dropped
//! before it ([`Wakeups::forget_earlier`]); a ring that arrives after the poll started ends
//! the next wait at once, so no commit waits for the poll interval.

use std::time::Duration;

use event_store::doorbell::CHANNEL;
use futures::FutureExt;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::relay::sleep_or_cancel;

/// Pause before listening again after the listener failed.
const LISTEN_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// The relay's listener on the doorbell's channel, connected on first use.
pub(crate) struct Wakeups {
    options: PgConnectOptions,
    listener: Option<PgListener>,
    /// After a failure, no new attempt before this.
    quiet_until: Option<Instant>,
}

impl Wakeups {
    pub(crate) fn new(options: &PgConnectOptions) -> Self {
        Self {
            options: options
                .clone()
                .application_name("keel-outbox-relay-wakeups"),
            listener: None,
            quiet_until: None,
        }
    }

    /// Drops the rings that have already arrived: the poll that follows sees their commits.
    pub(crate) fn forget_earlier(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            return;
        };
        // `try_recv` is cancel-safe: a ring not complete yet stays for the next wait.
        while let Some(Ok(Some(_))) = listener.try_recv().now_or_never() {}
    }

    /// Returns when a writer rings, after `at_most`, or when `cancel` fires.
    pub(crate) async fn wait(&mut self, at_most: Duration, cancel: &CancellationToken) {
        let deadline = Instant::now() + at_most;
        if self.connect_if_due().await {
            // Rings between the last poll and the `LISTEN` were not heard: poll once more.
            return;
        }
        let Some(listener) = self.listener.as_mut() else {
            // Not listening: poll at the deadline, or sooner if listening may be tried again
            // by then (the next wait listens, and polls once more right after).
            let until = self.quiet_until.map_or(deadline, |at| at.min(deadline));
            sleep_or_cancel(until.saturating_duration_since(Instant::now()), cancel).await;
            return;
        };
        tokio::select! {
            received = listener.try_recv() => match received {
                // A ring, or a connection lost and opened again (rings may be lost):
                // either way, poll now.
                Ok(_) => {}
                // Its connection failed for good (e.g. its backend was terminated): rings
                // may have been lost, so poll now; listening is tried again after a pause.
                Err(error) => {
                    tracing::warn!(%error, "outbox wake-up listener failed; polling until it listens again");
                    self.listener = None;
                    self.quiet_until = Some(Instant::now() + LISTEN_AGAIN_AFTER);
                }
            },
            () = tokio::time::sleep_until(deadline) => {}
            () = cancel.cancelled() => {}
        }
    }

    /// Listens if not listening and not in a pause after a failure; whether it started now.
    async fn connect_if_due(&mut self) -> bool {
        if self.listener.is_some() || self.quiet_until.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        match listen(&self.options).await {
            Ok(listener) => {
                tracing::info!(channel = CHANNEL, "listening for outbox wake-ups");
                self.listener = Some(listener);
                self.quiet_until = None;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for outbox wake-ups; polling instead");
                self.quiet_until = Some(Instant::now() + LISTEN_AGAIN_AFTER);
                false
            }
        }
    }
}

async fn listen(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    // The listener's own pool of one: it reconnects through it and listens again.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
