//! S6: projection rebuild from the event store. A scratch database gets the event store's
//! and the read model's migrations and `--events` seeded events (`event_store::seed`'s
//! generator: every row goes through the store's triggers); then the projection is rebuilt
//! with the library `keel-replay rebuild` runs (shadow tables, swap), once per `--fold`,
//! and timed. The check: every stored event of the projection's sources is applied once,
//! and the swapped-in tables hold one row per seeded SKU.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, ValueEnum};
use event_store::seed::{SeedMix, seed_events_with};
use projections::Projection;
use projections::replay::source::EventStore;
use projections::replay::{self, Fold, RebuildOptions, RebuildProgress};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::report::{Machine, Report};
use crate::scratch::{ScratchArgs, ScratchDatabase};

const SMOKE_EVENTS: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoldMode {
    /// Fold each batch in memory and write each row once (where the projection allows).
    SetBased,
    /// The live apply code, event by event (what every rebuild did before).
    PerEvent,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct RebuildArgs {
    /// Events to seed: inventory only (`StockAdded`, ten per SKU), all read by `stock`.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Ways to rebuild, one after the other on the same store (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "set-based")]
    pub fold: Vec<FoldMode>,
    /// Events per read from the store.
    #[arg(long, default_value_t = 5_000)]
    pub batch_size: usize,
    /// Connections applying each batch.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub scratch: ScratchArgs,
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<PathBuf>,
    /// 2,000 events.
    #[arg(long)]
    pub smoke: bool,
}

#[derive(Debug, Serialize)]
struct RebuildRun {
    fold: FoldMode,
    events_read: u64,
    events_applied: u64,
    seconds: f64,
    events_per_s: f64,
    rows: i64,
    swapped: bool,
}

#[derive(Debug, Serialize)]
struct RebuildResults {
    projection: &'static str,
    events_stored: u64,
    seed_seconds: f64,
    seed_events_per_s: f64,
    expected_rows: i64,
    runs: Vec<RebuildRun>,
    /// Every run applied every stored event once and swapped in one row per SKU.
    complete: bool,
}

pub async fn run(args: &RebuildArgs) -> anyhow::Result<bool> {
    let events = if args.smoke {
        SMOKE_EVENTS
    } else {
        args.events
    };
    anyhow::ensure!(events >= 10, "--events must be at least 10");
    let database = ScratchDatabase::create(&args.scratch, "rebuild").await?;
    let outcome = run_on(args, &database, events).await;
    database.drop().await;
    outcome
}

async fn run_on(
    args: &RebuildArgs,
    database: &ScratchDatabase,
    events: u64,
) -> anyhow::Result<bool> {
    let pool = database
        .pool(u32::try_from(args.workers.clamp(1, 64)).unwrap_or(2) + 4)
        .await?;
    read_model::migrate(&pool)
        .await
        .context("read-model migrations")?;
    let started_at = Utc::now();
    let seeding = Instant::now();
    let mut last_report = Instant::now();
    let seeded = seed_events_with(&pool, events, SeedMix::InventoryOnly, |written| {
        if last_report.elapsed().as_secs() >= 10 {
            eprintln!("  seeded {written} of {events} events");
            last_report = Instant::now();
        }
    })
    .await
    .context("seeding events")?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    eprintln!("  seeded {seeded} events in {seed_seconds:.1} s");
    // Fresh statistics, as a store that has been running would have.
    sqlx::query("VACUUM ANALYZE events")
        .execute(&pool)
        .await
        .context("VACUUM ANALYZE events")?;

    let projection = Projection::Stock;
    let store = EventStore::new(pool.clone());
    let events_stored = store.count(projection).await?;
    let expected_rows: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'inventory'",
    )
    .fetch_one(&pool)
    .await?;
    let mut runs = Vec::new();
    for &mode in &args.fold {
        let options = RebuildOptions {
            batch_size: args.batch_size.max(1),
            workers: args.workers.clamp(1, 64),
            keep_old: false,
            restart: true,
            fold: match mode {
                FoldMode::SetBased => Fold::SetBased,
                FoldMode::PerEvent => Fold::PerEvent,
            },
        };
        let (progress, _updates) = watch::channel(RebuildProgress::default());
        let begun = Instant::now();
        let report = replay::rebuild_from_store(
            projection,
            &pool,
            &store,
            &options,
            &CancellationToken::new(),
            &progress,
        )
        .await
        .with_context(|| format!("rebuilding {projection}"))?;
        let seconds = begun.elapsed().as_secs_f64();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM read_model.stock_levels")
            .fetch_one(&pool)
            .await?;
        eprintln!(
            "  rebuild {projection} ({mode:?}): {} events in {seconds:.1} s = {:.0} events/s",
            report.events_read,
            report.events_read as f64 / seconds
        );
        runs.push(RebuildRun {
            fold: mode,
            events_read: report.events_read,
            events_applied: report.events_applied,
            seconds,
            events_per_s: report.events_read as f64 / seconds,
            rows,
            swapped: report.swapped,
        });
    }
    pool.close().await;

    let complete = runs
        .iter()
        .all(|run| run.swapped && run.events_applied == events_stored && run.rows == expected_rows);
    let results = RebuildResults {
        projection: projection.name(),
        events_stored,
        seed_seconds,
        seed_events_per_s: seeded as f64 / seed_seconds,
        expected_rows,
        runs,
        complete,
    };
    let summary = format!(
        "rebuild {}: {} events stored | {}{}",
        results.projection,
        results.events_stored,
        results
            .runs
            .iter()
            .map(|run| format!(
                "{:?}: {:.0} events/s ({} events in {:.1} s)",
                run.fold, run.events_per_s, run.events_read, run.seconds
            ))
            .collect::<Vec<_>>()
            .join("; "),
        if complete {
            ""
        } else {
            " | FAIL: not every event applied once"
        }
    );
    Report {
        scenario: "rebuild",
        started_at,
        smoke: args.smoke,
        machine: Machine::current(),
        config: args,
        results: &results,
        summary,
        passed: Some(complete),
    }
    .emit(args.json.as_deref())?;
    Ok(complete)
}
