//! `projections`: runs the configured projectors until SIGTERM / Ctrl-C.

use anyhow::Context;
use projections::{Settings, runtime};
use tracing::info;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("reading the configuration")?;
    let _telemetry = ops::telemetry::init(&settings.telemetry).context("setting up logging")?;
    info!(?settings, "starting projectors");

    let shutdown = ops::lifecycle::cancel_on_shutdown_signal();
    ops::metrics::serve(settings.metrics_addr, shutdown.clone().cancelled_owned())
        .await
        .with_context(|| format!("cannot serve metrics on {}", settings.metrics_addr))?;
    runtime::run(settings, shutdown).await?;
    info!("stopped");
    Ok(())
}
