//! `command-api`: serves the command API until SIGTERM or Ctrl-C.

use anyhow::Context;
use command_api::config::Settings;
use command_api::startup::{Application, Dependencies};
use ops::lifecycle::shutdown_signal;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("invalid configuration")?;
    let _telemetry = ops::telemetry::init(&settings.telemetry).context("cannot set up logging")?;
    ops::metrics::install();
    // `Settings`' Debug redacts the database password.
    tracing::info!(settings = ?settings, "starting command API");
    let application = Application::build(&settings, Dependencies::from_settings(&settings))
        .await
        .context("start-up failed")?;
    tracing::info!(addr = %application.local_addr(), "listening");
    application
        .run_until_stopped(shutdown_signal())
        .await
        .context("server failed")
}
