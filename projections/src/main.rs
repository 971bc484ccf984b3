//! `projections`: runs the configured projectors until SIGTERM / Ctrl-C.

use anyhow::Context;
use projections::{Settings, runtime};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("reading the configuration")?;
    let _telemetry = ops::telemetry::init(&settings.telemetry).context("setting up logging")?;
    info!(?settings, "starting projectors");

    let shutdown = CancellationToken::new();
    ops::metrics::serve(settings.metrics_addr, shutdown.clone().cancelled_owned())
        .await
        .with_context(|| format!("cannot serve metrics on {}", settings.metrics_addr))?;
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            runtime::shutdown_signal().await;
            info!("shutdown requested");
            shutdown.cancel();
        }
    });
    runtime::run(settings, shutdown).await?;
    info!("stopped");
    Ok(())
}
