//! `keel-audit`: the audit trail from a terminal.
//!
//! - `keel-audit verify` checks every stream's hash chain (or one stream's, with
//!   `--aggregate-type` and `--aggregate-id`) and prints the first event whose stored content
//!   no longer matches.
//! - `keel-audit history <aggregate_type> <aggregate_id>` prints a stream's events, one JSON
//!   object per line.
//!
//! Exit status: 0 when intact / printed, 1 when a hash chain is broken, 2 on any other
//! failure (bad arguments, unknown stream, database unreachable).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use audit::store::{self, StreamRef};
use audit::verify::{self, Mismatch, Verification};
use clap::{Parser, Subcommand};
use ops::env::{DatabaseUrl, LOCAL_DATABASE_URL as DEFAULT_DATABASE_URL};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Events checked per query when verifying the whole store.
const VERIFY_BATCH: u32 = 10_000;
/// Events read per query when printing a history.
const HISTORY_BATCH: i64 = 500;

#[derive(Debug, Parser)]
#[command(name = "keel-audit", version, about = "Audit the keel event store")]
struct Cli {
    /// The event store's database (the password is never printed).
    #[arg(long, env = "KEEL_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true, hide_default_value = true)]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify hash chains; exit 1 and print the first mismatch if one is broken.
    Verify {
        /// Only this stream's aggregate type (with --aggregate-id).
        #[arg(long, requires = "aggregate_id")]
        aggregate_type: Option<String>,
        /// Only this stream's aggregate id (with --aggregate-type).
        #[arg(long, requires = "aggregate_type")]
        aggregate_id: Option<String>,
        /// Print the verdict as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a stream's events with all metadata, one JSON object per line.
    History {
        /// `order`, `payment`, `inventory`, …
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
    },
}

enum Outcome {
    Done,
    Broken,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Broken) => ExitCode::from(1),
        Err(error) => {
            eprintln!("keel-audit: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let url = DatabaseUrl::new(cli.database_url);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(url.connect_options()?)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let outcome = match cli.command {
        Command::Verify {
            aggregate_type: Some(aggregate_type),
            aggregate_id: Some(aggregate_id),
            json,
        } => {
            let stream = StreamRef {
                aggregate_type: &aggregate_type,
                aggregate_id: &aggregate_id,
            };
            let verification = verify::verify_stream(&pool, stream)
                .await?
                .with_context(|| {
                    format!("the event store has no events of {aggregate_type} {aggregate_id}")
                })?;
            report(&verification, json)?
        }
        Command::Verify { json, .. } => report(&verify_store(&pool).await?, json)?,
        Command::History {
            aggregate_type,
            aggregate_id,
        } => {
            let stream = StreamRef {
                aggregate_type: &aggregate_type,
                aggregate_id: &aggregate_id,
            };
            print_history(&pool, stream).await?
        }
    };
    pool.close().await;
    Ok(outcome)
}

async fn verify_store(pool: &PgPool) -> anyhow::Result<Verification> {
    let mut after = None;
    let mut total = Verification {
        verified: 0,
        first_mismatch: None,
        last_verified: None,
    };
    loop {
        let run = verify::verify_range(pool, after.as_ref(), VERIFY_BATCH).await?;
        total.verified += run.verification.verified;
        total.first_mismatch = run.verification.first_mismatch;
        if run.verification.last_verified.is_some() {
            total.last_verified = run.verification.last_verified;
        }
        match run.resume_after {
            Some(position) => after = Some(position),
            None => return Ok(total),
        }
    }
}

fn report(verification: &Verification, json: bool) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    if json {
        let verdict = serde_json::json!({
            "verified": verification.verified,
            "ok": verification.is_intact(),
            "first_mismatch": verification.first_mismatch,
        });
        writeln!(out, "{verdict}")?;
    } else {
        match &verification.first_mismatch {
            None => writeln!(
                out,
                "ok: {} events verified, every hash chain intact",
                verification.verified
            )?,
            Some(mismatch) => write_mismatch(&mut out, verification.verified, mismatch)?,
        }
    }
    Ok(if verification.is_intact() {
        Outcome::Done
    } else {
        Outcome::Broken
    })
}

fn write_mismatch(out: &mut impl Write, verified: u64, mismatch: &Mismatch) -> std::io::Result<()> {
    let reason = serde_json::to_value(mismatch.reason)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    writeln!(
        out,
        "BROKEN: {} {} sequence {} does not match its hash chain ({reason})",
        mismatch.aggregate_type, mismatch.aggregate_id, mismatch.sequence
    )?;
    writeln!(out, "  event_id:        {}", mismatch.event_id)?;
    writeln!(out, "  global_position: {}", mismatch.global_position)?;
    writeln!(
        out,
        "  recorded_at:     {}",
        mismatch.recorded_at.to_rfc3339()
    )?;
    writeln!(
        out,
        "  expected_hash:   {}",
        mismatch.expected_hash.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "  stored_hash:     {}",
        mismatch.stored_hash.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "  ({verified} events before it verified intact)")
}

async fn print_history(pool: &PgPool, stream: StreamRef<'_>) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let mut after = 0;
    loop {
        let events = store::stream_events(pool, stream, after, HISTORY_BATCH).await?;
        if after == 0 && events.is_empty() {
            anyhow::bail!(
                "the event store has no events of {} {}",
                stream.aggregate_type,
                stream.aggregate_id
            );
        }
        for event in &events {
            writeln!(out, "{}", serde_json::to_string(event)?)?;
        }
        match events.last() {
            Some(last) if events.len() as i64 == HISTORY_BATCH => after = last.sequence,
            _ => return Ok(Outcome::Done),
        }
    }
}
