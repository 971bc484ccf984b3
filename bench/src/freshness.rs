//! S5: end-to-end freshness. At `--rate`, add stock to a Zipf-chosen SKU, then ask the
//! query API for that SKU at the version the command returned
//! (`GET /stock/{sku}?min_version=N`). The query API holds the request until its read
//! model reaches N, or answers 503 `not_yet_consistent` when it does not in time (a miss).
//! Freshness = command response → query response, so it includes one query round trip.

use chrono::Utc;
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use crate::Common;
use crate::open_loop::{self, LatencySummary, OpenLoopResult, Sample};
use crate::report::{Machine, Report, open_loop_line, percentiles};
use crate::rss::{Footprint, RssSampler};
use crate::workload::{KeyArgs, add_stock, error_chain, http_client, read_answer, require_ready};

/// Tag of a query answered 503: the read model did not catch up in the API's wait.
const MISS: &str = "miss";
/// Tag of a command that was not accepted (then no query is sent).
const COMMAND_REJECTED: &str = "command_rejected";

#[derive(Debug, Clone, Args, Serialize)]
pub struct FreshnessArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Serialize)]
struct Config<'a> {
    common: &'a Common,
    freshness: &'a FreshnessArgs,
}

#[derive(Debug, Serialize)]
struct FreshnessResults {
    /// Command response → query response at the command's version; 200 answers only.
    freshness: Option<LatencySummary>,
    /// Queries answered 503 (not caught up within the query API's wait).
    misses: u64,
    commands_rejected: u64,
    /// Statuses are the query's, or the command's when it was rejected; latency runs from
    /// the command's due time to the query's answer.
    round: OpenLoopResult,
    /// Resident memory and CPU time of the platform's processes during the run.
    #[serde(flatten)]
    footprint: Footprint,
}

pub async fn run(common: &Common, args: &FreshnessArgs) -> anyhow::Result<bool> {
    let client = http_client(common.concurrency_limit)?;
    require_ready(&client, &common.command_url).await?;
    require_ready(&client, &common.query_url).await?;
    let mut picker = args.keys.picker(common.seed)?;
    let started_at = Utc::now();
    let footprint = RssSampler::start();
    let round = open_loop::run(&common.schedule(), |_| {
        let sku = picker.next_sku();
        let command = add_stock(&client, &common.command_url, &sku, None);
        let client = client.clone();
        let query_url = common.query_url.clone();
        async move {
            let answer = match command.send().await {
                Ok(response) => read_answer(response).await,
                Err(error) => Err(error),
            };
            let version = match answer {
                Ok((status, answer)) if status.is_success() => match answer.version {
                    Some(version) => version,
                    None => return Sample::error("a command success without a version"),
                },
                Ok((status, _)) => {
                    return Sample {
                        status: Some(status.as_u16()),
                        tag: Some(COMMAND_REJECTED),
                        ..Sample::default()
                    };
                }
                Err(error) => return Sample::error(error_chain(&error)),
            };
            let answered_at = Instant::now();
            let query = client
                .get(format!("{query_url}/stock/{sku}"))
                .query(&[("min_version", version)])
                .send()
                .await;
            match query {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if let Err(error) = response.bytes().await {
                        return Sample::error(error_chain(&error));
                    }
                    let caught_up_at = Instant::now();
                    match status {
                        200 => Sample {
                            status: Some(status),
                            secondary: Some(caught_up_at - answered_at),
                            ..Sample::default()
                        },
                        503 => Sample {
                            status: Some(status),
                            tag: Some(MISS),
                            ..Sample::default()
                        },
                        _ => Sample::status(status),
                    }
                }
                Err(error) => Sample::error(error_chain(&error)),
            }
        }
    })
    .await;
    let footprint = footprint.finish().await;

    let results = FreshnessResults {
        footprint,
        freshness: round.secondary.clone(),
        misses: round.tags.get(MISS).copied().unwrap_or_default(),
        commands_rejected: round
            .tags
            .get(COMMAND_REJECTED)
            .copied()
            .unwrap_or_default(),
        round,
    };
    let freshness = results
        .freshness
        .as_ref()
        .map_or_else(|| "no answers".to_owned(), percentiles);
    let summary = format!(
        "freshness: command→query-at-version {freshness} misses={} commands_rejected={} | rounds {} due→query {}",
        results.misses,
        results.commands_rejected,
        open_loop_line(&results.round),
        percentiles(&results.round.latency),
    );
    Report {
        scenario: "freshness",
        started_at,
        smoke: common.smoke,
        machine: Machine::current(),
        config: Config {
            common,
            freshness: args,
        },
        results: &results,
        summary,
        passed: None,
    }
    .emit(common.json.as_deref())?;
    Ok(true)
}
