//! `saga`: runs the order fulfilment saga until SIGTERM or Ctrl-C.
//!
//! Its own process, like the relay: it scales (one consumer group), restarts and deploys
//! independently of the HTTP service it sends commands to.

use std::time::Duration;

use anyhow::Context;
use ops::lifecycle::{cancel_on_shutdown_signal, retry_until_ready};
use ops::telemetry::{LogFormat, TelemetrySettings};
use saga::{SagaConfig, SagaRunner};
use sqlx::postgres::PgPoolOptions;

/// Pause between start-up attempts while the broker or registry is not reachable yet.
const PREPARE_RETRY: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = ops::telemetry::init(
        &TelemetrySettings::from_env("saga", LogFormat::Json)
            .context("invalid logging configuration")?,
    )
    .context("cannot set up logging")?;
    let config = SagaConfig::from_env().context("invalid saga configuration")?;
    tracing::info!(config = ?config, "starting order fulfilment saga");

    let cancel = cancel_on_shutdown_signal();
    ops::metrics::serve(config.metrics_addr, cancel.clone().cancelled_owned())
        .await
        .with_context(|| format!("cannot serve metrics on {}", config.metrics_addr))?;
    // The saga owns its tables: they exist before it reads or writes them.
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(config.database.clone())
        .await
        .context("cannot reach the saga's database")?;
    saga::migrate(&pool)
        .await
        .context("applying the saga's migrations")?;
    let started = retry_until_ready("saga", PREPARE_RETRY, &cancel, || {
        SagaRunner::start(config.clone(), pool.clone(), None)
    })
    .await;
    if let Some(saga) = started {
        saga.run(cancel).await;
    }
    pool.close().await;
    Ok(())
}
