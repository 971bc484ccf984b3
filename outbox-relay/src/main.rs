//! `outbox-relay`: publishes the event store's outbox to Kafka until SIGTERM or Ctrl-C.
//!
//! Its own process (not a task of the HTTP service) so that it scales, restarts and deploys
//! independently, and a slow broker never holds HTTP workers; see ADR 0002.

use std::time::Duration;

use anyhow::Context;
use ops::lifecycle::{cancel_on_shutdown_signal, retry_until_ready};
use ops::telemetry::{LogFormat, TelemetrySettings};
use outbox_relay::{OutboxRelay, RelayConfig};
use sqlx::postgres::PgPoolOptions;

/// Pause between start-up attempts while the registry or the broker is not reachable yet.
const PREPARE_RETRY: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = ops::telemetry::init(
        &TelemetrySettings::from_env("outbox-relay", LogFormat::Json)
            .context("invalid logging configuration")?,
    )
    .context("cannot set up logging")?;
    let config = RelayConfig::from_env().context("invalid relay configuration")?;
    tracing::info!(config = ?config, "starting outbox relay");

    let cancel = cancel_on_shutdown_signal();
    ops::metrics::serve(config.metrics_addr, cancel.clone().cancelled_owned())
        .await
        .with_context(|| format!("cannot serve metrics on {}", config.metrics_addr))?;
    // The relay may start before the command API: make sure the outbox exists. It keeps
    // its own connection for the shard leases, so the pool is only for the migrations.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(config.database.clone())
        .await
        .context("cannot reach the event store database")?;
    event_store::migrate(&pool)
        .await
        .context("applying the event store migrations")?;
    pool.close().await;
    let prepared = retry_until_ready("outbox relay", PREPARE_RETRY, &cancel, || {
        OutboxRelay::prepare(config.clone())
    })
    .await;
    if let Some(relay) = prepared {
        relay.run(cancel).await;
    }
    Ok(())
}
