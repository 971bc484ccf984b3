//! `outbox-relay`: publishes the event store's outbox to Kafka until SIGTERM or Ctrl-C.
//!
//! Its own process (not a task of the HTTP service) so that it scales, restarts and deploys
//! independently, and a slow broker never holds HTTP workers; see ADR 0002.

use std::time::Duration;

use anyhow::Context;
use command_api::config::Settings;
use command_api::outbox::{OutboxRelay, RelayConfig};
use command_api::startup::{MIGRATOR, shutdown_signal};
use command_api::telemetry;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

/// Pause between start-up attempts while the registry or the broker is not reachable yet.
const PREPARE_RETRY: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid configuration")?;
    telemetry::init(&settings.log).context("cannot set up logging")?;
    let config = RelayConfig::from_env().context("invalid relay configuration")?;
    tracing::info!(config = ?config, "starting outbox relay");

    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            shutdown_signal().await;
            cancel.cancel();
        }
    });

    // The relay may start before the command API: make sure the outbox exists.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(config.database.clone())
        .await
        .context("cannot reach the event store database")?;
    MIGRATOR
        .run(&pool)
        .await
        .context("applying the event store migrations")?;
    pool.close().await;

    let relay = loop {
        match OutboxRelay::prepare(config.clone()).await {
            Ok(relay) => break relay,
            Err(error) => {
                tracing::warn!(error = %error, retry_in_s = PREPARE_RETRY.as_secs(), "outbox relay not ready");
                tokio::select! {
                    () = tokio::time::sleep(PREPARE_RETRY) => {}
                    () = cancel.cancelled() => return Ok(()),
                }
            }
        }
    };
    relay.run(cancel).await;
    Ok(())
}
