//! S2: hot-aggregate contention. `--writers` closed-loop writers add stock to one SKU, each
//! command conditional on the version it last saw (`If-Match`). A refused command (412
//! version mismatch before deciding, or 409 when another append won the race) carries the
//! current version, and the writer retries with it. With `--unconditional` the writers send
//! no `If-Match`, and the API decides a lost race again. At the end the event store must hold
//! exactly one event per acknowledged command, and no two acknowledgements may claim the
//! same version: otherwise an update was lost.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;
use uuid::Uuid;

use crate::Common;
use crate::open_loop::{Latencies, LatencySummary};
use crate::report::{Machine, Report, percentiles};
use crate::rss::{Footprint, RssSampler};
use crate::workload::{add_stock, error_chain, http_client, read_answer, require_ready};

/// Pause after a failure without a usable answer, so a down service is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Args, Serialize)]
pub struct HotArgs {
    /// Concurrent closed-loop writers (the common --rate does not apply).
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// The SKU to write to; by default a new one per run, `BENCH-HOT-<random>`.
    #[arg(long)]
    pub sku: Option<String>,
    /// Send no `If-Match`: every command asks for no particular version, so a lost race is
    /// decided again by the API instead of refused.
    #[arg(long)]
    pub unconditional: bool,
}

#[derive(Debug, Serialize)]
struct Config<'a> {
    common: &'a Common,
    hot: &'a HotArgs,
    sku: &'a str,
}

/// What one writer saw. "Measured" counts only attempts started in the measured period;
/// the totals (for the lost-update check) count everything.
#[derive(Debug, Default)]
struct WriterTally {
    successes_total: u64,
    acknowledged_versions: Vec<u64>,
    unknown_outcomes_total: u64,
    attempts: u64,
    successes: u64,
    mismatches_412: u64,
    conflicts_409: u64,
    other_statuses: BTreeMap<u16, u64>,
    errors: u64,
    error_examples: Vec<String>,
    attempt_latency: Latencies,
    success_latency: Latencies,
    attempts_per_success: AttemptCounts,
}

/// How many attempts each acknowledged command took.
#[derive(Debug)]
struct AttemptCounts(Histogram<u64>);

impl Default for AttemptCounts {
    fn default() -> Self {
        Self(Histogram::new(3).expect("valid histogram precision"))
    }
}

#[derive(Debug, Serialize)]
struct AttemptsSummary {
    mean: f64,
    p50: u64,
    p99: u64,
    max: u64,
}

impl AttemptCounts {
    fn summary(&self) -> AttemptsSummary {
        AttemptsSummary {
            mean: self.0.mean(),
            p50: self.0.value_at_quantile(0.5),
            p99: self.0.value_at_quantile(0.99),
            max: self.0.max(),
        }
    }
}

#[derive(Debug, Serialize)]
struct HotResults {
    sku: String,
    writers: usize,
    measured_seconds: f64,
    successes_per_s: f64,
    attempts: u64,
    successes: u64,
    mismatches_412: u64,
    conflicts_409: u64,
    /// (412 + 409) / attempts.
    conflict_rate: f64,
    other_statuses: BTreeMap<u16, u64>,
    errors: u64,
    error_examples: Vec<String>,
    /// One HTTP round trip.
    attempt_latency: LatencySummary,
    /// From a command's first attempt to its acknowledgement, retries included.
    success_latency: LatencySummary,
    /// Attempts each acknowledged command took (1 = accepted at the first try).
    attempts_per_success: AttemptsSummary,
    check: LostUpdateCheck,
    /// Resident memory and CPU time of the platform's processes during the run.
    #[serde(flatten)]
    footprint: Footprint,
}

#[derive(Debug, Serialize)]
struct LostUpdateCheck {
    /// The SKU's version before the writers started (after one unconditional command).
    initial_version: u64,
    /// Every acknowledged command, warm-up included.
    acknowledged: u64,
    /// Requests that failed without an answer (or with a 5xx): they may or may not have
    /// been applied.
    unknown_outcomes: u64,
    /// `SELECT max(sequence)` of the SKU's stream.
    stored_max_sequence: u64,
    /// Whether the acknowledged versions are exactly initial+1 ..= initial+acknowledged.
    versions_distinct_and_contiguous: bool,
    passed: bool,
}

pub async fn run(common: &Common, args: &HotArgs) -> anyhow::Result<bool> {
    let writers = if common.smoke {
        args.writers.clamp(1, 4)
    } else {
        args.writers.max(1)
    };
    let sku = args
        .sku
        .clone()
        .unwrap_or_else(|| format!("BENCH-HOT-{}", &Uuid::new_v4().simple().to_string()[..12]));
    let client = http_client(writers)?;
    require_ready(&client, &common.command_url).await?;
    let database = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&common.database_url)
        .await
        .context("connecting to the event store (--database-url / KEEL_DATABASE_URL)")?;

    // One unconditional command creates the item (or finds it, with --sku) and tells
    // every writer where to start.
    let (status, answer) = read_answer(
        add_stock(&client, &common.command_url, &sku, None)
            .send()
            .await
            .context("first command")?,
    )
    .await
    .context("first command")?;
    let initial_version = answer
        .version
        .filter(|_| status.is_success())
        .with_context(|| format!("the first command on {sku} answered {status}"))?;

    let started_at = Utc::now();
    let footprint = RssSampler::start();
    let start = Instant::now();
    let measured_from = start + common.warmup_period();
    let end = measured_from + common.measured_period();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let client = client.clone();
        let url = common.command_url.clone();
        let sku = sku.clone();
        let conditional = !args.unconditional;
        tasks.spawn(async move {
            write_until(
                &client,
                &url,
                &sku,
                initial_version,
                conditional,
                measured_from,
                end,
            )
            .await
        });
    }
    let mut total = WriterTally::default();
    while let Some(tally) = tasks.join_next().await {
        merge(&mut total, tally.context("a writer panicked")?);
    }
    let footprint = footprint.finish().await;

    let stored_max_sequence: Option<i64> = sqlx::query_scalar(
        "SELECT max(sequence) FROM events WHERE aggregate_type = 'inventory' AND aggregate_id = $1",
    )
    .bind(&sku)
    .fetch_one(&database)
    .await
    .context("reading the SKU's last sequence")?;
    let stored_max_sequence = u64::try_from(stored_max_sequence.unwrap_or(0)).unwrap_or(0);
    let mut versions = std::mem::take(&mut total.acknowledged_versions);
    versions.sort_unstable();
    let versions_distinct_and_contiguous = versions
        .iter()
        .zip(initial_version + 1..)
        .all(|(version, expected)| *version == expected);
    let check = LostUpdateCheck {
        initial_version,
        acknowledged: total.successes_total,
        unknown_outcomes: total.unknown_outcomes_total,
        stored_max_sequence,
        versions_distinct_and_contiguous,
        passed: versions_distinct_and_contiguous
            && stored_max_sequence == initial_version + total.successes_total,
    };

    let measured_seconds = common.duration;
    let refused = total.mismatches_412 + total.conflicts_409;
    let results = HotResults {
        sku: sku.clone(),
        writers,
        measured_seconds,
        successes_per_s: total.successes as f64 / measured_seconds,
        attempts: total.attempts,
        successes: total.successes,
        mismatches_412: total.mismatches_412,
        conflicts_409: total.conflicts_409,
        conflict_rate: if total.attempts == 0 {
            0.0
        } else {
            refused as f64 / total.attempts as f64
        },
        other_statuses: total.other_statuses.clone(),
        errors: total.errors,
        error_examples: total.error_examples.clone(),
        attempt_latency: total.attempt_latency.summary(),
        success_latency: total.success_latency.summary(),
        attempts_per_success: total.attempts_per_success.summary(),
        check,
        footprint,
    };
    let verdict = if results.check.passed {
        "PASS".to_owned()
    } else {
        format!(
            "FAIL (stored max sequence {} != initial {} + acknowledged {}; versions contiguous: {}; unknown outcomes: {})",
            results.check.stored_max_sequence,
            results.check.initial_version,
            results.check.acknowledged,
            results.check.versions_distinct_and_contiguous,
            results.check.unknown_outcomes,
        )
    };
    let summary = format!(
        "hot sku={} writers={writers}: success={:.1}/s attempts={} 412={} 409={} conflict_rate={:.1}% other={} errors={} success-latency {} lost-updates {verdict}",
        results.sku,
        results.successes_per_s,
        results.attempts,
        results.mismatches_412,
        results.conflicts_409,
        results.conflict_rate * 100.0,
        results.other_statuses.values().sum::<u64>(),
        results.errors,
        percentiles(&results.success_latency),
    );
    let passed = results.check.passed;
    Report {
        scenario: "hot",
        started_at,
        smoke: common.smoke,
        machine: Machine::current(),
        config: Config {
            common,
            hot: args,
            sku: &sku,
        },
        results: &results,
        summary,
        passed: Some(passed),
    }
    .emit(common.json.as_deref())?;
    Ok(passed)
}

/// One closed-loop writer: the next command starts when the previous one is acknowledged.
async fn write_until(
    client: &reqwest::Client,
    url: &str,
    sku: &str,
    mut known_version: u64,
    conditional: bool,
    measured_from: Instant,
    end: Instant,
) -> WriterTally {
    let mut tally = WriterTally::default();
    let mut command_started: Option<(Instant, u64)> = None;
    loop {
        let sent_at = Instant::now();
        if sent_at >= end {
            break;
        }
        let measured = sent_at >= measured_from;
        let (first_sent_at, refused_before) = *command_started.get_or_insert((sent_at, 0));
        let outcome = match add_stock(client, url, sku, conditional.then_some(known_version))
            .send()
            .await
        {
            Ok(response) => read_answer(response).await,
            Err(error) => Err(error),
        };
        let answered_at = Instant::now();
        if measured {
            tally.attempts += 1;
            tally.attempt_latency.record(answered_at - sent_at);
        }
        match outcome {
            Ok((status, answer)) if status.is_success() => {
                let Some(version) = answer.version else {
                    tally.unknown_outcomes_total += 1;
                    note_error(&mut tally, measured, "a success without a version".into());
                    continue;
                };
                tally.successes_total += 1;
                tally.acknowledged_versions.push(version);
                known_version = version;
                command_started = None;
                if measured {
                    tally.successes += 1;
                    tally.success_latency.record(answered_at - first_sent_at);
                    tally
                        .attempts_per_success
                        .0
                        .saturating_record(refused_before + 1);
                }
            }
            Ok((status, answer)) if matches!(status.as_u16(), 409 | 412) => {
                if measured {
                    if status.as_u16() == 412 {
                        tally.mismatches_412 += 1;
                    } else {
                        tally.conflicts_409 += 1;
                    }
                }
                command_started = Some((first_sent_at, refused_before + 1));
                match answer.current_version {
                    Some(current) => known_version = current,
                    None => {
                        note_error(
                            &mut tally,
                            measured,
                            format!("{status} without current_version"),
                        );
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                }
            }
            Ok((status, _)) => {
                if status.is_server_error() {
                    tally.unknown_outcomes_total += 1;
                }
                if measured {
                    *tally.other_statuses.entry(status.as_u16()).or_default() += 1;
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
            Err(error) => {
                tally.unknown_outcomes_total += 1;
                note_error(&mut tally, measured, error_chain(&error));
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    tally
}

fn note_error(tally: &mut WriterTally, measured: bool, error: String) {
    if measured {
        tally.errors += 1;
    }
    if tally.error_examples.len() < 5 && !tally.error_examples.contains(&error) {
        tally.error_examples.push(error);
    }
}

fn merge(total: &mut WriterTally, tally: WriterTally) {
    total.successes_total += tally.successes_total;
    total
        .acknowledged_versions
        .extend(tally.acknowledged_versions);
    total.unknown_outcomes_total += tally.unknown_outcomes_total;
    total.attempts += tally.attempts;
    total.successes += tally.successes;
    total.mismatches_412 += tally.mismatches_412;
    total.conflicts_409 += tally.conflicts_409;
    for (status, count) in tally.other_statuses {
        *total.other_statuses.entry(status).or_default() += count;
    }
    total.errors += tally.errors;
    for example in tally.error_examples {
        if total.error_examples.len() < 5 && !total.error_examples.contains(&example) {
            total.error_examples.push(example);
        }
    }
    total.attempt_latency.add(&tally.attempt_latency);
    total.success_latency.add(&tally.success_latency);
    total
        .attempts_per_success
        .0
        .add(&tally.attempts_per_success.0)
        .expect("auto-resizing histograms always add");
}
