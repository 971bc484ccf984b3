//! `bench chaos`: whole orders at a steady rate while one part of the platform after the
//! other is killed at a random moment and restarted after a pause; after each fault the
//! pipeline is left to settle and everything the platform promised is checked.
//!
//! One *segment* per fault: the load runs for `--duration` seconds, the fault lands at a
//! seeded random moment in the first half of it, and once the load has ended the segment
//! waits until every placed order's saga flow has ended and the read models hold every
//! event. Then [`checks`] compare the store, the topics, the saga and a clean rebuild of
//! every read model.
//!
//! **Recovery time** of a fault is from the kill until both (a) the part answers again
//! (its health endpoint, broker metadata, a database connection) and (b) every order
//! placed before the restart has settled (saga terminal and visible in the order view):
//! the lag the fault caused is gone.

mod checks;
mod fault;
mod flows;
mod process;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;

use self::checks::{Marks, RebuildComparison, SegmentCheck};
use self::fault::{Endpoints, Fault, Timing};
use self::flows::{SharedLedger, SharedSettlements};
use crate::Common;
use crate::open_loop::{self, Latencies, LatencySummary, OpenLoopResult};
use crate::report::{Machine, Report};
use crate::workload::{http_client, require_ready};

/// Units of stock each SKU of a run starts with (orders take one each).
const STOCK_PER_SKU: u32 = 100_000;
const SETTLE_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Args, Serialize)]
pub struct ChaosArgs {
    /// Faults to inject, one per segment, in this order (default: every one; with
    /// `--smoke`, the projector).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Vec<Fault>,
    /// Rounds through the fault list.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Seconds a part stays down before it is started again.
    #[arg(long, default_value_t = 3.0)]
    pub pause: f64,
    /// SKUs the orders are spread over.
    #[arg(long, default_value_t = 64)]
    pub skus: usize,
    /// Seconds the pipeline may take to settle after a segment's load.
    #[arg(long, default_value_t = 180.0)]
    pub settle_timeout: f64,
    #[arg(long, env = "KEEL_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    #[arg(long, env = "KEEL_TOPIC_PREFIX", default_value = "keel.")]
    pub topic_prefix: String,
    #[arg(
        long,
        env = "KEEL_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7"
    )]
    pub registry_url: String,
}

#[derive(Debug, Serialize)]
struct Config<'a> {
    /// `--rate` is orders per second; each order is three commands (create, add a line,
    /// place), and the saga sends about five more.
    common: &'a Common,
    chaos: &'a ChaosArgs,
    faults: Vec<Fault>,
}

/// One fault and what came of it.
#[derive(Debug, Clone, Serialize)]
struct Segment {
    fault: Fault,
    run: usize,
    /// Seconds into the segment's load when the part went down.
    injected_at_s: f64,
    /// Seconds from the kill to the restart.
    down_s: f64,
    /// Seconds from the kill until the part answered again.
    answering_after_s: f64,
    /// Seconds from the kill until the lag it caused was gone (see the module docs).
    recovery_s: f64,
    /// Seconds from the end of the load until the pipeline had settled.
    settled_after_load_s: f64,
    /// Order flows (create, line, place), by the first refusal's status.
    load: OpenLoopResult,
    /// Flows that ended in a 5xx other than 503, or in a timeout.
    bad_answers: u64,
    /// 503 answers without `Retry-After`.
    unavailable_without_retry_after: u64,
    /// Placed order → settled (saga terminal and visible), over the segment.
    settle_latency: Option<LatencySummary>,
    check: SegmentCheck,
    read_models: Vec<RebuildComparison>,
}

impl Segment {
    fn read_model_mismatches(&self) -> u64 {
        self.read_models
            .iter()
            .map(RebuildComparison::mismatches)
            .sum()
    }

    fn passed(&self) -> bool {
        self.check.anomalies() == 0
            && self.read_model_mismatches() == 0
            && self.bad_answers == 0
            && self.unavailable_without_retry_after == 0
    }
}

#[derive(Debug, Serialize)]
struct Results {
    segments: Vec<Segment>,
    /// The markdown table of RELIABILITY.md.
    table: String,
}

pub async fn run(common: &Common, args: &ChaosArgs) -> anyhow::Result<bool> {
    let faults = match (&args.faults[..], common.smoke) {
        ([], true) => vec![Fault::Projector],
        ([], false) => Fault::ALL.to_vec(),
        (chosen, _) => chosen.to_vec(),
    };
    let pause = Duration::from_secs_f64(if common.smoke {
        args.pause.min(1.0)
    } else {
        args.pause
    });
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(args.skus > 0, "--skus must be at least 1");
    let run_dir = crate::rss::run_dir().context("no HOME to find the platform's pid files")?;
    let client = http_client(common.concurrency_limit)?;
    require_ready(&client, &common.command_url).await?;
    require_ready(&client, &common.query_url).await?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&common.database_url)
        .await
        .context("connecting to the event store")?;
    let endpoints = Endpoints {
        command_url: common.command_url.clone(),
        query_url: common.query_url.clone(),
        registry_url: args.registry_url.trim_end_matches('/').to_owned(),
        brokers: args.kafka_brokers.clone(),
        database_url: common.database_url.clone(),
        postgres_port: pool.connect_options().get_port(),
    };
    let topics = schemas::topics::aggregate_topics(&args.topic_prefix);
    let started_at = Utc::now();
    let mut rng = StdRng::seed_from_u64(common.seed);
    let skus = stock_skus(&client, common, args.skus, &mut rng).await?;

    let mut segments = Vec::new();
    for run in 1..=args.runs {
        for fault in &faults {
            let segment = segment(
                common, args, *fault, run, pause, &run_dir, &endpoints, &client, &pool, &topics,
                &skus, &mut rng,
            )
            .await
            .with_context(|| format!("run {run}, fault {}", fault.name()))?;
            eprintln!("{}", segment_line(&segment));
            segments.push(segment);
        }
    }
    let passed = segments.iter().all(Segment::passed);
    let table = table(&segments, &faults);
    let report = Report {
        scenario: "chaos",
        started_at,
        smoke: common.smoke,
        machine: Machine::current(),
        config: Config {
            common,
            chaos: args,
            faults,
        },
        summary: format!(
            "chaos: {} segments, {}\n{table}",
            segments.len(),
            if passed { "PASS" } else { "FAIL" }
        ),
        results: Results { segments, table },
        passed: Some(passed),
    };
    report.emit(common.json.as_deref())?;
    Ok(passed)
}

/// Fresh SKUs for this run, each stocked for every order it could get.
async fn stock_skus(
    client: &reqwest::Client,
    common: &Common,
    count: usize,
    rng: &mut StdRng,
) -> anyhow::Result<Vec<String>> {
    let run: u32 = rng.random();
    let mut skus = Vec::with_capacity(count);
    for index in 0..count {
        let sku = format!("CHAOS-{run:08X}-{index}");
        let response = client
            .post(format!("{}/inventory/{sku}/stock", common.command_url))
            .json(&serde_json::json!({ "quantity": STOCK_PER_SKU }))
            .send()
            .await
            .with_context(|| format!("stocking {sku}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "stocking {sku} answered {}",
            response.status()
        );
        skus.push(sku);
    }
    Ok(skus)
}

#[allow(clippy::too_many_arguments)]
async fn segment(
    common: &Common,
    args: &ChaosArgs,
    fault: Fault,
    run: usize,
    pause: Duration,
    run_dir: &std::path::Path,
    endpoints: &Endpoints,
    client: &reqwest::Client,
    pool: &PgPool,
    topics: &[String],
    skus: &[String],
    rng: &mut StdRng,
) -> anyhow::Result<Segment> {
    let marks = Marks::take(pool, &args.kafka_brokers, topics).await?;
    let ledger = SharedLedger::default();
    let settlements = SharedSettlements::default();
    let (stop_watch, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(flows::watch_settlements(
        pool.clone(),
        Arc::clone(&ledger),
        Arc::clone(&settlements),
        SETTLE_POLL,
        stopped,
    ));

    let schedule = open_loop::Schedule {
        warmup: Duration::ZERO,
        ..common.schedule()
    };
    let load_started = Instant::now();
    let injected_at = schedule.duration.mul_f64(rng.random_range(0.2..0.5));
    let injection = {
        let (run_dir, endpoints, client) = (run_dir.to_owned(), endpoints.clone(), client.clone());
        tokio::spawn(async move {
            tokio::time::sleep(injected_at).await;
            fault::inject(fault, pause, &run_dir, &endpoints, &client).await
        })
    };
    let load = open_loop::run(&schedule, |_| {
        let sku = skus[rng.random_range(0..skus.len())].clone();
        flows::order_flow(
            client.clone(),
            common.command_url.clone(),
            sku,
            Arc::clone(&ledger),
        )
    })
    .await;
    let load_ended = Instant::now();
    let timing = injection.await.context("the fault task panicked")??;

    let settled = settle(pool, &ledger, &settlements, marks.global_position, args).await?;
    stop_watch.send_replace(true);
    watcher.await.context("the settlement watcher panicked")?;

    let (acknowledged, placed) = {
        let ledger = flows::lock(&ledger);
        (ledger.acknowledged_events.clone(), ledger.placed.clone())
    };
    let unsettled = flows::unsettled(&ledger, &settlements);
    let placed_ids: Vec<_> = placed.iter().map(|(id, _)| *id).collect();
    let check = checks::segment(
        pool,
        &args.kafka_brokers,
        topics,
        &marks,
        &acknowledged,
        &placed_ids,
        unsettled.len() as u64,
    )
    .await?;
    let read_models = checks::read_models_against_rebuild(pool).await?;

    let settled_at = settlements
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .settled
        .clone();
    let mut latency = Latencies::default();
    let mut last_settle_before_restart = timing.injected;
    for (order, placed_at) in &placed {
        if let Some(at) = settled_at.get(order) {
            latency.record(at.saturating_duration_since(*placed_at));
            if *placed_at < timing.restarted {
                last_settle_before_restart = last_settle_before_restart.max(*at);
            }
        }
    }
    let recovered = timing.ready.max(last_settle_before_restart);
    let tags = |tag: &str| load.tags.get(tag).copied().unwrap_or(0);
    Ok(Segment {
        fault,
        run,
        injected_at_s: timing.injected.duration_since(load_started).as_secs_f64(),
        down_s: seconds_between(&timing, timing.restarted),
        answering_after_s: seconds_between(&timing, timing.ready),
        recovery_s: seconds_between(&timing, recovered),
        settled_after_load_s: settled.saturating_duration_since(load_ended).as_secs_f64(),
        bad_answers: load
            .statuses
            .other
            .iter()
            .filter(|(status, _)| (500..600).contains(*status) && **status != 503)
            .map(|(_, n)| n)
            .sum::<u64>()
            + tags(flows::TIMED_OUT),
        unavailable_without_retry_after: tags(flows::NO_RETRY_AFTER),
        settle_latency: (latency.len() > 0).then(|| latency.summary()),
        load,
        check,
        read_models,
    })
}

fn seconds_between(timing: &Timing, at: Instant) -> f64 {
    at.saturating_duration_since(timing.injected).as_secs_f64()
}

/// Waits until every placed order has settled, the outbox is empty and every projection
/// holds the segment's events; returns when. Gives up (and lets the checks report what is
/// missing) after `--settle-timeout`.
async fn settle(
    pool: &PgPool,
    ledger: &SharedLedger,
    settlements: &SharedSettlements,
    from: i64,
    args: &ChaosArgs,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.settle_timeout);
    loop {
        let pending = flows::unsettled(ledger, settlements);
        let settled_now = flows::look(pool, &pending, settlements).await;
        if settled_now == pending.len() && checks::pipeline_idle(pool, from).await {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            eprintln!(
                "chaos: the pipeline did not settle within {}s ({} flows pending)",
                args.settle_timeout,
                pending.len() - settled_now
            );
            return Ok(Instant::now());
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

fn segment_line(segment: &Segment) -> String {
    format!(
        "chaos run {} {:>12}: killed at {:.1}s, answering after {:.1}s, recovered after {:.1}s | flows {} | lost {} skipped {} behind {} mismatched {} saga anomalies {} duplicates {} bad answers {} | {}",
        segment.run,
        segment.fault.name(),
        segment.injected_at_s,
        segment.answering_after_s,
        segment.recovery_s,
        crate::report::open_loop_line(&segment.load),
        segment.check.lost_acknowledged + segment.check.missing_on_kafka,
        segment.check.reordered_aggregates,
        segment.check.read_model_behind,
        segment.read_model_mismatches(),
        segment.check.saga_anomalies(),
        segment.check.duplicates,
        segment.bad_answers,
        if segment.passed() { "PASS" } else { "FAIL" },
    )
}

/// One row per fault: runs, lost, skipped, mismatched, saga anomalies, recovery p50/max,
/// duplicates, and the refused flows by status.
fn table(segments: &[Segment], faults: &[Fault]) -> String {
    let mut lines = vec![
        "| fault | runs | lost events | skipped events | read-model mismatches | saga anomalies | recovery p50 / max (s) | duplicates | refused flows (status: n) | 5xx other than 503, hangs |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    for fault in faults {
        let of: Vec<&Segment> = segments.iter().filter(|s| s.fault == *fault).collect();
        if of.is_empty() {
            continue;
        }
        let sum = |f: &dyn Fn(&Segment) -> u64| of.iter().map(|s| f(s)).sum::<u64>();
        let mut recovery: Vec<f64> = of.iter().map(|s| s.recovery_s).collect();
        recovery.sort_by(f64::total_cmp);
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        for segment in &of {
            *refused.entry("409".into()).or_default() += segment.load.statuses.conflict_409;
            for (status, n) in &segment.load.statuses.other {
                *refused.entry(status.to_string()).or_default() += n;
            }
            *refused.entry("no answer".into()).or_default() += segment.load.errors;
        }
        let refused: Vec<String> = refused
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        lines.push(format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} / {:.1} | {} | {} | {} |",
            fault.name(),
            of.len(),
            sum(&|s| s.check.lost_acknowledged + s.check.missing_on_kafka),
            sum(&|s| s.check.reordered_aggregates + s.check.read_model_behind),
            sum(&Segment::read_model_mismatches),
            sum(&|s| s.check.saga_anomalies()),
            recovery[(recovery.len() - 1) / 2],
            recovery[recovery.len() - 1],
            sum(&|s| s.check.duplicates),
            if refused.is_empty() {
                "none".to_owned()
            } else {
                refused.join(", ")
            },
            sum(&|s| s.bad_answers),
        ));
    }
    lines.join("\n")
}
