//! The outcome of a scenario: one summary line on stdout and, on request, a JSON document
//! with the configuration, the results and the facts of the machine it ran on.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::open_loop::{LatencySummary, OpenLoopResult};

/// Where a run happened; numbers from different machines are not comparable.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub nproc: usize,
    pub os: String,
    pub arch: String,
    pub cpu_model: Option<String>,
    pub mem_total_kib: Option<u64>,
    /// Whether the bench binary was built with optimisations (debug builds are only for
    /// checking that the harness works).
    pub optimized_build: bool,
}

impl Machine {
    pub fn current() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let hostname = read("/proc/sys/kernel/hostname")
            .or_else(|| read("/etc/hostname"))
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let cpu_model = read("/proc/cpuinfo").and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        });
        let mem_total_kib = read("/proc/meminfo").and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        });
        Self {
            hostname,
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            cpu_model,
            mem_total_kib,
            optimized_build: !cfg!(debug_assertions),
        }
    }
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report<C: Serialize, R: Serialize> {
    pub scenario: &'static str,
    pub started_at: DateTime<Utc>,
    pub smoke: bool,
    pub machine: Machine,
    pub config: C,
    pub results: R,
    /// The line printed on stdout.
    pub summary: String,
    /// For scenarios with a correctness check: whether it held.
    pub passed: Option<bool>,
}

impl<C: Serialize, R: Serialize> Report<C, R> {
    /// Prints the summary and, with `json`, writes the whole report there.
    pub fn emit(&self, json: Option<&Path>) -> anyhow::Result<()> {
        println!("{}", self.summary);
        if let Some(path) = json {
            let text = serde_json::to_string_pretty(self).context("serializing the report")?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing the report to {}", path.display()))?;
            eprintln!("report written to {}", path.display());
        }
        Ok(())
    }
}

/// `p50=1.23 p90=… max=…ms`.
pub fn percentiles(latency: &LatencySummary) -> String {
    format!(
        "p50={:.2} p90={:.2} p99={:.2} p99.9={:.2} max={:.2}ms",
        latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.p999_ms, latency.max_ms
    )
}

/// The part of a summary line every open-loop scenario shares.
pub fn open_loop_line(result: &OpenLoopResult) -> String {
    let other = if result.statuses.other.is_empty() {
        String::new()
    } else {
        let codes: Vec<String> = result
            .statuses
            .other
            .iter()
            .map(|(status, count)| format!("{status}:{count}"))
            .collect();
        format!(" [{}]", codes.join(","))
    };
    format!(
        "offered={:.0}/s achieved={:.1}/s n={} 2xx={} 409={} other={}{} errors={} late={} unfinished={}",
        result.offered_rate,
        result.achieved_rate,
        result.completed,
        result.statuses.ok_2xx,
        result.statuses.conflict_409,
        result.statuses.other_total(),
        other,
        result.errors,
        result.late,
        result.unfinished,
    )
}
