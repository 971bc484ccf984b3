//! `bench report`: every scenario, several runs each, into one report (markdown + JSON) with
//! the machine, the settings, each run's key figures, their medians and the targets. Each
//! run is this binary run again as a child with `--json`, so a run is exactly what the
//! single-scenario command reproduces; the child reports stay next to the report.
//!
//! Order: pgbench ceiling, S1 (a rate sweep: the highest offered rate whose median p99 is
//! within the SLO with every request answered 2xx), S2, S4, S5 at 50 % and 80 % of the S1
//! rate and at the target rate, S6, S7. Every figure is a median over `--runs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::report::Machine;

#[derive(Debug, Clone, Args, Serialize)]
pub struct SuiteArgs {
    /// Runs per scenario and setting (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Where the report and each run's JSON go (created).
    #[arg(long, default_value = "bench/results/latest")]
    pub out: PathBuf,
    /// Measured seconds of each open-loop run.
    #[arg(long, default_value_t = 15.0)]
    pub duration: f64,
    /// Warm-up seconds of each open-loop run.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// S1 offered rates to try, in increasing order (stops after the first that misses).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,250,500,750,1000,1500,2000,3000,4000"
    )]
    pub s1_rates: Vec<f64>,
    /// S1 latency objective (p99, ms).
    #[arg(long, default_value_t = 25.0)]
    pub slo_p99_ms: f64,
    /// S5 is also run at this rate (the freshness target's rate).
    #[arg(long, default_value_t = 2000.0)]
    pub freshness_target_rate: f64,
    /// S6: events seeded (all read by `stock`).
    #[arg(long, default_value_t = 1_000_000)]
    pub rebuild_events: u64,
    /// S6 before/after: events seeded for the per-event rebuild (slow: ~5k events/s).
    #[arg(long, default_value_t = 200_000)]
    pub rebuild_per_event_events: u64,
    /// Scenarios to run (default: all): pgbench, s1, s2, s4, s5, s6, t4, s7.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub command_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub query_url: String,
    /// Tiny settings: one run, smoke-sized scenarios (checks that the suite works).
    #[arg(long)]
    pub smoke: bool,
}

/// One child run: its settings, key figures and where its report is.
#[derive(Debug, Clone, Serialize)]
struct RunRecord {
    args: Vec<String>,
    file: String,
    passed: Option<bool>,
    exit_ok: bool,
    summary: String,
    figures: BTreeMap<String, f64>,
}

/// One setting of one scenario over its runs.
#[derive(Debug, Clone, Serialize)]
struct SettingRecord {
    scenario: &'static str,
    setting: String,
    runs: Vec<RunRecord>,
    medians: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
struct Target {
    name: &'static str,
    target: String,
    measured: String,
    met: Option<bool>,
}

#[derive(Debug, Serialize)]
struct SuiteReport {
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    machine: Machine,
    load_average_start: Option<String>,
    load_average_end: Option<String>,
    settings: SuiteArgs,
    results: Vec<SettingRecord>,
    s1_rate_at_slo: Option<f64>,
    pgbench_ceiling_tps: Option<f64>,
    s1_ratio_to_pgbench: Option<f64>,
    rss: BTreeMap<String, RssRecord>,
    /// CPU milliseconds per command by process at the highest S1 rate run (median over its
    /// runs): where the two cores went.
    s1_cpu_ms_per_command: Option<(String, BTreeMap<String, f64>)>,
    targets: Vec<Target>,
    wall_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
struct RssRecord {
    /// Highest sample over every load run.
    peak_mib: f64,
    /// Median of the runs' medians.
    median_mib: f64,
    runs: usize,
}

struct Suite {
    args: SuiteArgs,
    exe: PathBuf,
    results: Vec<SettingRecord>,
}

pub async fn run(args: &SuiteArgs) -> anyhow::Result<bool> {
    let mut args = args.clone();
    if args.smoke {
        args.runs = 1;
    }
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started_at = Utc::now();
    let wall = Instant::now();
    let load_average_start = load_average();
    let mut suite = Suite {
        exe: std::env::current_exe().context("locating the bench binary")?,
        args,
        results: Vec::new(),
    };
    let only = suite.args.only.clone();
    let wants = |name: &str| suite_wants(&only, name);

    let mut pgbench_ceiling = None;
    if wants("pgbench") {
        let record = suite
            .repeat(
                "pgbench",
                "append_event.sql",
                &["pgbench"],
                &[("ceiling_tps", "/results/ceiling_tps")],
            )
            .await?;
        pgbench_ceiling = record.medians.get("ceiling_tps").copied();
    }

    let mut s1_rate = None;
    if wants("s1") {
        s1_rate = suite.s1_sweep().await?;
    }
    if wants("s2") {
        suite
            .repeat(
                "S2 hot",
                "16 writers",
                &["hot", "--writers", "16"],
                &[
                    ("successes_per_s", "/results/successes_per_s"),
                    ("conflict_rate", "/results/conflict_rate"),
                    ("p99_ms", "/results/success_latency/p99_ms"),
                ],
            )
            .await?;
    }
    if wants("s4") {
        suite
            .repeat(
                "S4 relay",
                "latency at 200/s",
                &["relay", "--rate", "200"],
                &[
                    ("p50_ms", "/results/append_to_receipt/p50_ms"),
                    ("p99_ms", "/results/append_to_receipt/p99_ms"),
                    ("missing_events", "/results/missing_events"),
                ],
            )
            .await?;
        suite
            .repeat(
                "S4 relay",
                "drain 30000",
                &["relay", "--drain", "30000"],
                &[("events_per_s", "/results/drained_events_per_s")],
            )
            .await?;
    }
    if wants("s5") {
        let base = s1_rate.unwrap_or(suite.args.s1_rates[0]);
        let mut rates = vec![
            ("50 % of S1", (base * 0.5).round()),
            ("80 % of S1", (base * 0.8).round()),
            ("target rate", suite.args.freshness_target_rate),
        ];
        rates.retain(|(_, rate)| *rate >= 1.0);
        for (label, rate) in rates {
            let rate_text = format!("{rate}");
            suite
                .repeat(
                    "S5 freshness",
                    &format!("{label}: {rate}/s"),
                    &["freshness", "--rate", &rate_text],
                    &[
                        ("achieved_per_s", "/results/round/achieved_rate"),
                        ("p50_ms", "/results/freshness/p50_ms"),
                        ("p99_ms", "/results/freshness/p99_ms"),
                        ("misses", "/results/misses"),
                    ],
                )
                .await?;
        }
    }
    if wants("s6") {
        let events = suite.args.rebuild_events.to_string();
        suite
            .repeat(
                "S6 rebuild",
                &format!("stock, set-based, {events} events"),
                &["rebuild", "--events", &events, "--fold", "set-based"],
                &[
                    ("events_per_s", "/results/runs/0/events_per_s"),
                    ("events", "/results/runs/0/events_read"),
                    ("seconds", "/results/runs/0/seconds"),
                ],
            )
            .await?;
        let events = suite.args.rebuild_per_event_events.to_string();
        suite
            .repeat(
                "S6 rebuild",
                &format!("stock, per-event (before), {events} events"),
                &["rebuild", "--events", &events, "--fold", "per-event"],
                &[
                    ("events_per_s", "/results/runs/0/events_per_s"),
                    ("events", "/results/runs/0/events_read"),
                    ("seconds", "/results/runs/0/seconds"),
                ],
            )
            .await?;
    }
    if wants("t4") {
        let events = suite.args.rebuild_events.to_string();
        suite
            .repeat(
                "T4 rebuild",
                &format!("every projection, set-based, fulfilment mix, {events} events"),
                &[
                    "rebuild",
                    "--events",
                    &events,
                    "--mix",
                    "fulfilment",
                    "--projection",
                    "orders,stock,payments",
                    "--fold",
                    "set-based",
                ],
                &[
                    ("orders_events_per_s", "/results/runs/0/events_per_s"),
                    ("orders_events", "/results/runs/0/events_read"),
                    ("stock_events_per_s", "/results/runs/1/events_per_s"),
                    ("stock_events", "/results/runs/1/events_read"),
                    ("payments_events_per_s", "/results/runs/2/events_per_s"),
                    ("payments_events", "/results/runs/2/events_read"),
                ],
            )
            .await?;
    }
    if wants("s7") {
        let mut figures = Vec::new();
        for (index, length) in [10, 100, 1_000, 10_000].into_iter().enumerate() {
            for (offset, mode) in ["full", "snap"].into_iter().enumerate() {
                let at = index * 2 + offset;
                figures.push((
                    format!("{length}_{mode}_p50_ms"),
                    format!("/results/streams/{at}/loads/p50_ms"),
                ));
                figures.push((
                    format!("{length}_{mode}_p99_ms"),
                    format!("/results/streams/{at}/loads/p99_ms"),
                ));
            }
        }
        let figures: Vec<(&str, &str)> = figures
            .iter()
            .map(|(name, pointer)| (name.as_str(), pointer.as_str()))
            .collect();
        suite
            .repeat("S7 load", "10 to 10,000 events", &["load"], &figures)
            .await?;
    }

    let s1_ratio = match (s1_rate, pgbench_ceiling) {
        (Some(s1), Some(ceiling)) if ceiling > 0.0 => Some(s1 / ceiling),
        _ => None,
    };
    let rss = rss_over_runs(&suite.results, &suite.args.out);
    let s1_cpu_ms_per_command = cpu_per_command(&suite.results, &suite.args.out);
    let targets = targets(&suite.results, s1_rate, s1_ratio, &rss, &suite.args);
    let report = SuiteReport {
        started_at,
        finished_at: Utc::now(),
        machine: Machine::current(),
        load_average_start,
        load_average_end: load_average(),
        s1_rate_at_slo: s1_rate,
        pgbench_ceiling_tps: pgbench_ceiling,
        s1_ratio_to_pgbench: s1_ratio,
        rss,
        s1_cpu_ms_per_command,
        targets,
        wall_seconds: wall.elapsed().as_secs_f64(),
        results: suite.results,
        settings: suite.args.clone(),
    };
    let json = serde_json::to_string_pretty(&report).context("serializing the report")?;
    let json_path = suite.args.out.join("report.json");
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let markdown_path = suite.args.out.join("report.md");
    std::fs::write(&markdown_path, markdown(&report))
        .with_context(|| format!("writing {}", markdown_path.display()))?;
    println!(
        "report written to {} and {}",
        markdown_path.display(),
        json_path.display()
    );
    let passed = report
        .results
        .iter()
        .flat_map(|setting| &setting.runs)
        .all(|run| run.exit_ok && run.passed != Some(false));
    Ok(passed)
}

fn suite_wants(only: &[String], name: &str) -> bool {
    only.is_empty() || only.iter().any(|wanted| wanted.eq_ignore_ascii_case(name))
}

impl Suite {
    /// Common flags of the open-loop scenarios.
    fn open_loop_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--duration".to_owned(),
            self.args.duration.to_string(),
            "--warmup".to_owned(),
            self.args.warmup.to_string(),
            "--command-url".to_owned(),
            self.args.command_url.clone(),
            "--query-url".to_owned(),
            self.args.query_url.clone(),
        ];
        if self.args.smoke {
            flags.push("--smoke".to_owned());
        }
        flags
    }

    /// Runs `scenario_args` `--runs` times and records `figures` (name, JSON pointer).
    async fn repeat(
        &mut self,
        scenario: &'static str,
        setting: &str,
        scenario_args: &[&str],
        figures: &[(&str, &str)],
    ) -> anyhow::Result<SettingRecord> {
        let open_loop = matches!(
            scenario_args.first(),
            Some(&("commands" | "hot" | "relay" | "freshness"))
        );
        let mut args: Vec<String> = scenario_args.iter().map(|a| (*a).to_owned()).collect();
        if open_loop {
            args.extend(self.open_loop_flags());
        } else if self.args.smoke {
            args.push("--smoke".to_owned());
        }
        let mut runs = Vec::new();
        for run in 1..=self.args.runs {
            let mut run_args = args.clone();
            if open_loop {
                // A different seed per run: the same key sequence would hit warm caches.
                run_args.extend(["--seed".to_owned(), (41 + run).to_string()]);
            }
            runs.push(
                self.run_child(scenario, setting, run, run_args, figures)
                    .await?,
            );
        }
        let medians = medians(&runs);
        let record = SettingRecord {
            scenario,
            setting: setting.to_owned(),
            runs,
            medians,
        };
        self.results.push(record.clone());
        Ok(record)
    }

    async fn run_child(
        &self,
        scenario: &str,
        setting: &str,
        run: usize,
        args: Vec<String>,
        figures: &[(&str, &str)],
    ) -> anyhow::Result<RunRecord> {
        let slug: String = format!("{scenario} {setting} {run}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let file = format!("{}.json", slug.to_ascii_lowercase());
        let path = self.args.out.join(&file);
        std::fs::remove_file(&path).ok();
        eprintln!(
            "==> {scenario} [{setting}] run {run}: bench {}",
            args.join(" ")
        );
        let status = tokio::process::Command::new(&self.exe)
            .args(&args)
            .arg("--json")
            .arg(&path)
            .status()
            .await
            .with_context(|| format!("running {}", self.exe.display()))?;
        let report: Option<Value> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let figures = report
            .as_ref()
            .map(|report| {
                figures
                    .iter()
                    .filter_map(|(name, pointer)| {
                        report
                            .pointer(pointer)
                            .and_then(Value::as_f64)
                            .map(|value| ((*name).to_owned(), value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(RunRecord {
            args,
            file,
            passed: report
                .as_ref()
                .and_then(|r| r.pointer("/passed"))
                .and_then(Value::as_bool),
            exit_ok: status.success(),
            summary: report
                .as_ref()
                .and_then(|r| r.pointer("/summary"))
                .and_then(Value::as_str)
                .unwrap_or("no report (the run failed; see its output)")
                .to_owned(),
            figures,
        })
    }

    /// S1: offered rates in increasing order until the median p99 misses the SLO, any
    /// request is not answered 2xx, or the achieved rate falls short of the offered one.
    /// Returns the median achieved rate at the highest rate that met all three.
    async fn s1_sweep(&mut self) -> anyhow::Result<Option<f64>> {
        let rates = if self.args.smoke {
            vec![self.args.s1_rates[0]]
        } else {
            self.args.s1_rates.clone()
        };
        let mut best = None;
        for rate in rates {
            let rate_text = rate.to_string();
            let record = self
                .repeat(
                    "S1 commands",
                    &format!("create-order at {rate}/s"),
                    &[
                        "commands",
                        "--scenario",
                        "create-order",
                        "--rate",
                        &rate_text,
                    ],
                    &[
                        ("achieved_per_s", "/results/achieved_rate"),
                        ("p50_ms", "/results/latency/p50_ms"),
                        ("p99_ms", "/results/latency/p99_ms"),
                        ("p999_ms", "/results/latency/p999_ms"),
                        ("ok_2xx", "/results/statuses/ok_2xx"),
                        ("completed", "/results/completed"),
                        ("errors", "/results/errors"),
                    ],
                )
                .await?;
            let median = |name: &str| record.medians.get(name).copied();
            let all_2xx = record.runs.iter().all(|run| {
                run.figures.contains_key("ok_2xx")
                    && run.figures.get("ok_2xx") == run.figures.get("completed")
                    && run.figures.get("errors") == Some(&0.0)
            });
            let met = all_2xx
                && median("p99_ms").is_some_and(|p99| p99 <= self.args.slo_p99_ms)
                && median("achieved_per_s").is_some_and(|achieved| achieved >= rate * 0.98);
            if !met {
                eprintln!("  S1 at {rate}/s misses the SLO; the sweep stops");
                break;
            }
            best = median("achieved_per_s");
        }
        Ok(best)
    }
}

/// The median, the mean of the middle two for an even count; `None` for no values.
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

fn medians(runs: &[RunRecord]) -> BTreeMap<String, f64> {
    let names: Vec<&String> = runs
        .iter()
        .flat_map(|run| run.figures.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let values = runs
                .iter()
                .filter_map(|run| run.figures.get(name).copied())
                .collect();
            median(values).map(|value| (name.clone(), value))
        })
        .collect()
}

/// Peak and median RSS per process over every run that sampled it.
fn rss_over_runs(results: &[SettingRecord], out: &Path) -> BTreeMap<String, RssRecord> {
    let mut peaks: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut medians_by_process: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in results.iter().flat_map(|setting| &setting.runs) {
        let Some(report) = std::fs::read_to_string(out.join(&run.file))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        else {
            continue;
        };
        let Some(processes) = report.pointer("/results/rss").and_then(Value::as_object) else {
            continue;
        };
        for (name, rss) in processes {
            if let (Some(peak), Some(median)) = (
                rss.get("peak_mib").and_then(Value::as_f64),
                rss.get("median_mib").and_then(Value::as_f64),
            ) {
                peaks.entry(name.clone()).or_default().push(peak);
                medians_by_process
                    .entry(name.clone())
                    .or_default()
                    .push(median);
            }
        }
    }
    peaks
        .into_iter()
        .map(|(name, values)| {
            let runs = values.len();
            let peak_mib = values.into_iter().fold(0.0, f64::max);
            let median_mib =
                median(medians_by_process.remove(&name).unwrap_or_default()).unwrap_or_default();
            (
                name,
                RssRecord {
                    peak_mib,
                    median_mib,
                    runs,
                },
            )
        })
        .collect()
}

/// CPU ms per request by process, at the last (highest) S1 rate run: each run's CPU
/// seconds over every request it sent (warm-up included, as the CPU window is), median over
/// the runs.
fn cpu_per_command(
    results: &[SettingRecord],
    out: &Path,
) -> Option<(String, BTreeMap<String, f64>)> {
    let setting = results.iter().rev().find(|r| r.scenario == "S1 commands")?;
    let mut by_process: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in &setting.runs {
        let Some(report) = std::fs::read_to_string(out.join(&run.file))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        else {
            continue;
        };
        let requests = report
            .pointer("/results/scheduled")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            + report
                .pointer("/results/warmup_requests")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
        let Some(cpu) = report
            .pointer("/results/cpu_seconds")
            .and_then(Value::as_object)
        else {
            continue;
        };
        if requests <= 0.0 {
            continue;
        }
        for (name, seconds) in cpu {
            if let Some(seconds) = seconds.as_f64() {
                by_process
                    .entry(name.clone())
                    .or_default()
                    .push(seconds * 1000.0 / requests);
            }
        }
    }
    let medians: BTreeMap<String, f64> = by_process
        .into_iter()
        .filter_map(|(name, values)| median(values).map(|m| (name, m)))
        .collect();
    (!medians.is_empty()).then(|| (setting.setting.clone(), medians))
}

fn find<'a>(
    results: &'a [SettingRecord],
    scenario: &str,
    setting: &str,
) -> Option<&'a SettingRecord> {
    results
        .iter()
        .find(|r| r.scenario == scenario && r.setting.starts_with(setting))
}

fn targets(
    results: &[SettingRecord],
    s1_rate: Option<f64>,
    s1_ratio: Option<f64>,
    rss: &BTreeMap<String, RssRecord>,
    args: &SuiteArgs,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let s1_ran = results.iter().any(|r| r.scenario == "S1 commands");
    if s1_ran {
        targets.push(Target {
            name: "S1 commands/s at p99 <= 25 ms",
            target: ">= 4,000/s".to_owned(),
            measured: s1_rate.map_or_else(
                || format!("none: already missed at {}/s", args.s1_rates[0]),
                |rate| format!("{rate:.0}/s"),
            ),
            met: Some(s1_rate.is_some_and(|rate| rate >= 4_000.0)),
        });
        targets.push(Target {
            name: "S1 ratio to the pgbench ceiling",
            target: ">= 50 %".to_owned(),
            measured: s1_ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{:.1} %", r * 100.0)),
            met: s1_ratio.map(|r| r >= 0.5),
        });
    }
    if let Some(record) = find(results, "S5 freshness", "target rate") {
        let p99 = record.medians.get("p99_ms").copied();
        targets.push(Target {
            name: "S5 freshness p99 at 2,000 commands/s",
            target: "<= 100 ms".to_owned(),
            measured: p99.map_or_else(
                || "no answers".to_owned(),
                |p| {
                    format!(
                        "{p:.0} ms (achieved {:.0}/s)",
                        record.medians.get("achieved_per_s").copied().unwrap_or(0.0)
                    )
                },
            ),
            met: p99.map(|p| p <= 100.0),
        });
    }
    if let Some(record) = find(results, "S6 rebuild", "stock, set-based") {
        let rate = record.medians.get("events_per_s").copied();
        targets.push(Target {
            name: "S6 rebuild",
            target: ">= 50,000 events/s".to_owned(),
            measured: rate.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0} events/s")),
            met: rate.map(|r| r >= 50_000.0),
        });
    }
    if let Some(record) = find(results, "T4 rebuild", "every projection") {
        for projection in ["orders", "stock", "payments"] {
            let rate = record
                .medians
                .get(&format!("{projection}_events_per_s"))
                .copied();
            targets.push(Target {
                name: match projection {
                    "orders" => "T4 rebuild orders",
                    "stock" => "T4 rebuild stock",
                    _ => "T4 rebuild payments",
                },
                target: ">= 100,000 events/s".to_owned(),
                measured: rate.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0} events/s")),
                met: rate.map(|r| r >= 100_000.0),
            });
        }
    }
    if let Some(record) = find(results, "S7 load", "") {
        for mode in ["full", "snap"] {
            let p99 = record.medians.get(&format!("10000_{mode}_p99_ms")).copied();
            targets.push(Target {
                name: if mode == "full" {
                    "S7 10,000-event load, no snapshots (p99)"
                } else {
                    "S7 10,000-event load, snapshots (p99)"
                },
                target: "<= 100 ms".to_owned(),
                measured: p99.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1} ms")),
                met: p99.map(|p| p <= 100.0),
            });
        }
    }
    for api in ["command-api", "query-api"] {
        if let Some(record) = rss.get(api) {
            targets.push(Target {
                name: if api == "command-api" {
                    "command-api RSS under load (peak)"
                } else {
                    "query-api RSS under load (peak)"
                },
                target: "< 50 MB".to_owned(),
                measured: format!("{:.1} MiB", record.peak_mib),
                met: Some(record.peak_mib * 1.048_576 < 50.0),
            });
        }
    }
    targets
}

fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg").ok().map(|text| {
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn markdown(report: &SuiteReport) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let m = &report.machine;
    let _ = writeln!(md, "# keel benchmark report\n");
    let _ = writeln!(
        md,
        "{} to {} ({:.0} s). {} runs per setting; figures are medians.\n",
        report.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        report.finished_at.format("%H:%M:%S UTC"),
        report.wall_seconds,
        report.settings.runs
    );
    let _ = writeln!(
        md,
        "Machine: {} ({} CPUs, {}, {:.1} GiB), {}/{}, optimised build: {}. Load average {} at the start, {} at the end.\n",
        m.hostname,
        m.nproc,
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.mem_total_kib.unwrap_or(0) as f64 / 1024.0 / 1024.0,
        m.os,
        m.arch,
        m.optimized_build,
        report.load_average_start.as_deref().unwrap_or("?"),
        report.load_average_end.as_deref().unwrap_or("?"),
    );
    let _ = writeln!(
        md,
        "Settings: {:.0} s measured after {:.0} s warm-up per open-loop run; S1 SLO p99 <= {} ms.\n",
        report.settings.duration, report.settings.warmup, report.settings.slo_p99_ms
    );
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | goal | measured | met |");
    let _ = writeln!(md, "|---|---|---|---|");
    for target in &report.targets {
        let met = match target.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {met} |",
            target.name, target.target, target.measured
        );
    }
    if let (Some(s1), Some(ceiling)) = (report.s1_rate_at_slo, report.pgbench_ceiling_tps) {
        let _ = writeln!(
            md,
            "\nS1 {s1:.0} commands/s ÷ pgbench ceiling {ceiling:.0} tx/s = {:.1} %.",
            s1 / ceiling * 100.0
        );
    }
    let _ = writeln!(md, "\n## Results\n");
    for setting in &report.results {
        let _ = writeln!(md, "### {} — {}\n", setting.scenario, setting.setting);
        if setting.scenario == "S7 load" {
            s7_table(&mut md, setting);
            continue;
        }
        let names: Vec<&String> = setting.medians.keys().collect();
        let _ = writeln!(
            md,
            "| run | {} | passed |",
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(md, "|---|{}---|", "---|".repeat(names.len()));
        for (index, run) in setting.runs.iter().enumerate() {
            let cells: Vec<String> = names
                .iter()
                .map(|name| {
                    run.figures
                        .get(*name)
                        .map_or_else(|| "-".to_owned(), |v| format_figure(*v))
                })
                .collect();
            let passed = match (run.exit_ok, run.passed) {
                (false, _) | (_, Some(false)) => "**no**",
                (true, Some(true)) => "yes",
                (true, None) => "-",
            };
            let _ = writeln!(md, "| {} | {} | {passed} |", index + 1, cells.join(" | "));
        }
        let cells: Vec<String> = names
            .iter()
            .map(|name| format!("**{}**", format_figure(setting.medians[*name])))
            .collect();
        let _ = writeln!(md, "| median | {} | |\n", cells.join(" | "));
        if let Some(first) = setting.runs.first() {
            let _ = writeln!(md, "`bench {}`\n", first.args.join(" "));
        }
    }
    if let Some((setting, cpu)) = &report.s1_cpu_ms_per_command {
        let _ = writeln!(md, "## CPU per command, S1 {setting}\n");
        let _ = writeln!(md, "| process | CPU ms per command |");
        let _ = writeln!(md, "|---|---|");
        let mut rows: Vec<(&String, &f64)> = cpu.iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(a.1));
        for (name, ms) in rows {
            let _ = writeln!(md, "| {name} | {ms:.3} |");
        }
        let total: f64 = cpu.values().sum();
        let _ = writeln!(
            md,
            "| **total** | **{total:.3}** (2 cores: at most {:.0} commands/s at this cost) |\n",
            if total > 0.0 { 2_000.0 / total } else { 0.0 }
        );
    }
    if !report.rss.is_empty() {
        let _ = writeln!(md, "## RSS of the platform's processes under load\n");
        let _ = writeln!(md, "| process | peak MiB | median MiB | runs sampled |");
        let _ = writeln!(md, "|---|---|---|---|");
        for (name, rss) in &report.rss {
            let _ = writeln!(
                md,
                "| {name} | {:.1} | {:.1} | {} |",
                rss.peak_mib, rss.median_mib, rss.runs
            );
        }
    }
    md
}

/// S7 reads better by stream length: one row per length, medians over the runs.
fn s7_table(md: &mut String, setting: &SettingRecord) {
    use std::fmt::Write as _;
    let _ = writeln!(
        md,
        "| events | no snapshots p50 ms | no snapshots p99 ms | snapshots p50 ms | snapshots p99 ms |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for length in [10, 100, 1_000, 10_000] {
        let cell = |name: String| {
            setting
                .medians
                .get(&name)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
        };
        let _ = writeln!(
            md,
            "| {length} | {} | {} | {} | {} |",
            cell(format!("{length}_full_p50_ms")),
            cell(format!("{length}_full_p99_ms")),
            cell(format!("{length}_snap_p50_ms")),
            cell(format!("{length}_snap_p99_ms")),
        );
    }
    let passed = setting
        .runs
        .iter()
        .all(|run| run.exit_ok && run.passed != Some(false));
    let _ = writeln!(
        md,
        "\nMedians of {} runs (each run's figures are in report.json); every load rebuilt the right state: {}.\n",
        setting.runs.len(),
        if passed { "yes" } else { "**no**" }
    );
    if let Some(first) = setting.runs.first() {
        let _ = writeln!(md, "`bench {}`\n", first.args.join(" "));
    }
}

fn format_figure(value: f64) -> String {
    if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn only_selects_scenarios() {
        assert!(suite_wants(&[], "s6"));
        assert!(suite_wants(&["S6".to_owned()], "s6"));
        assert!(!suite_wants(&["s1".to_owned()], "s6"));
    }
}
