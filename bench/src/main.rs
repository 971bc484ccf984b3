//! `bench`: open-loop load generator and benchmark scenarios against the running platform
//! (`cargo xtask up`), plus the scenarios that need a scratch database of their own
//! (pgbench baseline, rebuild, aggregate load). Each subcommand prints one summary line
//! and, with `--json`, writes a report with its configuration, results and the machine's
//! facts; `bench report` runs them all several times into one report.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod chaos;
mod commands;
mod freshness;
mod hot;
mod load;
mod open_loop;
mod pgbench;
mod rebuild;
mod relay;
mod report;
mod rss;
mod scratch;
mod suite;
mod triggers;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::open_loop::Schedule;

#[derive(Debug, Parser)]
#[command(name = "bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// S1: commands at a fixed rate (add stock to Zipf-chosen SKUs, or create orders).
    Commands {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: commands::CommandsArgs,
    },
    /// S2: closed-loop writers racing on one SKU with If-Match; checks for lost updates.
    Hot {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: hot::HotArgs,
    },
    /// S4: event append → consumer receipt latency, or outbox drain rate with --drain.
    Relay {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: relay::RelayArgs,
    },
    /// S5: command response → query API answer at the command's version.
    Freshness {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: freshness::FreshnessArgs,
    },
    /// Whole orders at a steady rate while each part of the platform is killed and
    /// restarted in turn; checks that nothing was lost, skipped or done twice.
    Chaos {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: chaos::ChaosArgs,
    },
    /// S1 baseline: pgbench with the event store's INSERT on a scratch database.
    Pgbench(pgbench::PgbenchArgs),
    /// S6: seed a scratch event store, rebuild the `stock` projection from it.
    Rebuild(rebuild::RebuildArgs),
    /// S7: aggregate load time against stream length, with and without snapshots.
    Load(load::LoadArgs),
    /// What each event-store trigger costs per appended event (EXPLAIN ANALYZE on a
    /// scratch store).
    Triggers(triggers::TriggersArgs),
    /// Every scenario, several runs each: a markdown + JSON report with medians.
    Report(suite::SuiteArgs),
}

/// Flags every scenario takes.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Common {
    /// Offered load in requests per second (open loop: sent on schedule, whatever the
    /// answers).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Measured period in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds of load before the measured period (sent, not recorded).
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seed of the key and id choices, so runs are repeatable.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub command_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub query_url: String,
    /// The event store (read for checks and timestamps, written by `relay --drain`).
    #[arg(
        long,
        env = "KEEL_DATABASE_URL",
        default_value = "postgres://keel:keel@127.0.0.1:5432/keel",
        hide_env_values = true,
        hide_default_value = true
    )]
    #[serde(skip)]
    pub database_url: String,
    /// Most requests in flight; a request due while all are taken waits (its wait counts
    /// in its latency) and is reported as late.
    #[arg(long, default_value_t = 512)]
    pub concurrency_limit: usize,
    /// Also write the full report as JSON to this file.
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<PathBuf>,
    /// About 2 seconds at a low rate, no warm-up: checks that the harness still works.
    #[arg(long)]
    pub smoke: bool,
}

impl Common {
    const SMOKE_RATE: f64 = 20.0;
    const SMOKE_SECONDS: f64 = 2.0;

    fn validated(mut self) -> anyhow::Result<Self> {
        if self.smoke {
            self.rate = self.rate.min(Self::SMOKE_RATE);
            self.duration = Self::SMOKE_SECONDS;
            self.warmup = 0.0;
        }
        anyhow::ensure!(
            self.rate.is_finite() && self.rate > 0.0,
            "--rate must be positive"
        );
        anyhow::ensure!(
            self.duration.is_finite() && self.duration > 0.0,
            "--duration must be positive"
        );
        anyhow::ensure!(
            self.warmup.is_finite() && self.warmup >= 0.0,
            "--warmup must not be negative"
        );
        anyhow::ensure!(
            self.concurrency_limit > 0,
            "--concurrency-limit must be at least 1"
        );
        self.command_url = self.command_url.trim_end_matches('/').to_owned();
        self.query_url = self.query_url.trim_end_matches('/').to_owned();
        Ok(self)
    }

    pub fn schedule(&self) -> Schedule {
        Schedule {
            rate: self.rate,
            warmup: self.warmup_period(),
            duration: self.measured_period(),
            concurrency_limit: self.concurrency_limit,
        }
    }

    pub fn warmup_period(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    pub fn measured_period(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let passed = match Cli::parse().scenario {
        Scenario::Commands { common, args } => commands::run(&common.validated()?, &args).await?,
        Scenario::Hot { common, args } => hot::run(&common.validated()?, &args).await?,
        Scenario::Relay { common, args } => relay::run(&common.validated()?, &args).await?,
        Scenario::Freshness { common, args } => freshness::run(&common.validated()?, &args).await?,
        Scenario::Chaos { common, args } => chaos::run(&common.validated()?, &args).await?,
        Scenario::Pgbench(args) => pgbench::run(&args).await?,
        Scenario::Rebuild(args) => rebuild::run(&args).await?,
        Scenario::Load(args) => load::run(&args).await?,
        Scenario::Triggers(args) => triggers::run(&args).await?,
        Scenario::Report(args) => suite::run(&args).await?,
    };
    if !passed {
        // A failed correctness check must fail CI, not just print FAIL.
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn smoke_caps_rate_and_time() {
        let cli = Cli::parse_from(["bench", "commands", "--rate", "5000", "--smoke"]);
        let Scenario::Commands { common, .. } = cli.scenario else {
            panic!("commands expected");
        };
        let common = common.validated().expect("valid");
        assert_eq!(common.rate, Common::SMOKE_RATE);
        assert_eq!(common.duration, Common::SMOKE_SECONDS);
        assert_eq!(common.warmup, 0.0);
    }
}
