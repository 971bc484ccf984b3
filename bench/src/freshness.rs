//! S5: end-to-end freshness. At `--rate`, add stock to a Zipf-chosen SKU, then ask the
//! query API for that SKU at the version the command returned
//! (`GET /stock/{sku}?min_version=N`). The query API holds the request until its read
//! model reaches N, or answers 503 `not_yet_consistent` when it does not in time (a miss).
//! Freshness = command response → query response, so it includes one query round trip.
//!
//! With `--poison-rate`, messages that can never decode (not a Confluent frame, or a schema
//! id the registry does not have) are produced to the inventory topic meanwhile, each under
//! a key of its own: invariant 7 says they are dead-lettered without slowing the good
//! events down, so compare freshness with and without them. They stay in the platform's
//! dead letters (keys `bench-poison-…`), as an operator would find them.

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
    /// Undecodable messages produced per second to `<topic prefix>inventory` during the
    /// run (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub poison_rate: f64,
    /// Kafka bootstrap servers (for `--poison-rate`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// The platform's topic prefix (for `--poison-rate`).
    #[arg(long, default_value = "keel.")]
    pub topic_prefix: String,
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
    /// Undecodable messages produced during the run.
    poison_sent: u64,
    /// Resident memory and CPU time of the platform's processes during the run.
    #[serde(flatten)]
    footprint: Footprint,
}

pub async fn run(common: &Common, args: &FreshnessArgs) -> anyhow::Result<bool> {
    let client = http_client(common.concurrency_limit)?;
    require_ready(&client, &common.command_url).await?;
    require_ready(&client, &common.query_url).await?;
    let mut picker = args.keys.picker(common.seed)?;
    anyhow::ensure!(
        args.poison_rate.is_finite() && args.poison_rate >= 0.0,
        "--poison-rate must not be negative"
    );
    let started_at = Utc::now();
    let footprint = RssSampler::start();
    let poison = (args.poison_rate > 0.0)
        .then(|| poison::start(&args.brokers, &args.topic_prefix, args.poison_rate))
        .transpose()?;
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
    let poison_sent = match poison {
        Some(poison) => poison.stop().await?,
        None => 0,
    };
    let footprint = footprint.finish().await;

    let results = FreshnessResults {
        poison_sent,
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
        "freshness: command→query-at-version {freshness} misses={} commands_rejected={} poison_sent={} | rounds {} due→query {}",
        results.misses,
        results.commands_rejected,
        results.poison_sent,
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

/// The poison producer of `--poison-rate`.
mod poison {
    use std::time::Duration;

    use anyhow::Context;
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    pub struct Poison {
        stop: CancellationToken,
        task: JoinHandle<anyhow::Result<u64>>,
    }

    /// The two kinds, alternating: not a Confluent frame; a frame whose schema id the
    /// registry answers 404 for.
    fn payload(n: u64) -> Vec<u8> {
        if n.is_multiple_of(2) {
            b"bench poison: not avro".to_vec()
        } else {
            vec![0, 0x7f, 0xff, 0xff, 0xf1, 0xde, 0xad]
        }
    }

    pub fn start(brokers: &str, topic_prefix: &str, rate: f64) -> anyhow::Result<Poison> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("message.timeout.ms", "10000")
            .create()
            .context("Kafka producer for --poison-rate")?;
        let topic = format!("{topic_prefix}inventory");
        let stop = CancellationToken::new();
        let period = Duration::from_secs_f64(1.0 / rate);
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let run = uuid::Uuid::new_v4().simple().to_string();
                let mut tick = tokio::time::interval(period);
                let mut sent = 0;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return Ok(sent),
                        _ = tick.tick() => {}
                    }
                    let key = format!("bench-poison-{}-{sent}", &run[..8]);
                    producer
                        .send(
                            FutureRecord::to(&topic).key(&key).payload(&payload(sent)),
                            Duration::from_secs(10),
                        )
                        .await
                        .map_err(|(error, _)| error)
                        .with_context(|| format!("producing poison to {topic}"))?;
                    sent += 1;
                }
            }
        });
        Ok(Poison { stop, task })
    }

    impl Poison {
        /// Stops producing; returns how many were sent.
        pub async fn stop(self) -> anyhow::Result<u64> {
            self.stop.cancel();
            self.task.await.context("poison producer task")?
        }
    }
}
