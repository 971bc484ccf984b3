//! `keel-keys`: the master key of personal data (ADR 0009) from a terminal.
//!
//! - `keel-keys generate` prints a fresh master key (base64 of 32 random bytes) for
//!   `KEEL_MASTER_KEY` / `_FILE`.
//! - `keel-keys rotate` re-wraps every live customer data key under the current master key
//!   (`KEEL_MASTER_KEY`), unwrapping with it or one of `KEEL_MASTER_KEY_PREVIOUS`. Online:
//!   the command API, projectors and query API keep running; events are never touched.
//! - `keel-keys status` counts live data keys per master key id, and destroyed ones.
//!
//! The database and keys come from the command API's configuration (`KEEL_DATABASE_URL`,
//! `KEEL_MASTER_KEY`, …). Exit status: 0 on success, 2 on any failure.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use command_api::config::Settings;
use event_store::customer_keys::MasterKey;

#[derive(Debug, Parser)]
#[command(
    name = "keel-keys",
    version,
    about = "Manage the master key of keel's personal data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random master key (base64).
    Generate,
    /// Re-wrap every live data key under the current master key.
    Rotate {
        /// Keys re-wrapped per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// Live data keys per master key, and destroyed ones.
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keel-keys: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Generate = cli.command {
        let (key, text) = MasterKey::generate();
        eprintln!("master key id {}", key.id());
        println!("{}", text.as_str());
        return Ok(());
    }
    let settings = Settings::from_env().context("reading the configuration")?;
    let pool = settings
        .database
        .pool_options()
        .connect_with(settings.database.url.connect_options()?)
        .await
        .context("connecting to the event store")?;
    event_store::migrate(&pool)
        .await
        .context("event store migrations")?;
    match cli.command {
        Command::Generate => Ok(()),
        Command::Rotate { batch } => {
            let keyring = settings
                .keyring
                .context("KEEL_MASTER_KEY (or KEEL_MASTER_KEY_FILE) names no master key")?;
            let rotation = keyring
                .rotate(&pool, batch)
                .await
                .context("re-wrapping data keys")?;
            println!(
                "re-wrapped {} data keys under master key {} ({} changed meanwhile and were left alone)",
                rotation.rewrapped,
                keyring.current_id(),
                rotation.skipped
            );
            Ok(())
        }
        Command::Status => {
            let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
                "SELECT master_key_id, count(*) FROM public.customer_keys
                  GROUP BY master_key_id ORDER BY master_key_id NULLS LAST",
            )
            .fetch_all(&pool)
            .await
            .context("reading the key table")?;
            for (master_key_id, count) in rows {
                match master_key_id {
                    Some(id) => println!("{id}\t{count} live"),
                    None => println!("destroyed\t{count}"),
                }
            }
            Ok(())
        }
    }
}
