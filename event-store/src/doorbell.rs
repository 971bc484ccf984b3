//! The outbox's doorbell: after a commit that queued events, the writer rings, and a relay
//! waiting on an empty outbox wakes at once instead of at its next poll.
//!
//! The ring is a `NOTIFY` on [`CHANNEL`], sent **after** the appending transaction has
//! committed, from a connection of its own. It is never sent inside the append: a
//! transaction that notifies takes PostgreSQL's notify lock before it commits and keeps it
//! until its commit is flushed, so concurrent appending transactions would flush one after
//! another instead of sharing a WAL flush (ADR 0010 relies on the sharing).
//!
//! A ring is a hint, never the delivery: a lost one (the doorbell's connection is down, the
//! relay's listener reconnects) costs at most one poll interval, because the relay still
//! polls an idle outbox (`KEEL_RELAY_POLL_MS`), only much less often. Rings coalesce: while
//! one `NOTIFY` is on its way, and for [`Doorbell::start`]'s `spacing` after it, further
//! rings fold into one more.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;

/// The channel the doorbell notifies and relays listen on.
pub const CHANNEL: &str = "keel_outbox_appended";

/// Pause before connecting again after the doorbell's connection failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Sends one ring at once on `executor`, for a writer that has no [`Doorbell`] (a script, a
/// benchmark); call it after the commit that queued the events.
///
/// # Errors
/// The database's, for the `NOTIFY`.
pub async fn ring_now<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(executor)
        .await?;
    Ok(())
}

/// Rings the outbox's doorbell; cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Doorbell {
    rung: Option<Arc<Notify>>,
}

impl Doorbell {
    /// Starts the ringer on the current Tokio runtime: it connects with `options` (on its
    /// first ring, with `synchronous_commit = off`: the notification's own commit needs no
    /// flush) and sends at most one `NOTIFY` per `spacing`. It stops when every clone is
    /// dropped.
    #[must_use]
    pub fn start(options: &PgConnectOptions, spacing: Duration) -> Self {
        let rung = Arc::new(Notify::new());
        let options = options
            .clone()
            .options([("synchronous_commit", "off")])
            .application_name("keel-outbox-doorbell");
        tokio::spawn(ring_on(Arc::clone(&rung), options, spacing));
        Self { rung: Some(rung) }
    }

    /// A doorbell that rings nothing: the relay finds the events at its next poll.
    #[must_use]
    pub fn silent() -> Self {
        Self { rung: None }
    }

    /// Asks for a ring; returns at once.
    pub fn ring(&self) {
        if let Some(rung) = &self.rung {
            rung.notify_one();
        }
    }
}

/// How often a ringer with nothing to ring checks whether its doorbells are all gone.
const ABANDONED_CHECK: Duration = Duration::from_secs(5);

async fn ring_on(rung: Arc<Notify>, options: PgConnectOptions, spacing: Duration) {
    let mut connection: Option<PgConnection> = None;
    loop {
        tokio::select! {
            () = rung.notified() => {}
            () = tokio::time::sleep(ABANDONED_CHECK) => {
                if Arc::strong_count(&rung) == 1 {
                    return;
                }
                continue;
            }
        }
        if connection.is_none() {
            match PgConnection::connect_with(&options).await {
                Ok(connected) => connection = Some(connected),
                Err(error) => {
                    tracing::warn!(%error, "outbox doorbell cannot connect; relays find new events at their next poll");
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    continue;
                }
            }
        }
        if let Some(open) = connection.as_mut()
            && let Err(error) = ring_now(&mut *open).await
        {
            tracing::warn!(%error, "outbox doorbell could not ring; relays find new events at their next poll");
            connection = None;
        }
        tokio::time::sleep(spacing).await;
    }
}
