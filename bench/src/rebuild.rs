//! S6 and T4: projection rebuild from the event store. A scratch database gets the event
//! store's and the read model's migrations and `--events` seeded events (`event_store::seed`'s
//! generator: every row goes through the store's triggers); then each `--projection` is
//! rebuilt with the library `keel-replay rebuild` runs (shadow tables, swap), once per
//! `--fold`, and timed. The check: every stored event of the projection's sources is applied
//! once, and the swapped-in table holds one row per seeded aggregate (SKU, order, payment).

use std::collections::BTreeMap;
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
use crate::rss::{LOAD_GENERATOR, RssSampler};
use crate::scratch::{ScratchArgs, ScratchDatabase};

const SMOKE_EVENTS: u64 = 2_000;
/// This process's CPU in a rebuild's figures: it is the rebuild, not a load generator.
const REBUILDER: &str = "bench (rebuilding)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoldMode {
    /// Fold each batch in memory and write each row once (where the projection allows).
    SetBased,
    /// The live apply code, event by event (what every rebuild did before).
    PerEvent,
}

/// Which events are seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// `StockAdded` only, ten per SKU: every event is one `stock` reads.
    Inventory,
    /// Whole order flows (orders, lines, reservations, payments, refunds): every projection
    /// has its share to rebuild.
    Fulfilment,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct RebuildArgs {
    /// Events to seed.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// What the seeded events are.
    #[arg(long, value_enum, default_value = "inventory")]
    pub mix: Mix,
    /// Projections to rebuild, one after the other (comma-separated: stock, orders,
    /// payments).
    #[arg(long, value_delimiter = ',', default_value = "stock")]
    #[serde(serialize_with = "projection_names")]
    pub projection: Vec<Projection>,
    /// Ways to rebuild, one after the other on the same store (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "set-based")]
    pub fold: Vec<FoldMode>,
    /// Events per read from the store.
    #[arg(long, default_value_t = 20_000)]
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

fn projection_names<S: serde::Serializer>(
    projections: &[Projection],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(projections.iter().map(|projection| projection.name()))
}

#[derive(Debug, Serialize)]
struct RebuildRun {
    projection: &'static str,
    /// Stored events of the projection's sources.
    events_stored: u64,
    /// Aggregates the projection's main table has one row for.
    expected_rows: i64,
    fold: FoldMode,
    events_read: u64,
    events_applied: u64,
    seconds: f64,
    events_per_s: f64,
    rows: i64,
    swapped: bool,
    /// CPU µs per event read, by process: PostgreSQL (all its processes), this process
    /// ([`REBUILDER`]: it runs the rebuild itself) and any platform service running. Steadier
    /// than `events_per_s` on a machine whose speed varies from one hour to the next.
    cpu_us_per_event: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
struct RebuildResults {
    /// Events seeded, of every aggregate type.
    events_seeded: u64,
    seed_seconds: f64,
    seed_events_per_s: f64,
    runs: Vec<RebuildRun>,
    /// Every run applied every stored event once and swapped in one row per SKU.
    complete: bool,
}

/// The aggregate type a projection keeps one row per, and that row's table.
fn main_table(projection: Projection) -> (&'static str, &'static str) {
    match projection {
        Projection::Stock => ("inventory", "stock_levels"),
        Projection::Orders => ("order", "order_view"),
        Projection::Payments => ("payment", "payments"),
    }
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
    let mix = match args.mix {
        Mix::Inventory => SeedMix::InventoryOnly,
        Mix::Fulfilment => SeedMix::Fulfilment,
    };
    let seeded = seed_events_with(&pool, events, mix, |written| {
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

    let store = EventStore::new(pool.clone());
    let mut runs = Vec::new();
    for &projection in &args.projection {
        let events_stored = store.count(projection).await?;
        let (source, table) = main_table(projection);
        let expected_rows: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = $1",
        )
        .bind(source)
        .fetch_one(&pool)
        .await?;
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
            let sampler = RssSampler::start();
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
            let footprint = sampler.finish().await;
            let cpu_us_per_event: BTreeMap<String, f64> = footprint
                .cpu_seconds
                .into_iter()
                .map(|(process, cpu)| {
                    let process = if process == LOAD_GENERATOR {
                        REBUILDER.to_owned()
                    } else {
                        process
                    };
                    (process, cpu * 1e6 / report.events_read.max(1) as f64)
                })
                .collect();
            let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM read_model.{table}"))
                .fetch_one(&pool)
                .await?;
            let cpu: Vec<String> = cpu_us_per_event
                .iter()
                .map(|(process, us)| format!("{process} {us:.1}"))
                .collect();
            eprintln!(
                "  rebuild {projection} ({mode:?}): {} events in {seconds:.1} s = {:.0} events/s; \
                 cpu µs/event: {}",
                report.events_read,
                report.events_read as f64 / seconds,
                cpu.join(", ")
            );
            runs.push(RebuildRun {
                projection: projection.name(),
                events_stored,
                expected_rows,
                fold: mode,
                events_read: report.events_read,
                events_applied: report.events_applied,
                seconds,
                events_per_s: report.events_read as f64 / seconds,
                rows,
                swapped: report.swapped,
                cpu_us_per_event,
            });
        }
    }
    pool.close().await;

    let complete = runs.iter().all(|run| {
        run.swapped && run.events_applied == run.events_stored && run.rows == run.expected_rows
    });
    let results = RebuildResults {
        events_seeded: seeded,
        seed_seconds,
        seed_events_per_s: seeded as f64 / seed_seconds,
        runs,
        complete,
    };
    let summary = format!(
        "rebuild: {} events seeded | {}{}",
        results.events_seeded,
        results
            .runs
            .iter()
            .map(|run| format!(
                "{} {:?}: {:.0} events/s ({} events in {:.1} s)",
                run.projection, run.fold, run.events_per_s, run.events_read, run.seconds
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
