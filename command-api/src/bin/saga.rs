//! `saga`: runs the order fulfilment saga until SIGTERM or Ctrl-C.
//!
//! Its own process, like the relay: it scales (one consumer group), restarts and deploys
//! independently of the HTTP service it sends commands to.

use std::time::Duration;

use anyhow::Context;
use command_api::config::Settings;
use command_api::saga::{SagaConfig, SagaRunner};
use command_api::startup::{MIGRATOR, shutdown_signal};
use command_api::telemetry;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

/// Pause between start-up attempts while the broker or registry is not reachable yet.
const PREPARE_RETRY: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid configuration")?;
    telemetry::init(&settings.log).context("cannot set up logging")?;
    let config = SagaConfig::from_env().context("invalid saga configuration")?;
    tracing::info!(config = ?config, "starting order fulfilment saga");

    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            shutdown_signal().await;
            cancel.cancel();
        }
    });

    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(config.database.clone())
        .await
        .context("cannot reach the database")?;
    // The saga may start before the command API: make sure its tables exist.
    MIGRATOR
        .run(&pool)
        .await
        .context("applying the command-api migrations")?;

    let saga = loop {
        match SagaRunner::start(config.clone(), pool.clone(), None).await {
            Ok(saga) => break saga,
            Err(error) => {
                tracing::warn!(%error, retry_in_s = PREPARE_RETRY.as_secs(), "saga not ready");
                tokio::select! {
                    () = tokio::time::sleep(PREPARE_RETRY) => {}
                    () = cancel.cancelled() => return Ok(()),
                }
            }
        }
    };
    saga.run(cancel).await;
    pool.close().await;
    Ok(())
}
