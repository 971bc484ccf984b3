//! `query-api`: serves the read models over HTTP until SIGTERM or Ctrl-C.

use anyhow::Context;
use ops::lifecycle::shutdown_signal;
use query_api::config::Settings;
use query_api::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid configuration")?;
    let _telemetry = ops::telemetry::init(&settings.telemetry).context("cannot set up logging")?;
    ops::metrics::install();
    // `Settings`' Debug redacts the database password.
    tracing::info!(settings = ?settings, "starting query API");
    let application = Application::build(&settings)
        .await
        .context("start-up failed")?;
    tracing::info!(addr = %application.local_addr(), "listening");
    application
        .run_until_stopped(shutdown_signal())
        .await
        .context("server failed")
}
