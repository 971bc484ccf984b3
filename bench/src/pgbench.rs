//! S1 baseline: the database's own ceiling for the command path's append. pgbench runs
//! `bench/pgbench/append_event.sql` (postgres-es's event INSERT in its own transaction, every
//! event-store trigger firing) against a scratch database migrated like the live one, at a
//! few client counts. Latency percentiles come from pgbench's per-transaction log; the
//! ceiling is the best rate whose p99 stays within the SLO.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use serde::Serialize;
use sqlx::PgPool;

use crate::open_loop::{Latencies, LatencySummary};
use crate::report::{Machine, Report, percentiles};
use crate::scratch::{ScratchArgs, ScratchDatabase};

/// The script, embedded so the binary runs from anywhere.
const SCRIPT: &str = include_str!("../pgbench/append_event.sql");
const SMOKE_SECONDS: u32 = 1;
const SMOKE_CLIENTS: u32 = 2;

#[derive(Debug, Clone, Args, Serialize)]
pub struct PgbenchArgs {
    /// Client counts to run, one pgbench run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    pub clients: Vec<u32>,
    /// Seconds per pgbench run.
    #[arg(long, default_value_t = 15)]
    pub duration: u32,
    /// pgbench worker threads (`-j`).
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// The latency objective the ceiling is taken at (p99, milliseconds).
    #[arg(long, default_value_t = 25.0)]
    pub slo_p99_ms: f64,
    /// The pgbench binary (default: `pgbench` on the PATH, then
    /// /usr/lib/postgresql/*/bin/pgbench).
    #[arg(long)]
    pub pgbench: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub scratch: ScratchArgs,
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<PathBuf>,
    /// One second with two clients: checks that the baseline still runs.
    #[arg(long)]
    pub smoke: bool,
}

#[derive(Debug, Serialize)]
struct PgbenchRun {
    clients: u32,
    /// pgbench's own figure (without the initial connection time).
    tps: f64,
    transactions: u64,
    failed: u64,
    /// From the per-transaction log.
    latency: LatencySummary,
    within_slo: bool,
}

#[derive(Debug, Serialize)]
struct PgbenchResults {
    pgbench_version: String,
    server: ServerFacts,
    runs: Vec<PgbenchRun>,
    /// The best `tps` among the runs with p99 within the SLO.
    ceiling_tps: Option<f64>,
    ceiling_clients: Option<u32>,
    /// Events in the scratch store at the end (they are all committed appends).
    events_stored: i64,
}

/// Settings that decide what a commit costs; numbers are only comparable with them.
#[derive(Debug, Serialize)]
pub struct ServerFacts {
    pub server_version: String,
    pub synchronous_commit: String,
    pub fsync: String,
    pub wal_level: String,
    pub commit_delay: String,
    pub shared_buffers: String,
    pub max_connections: String,
}

impl ServerFacts {
    pub async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let setting = |name: &'static str| async move {
            sqlx::query_scalar::<_, String>("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(pool)
                .await
                .with_context(|| format!("reading {name}"))
        };
        Ok(Self {
            server_version: setting("server_version").await?,
            synchronous_commit: setting("synchronous_commit").await?,
            fsync: setting("fsync").await?,
            wal_level: setting("wal_level").await?,
            commit_delay: setting("commit_delay").await?,
            shared_buffers: setting("shared_buffers").await?,
            max_connections: setting("max_connections").await?,
        })
    }
}

#[derive(Debug, Serialize)]
struct Config<'a> {
    pgbench: &'a PgbenchArgs,
    script: &'static str,
    mode: &'static str,
}

pub async fn run(args: &PgbenchArgs) -> anyhow::Result<bool> {
    let (clients, duration) = if args.smoke {
        (vec![SMOKE_CLIENTS], SMOKE_SECONDS)
    } else {
        (args.clients.clone(), args.duration.max(1))
    };
    anyhow::ensure!(!clients.is_empty(), "--clients names no client count");
    let binary = find_pgbench(args.pgbench.as_deref())?;
    let version = pgbench_version(&binary).await?;
    let database = ScratchDatabase::create(&args.scratch, "pgbench").await?;
    let outcome = run_on(args, &database, &binary, version, &clients, duration).await;
    database.drop().await;
    outcome
}

async fn run_on(
    args: &PgbenchArgs,
    database: &ScratchDatabase,
    binary: &Path,
    pgbench_version: String,
    clients: &[u32],
    duration: u32,
) -> anyhow::Result<bool> {
    let pool = database.pool(1).await?;
    let server = ServerFacts::read(&pool).await?;
    let work_dir = std::env::temp_dir().join(format!("keel-bench-{}", database.name()));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let script = work_dir.join("append_event.sql");
    std::fs::write(&script, SCRIPT).context("writing the pgbench script")?;

    let started_at = Utc::now();
    let mut runs = Vec::new();
    for &count in clients {
        let run = run_pgbench(
            binary,
            database.url(),
            &script,
            &work_dir,
            count,
            args.threads.clamp(1, count.max(1)),
            duration,
            args.slo_p99_ms,
        )
        .await?;
        eprintln!(
            "  pgbench {count} clients: {:.0} tps {}",
            run.tps,
            percentiles(&run.latency)
        );
        runs.push(run);
    }
    std::fs::remove_dir_all(&work_dir).ok();
    let events_stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .context("counting the appended events")?;
    pool.close().await;

    let best = runs
        .iter()
        .filter(|run| run.within_slo)
        .max_by(|a, b| a.tps.total_cmp(&b.tps));
    let results = PgbenchResults {
        pgbench_version,
        server,
        ceiling_tps: best.map(|run| run.tps),
        ceiling_clients: best.map(|run| run.clients),
        events_stored,
        runs,
    };
    let summary = format!(
        "pgbench append_event: ceiling {} at p99 <= {} ms | {}",
        results
            .ceiling_tps
            .map_or_else(|| "none".to_owned(), |tps| format!("{tps:.0} tps")),
        args.slo_p99_ms,
        results
            .runs
            .iter()
            .map(|run| format!(
                "{} clients {:.0} tps p50={:.2} p99={:.2}ms failed={}",
                run.clients, run.tps, run.latency.p50_ms, run.latency.p99_ms, run.failed
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let passed = results.runs.iter().all(|run| run.transactions > 0);
    Report {
        scenario: "pgbench",
        started_at,
        smoke: args.smoke,
        machine: Machine::current(),
        config: Config {
            pgbench: args,
            script: "bench/pgbench/append_event.sql",
            mode: "-M prepared",
        },
        results: &results,
        summary,
        passed: Some(passed),
    }
    .emit(args.json.as_deref())?;
    Ok(passed)
}

fn find_pgbench(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(
            path.is_file(),
            "--pgbench {} does not exist",
            path.display()
        );
        return Ok(path.to_owned());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("pgbench"))
        .find(|candidate| candidate.is_file());
    if let Some(found) = on_path {
        return Ok(found);
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|dir| dir.path().join("bin/pgbench"))
                .filter(|candidate| candidate.is_file())
                .collect()
        })
        .unwrap_or_default();
    versioned.sort();
    versioned.pop().context(
        "pgbench is missing: it ships with the PostgreSQL server packages (Debian: \
         `apt-get install postgresql-15` or `postgresql-contrib`); or pass --pgbench <path>",
    )
}

async fn pgbench_version(binary: &Path) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(binary)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("running {} --version", binary.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The variables the script binds, as the command API would for `POST /orders`.
fn variables() -> Vec<String> {
    let metadata = serde_json::json!({
        "actor": "anonymous",
        "correlation_id": uuid::Uuid::new_v4(),
        "occurred_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    let payload = serde_json::json!({
        "OrderCreated": {"customer_id": uuid::Uuid::new_v4(), "currency": "EUR"}
    });
    [
        ("aggregate_type", "order".to_owned()),
        ("event_type", "OrderCreated".to_owned()),
        ("event_version", "1".to_owned()),
        ("payload", payload.to_string()),
        ("metadata", metadata.to_string()),
    ]
    .into_iter()
    .flat_map(|(name, value)| ["-D".to_owned(), format!("{name}={value}")])
    .collect()
}

#[allow(clippy::too_many_arguments)]
async fn run_pgbench(
    binary: &Path,
    url: &str,
    script: &Path,
    work_dir: &Path,
    clients: u32,
    threads: u32,
    duration: u32,
    slo_p99_ms: f64,
) -> anyhow::Result<PgbenchRun> {
    let prefix = work_dir.join(format!("c{clients}"));
    let output = tokio::process::Command::new(binary)
        .args(["-n", "-M", "prepared", "--no-vacuum"])
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &duration.to_string()])
        .arg("-f")
        .arg(script)
        .args(variables())
        .arg("-l")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg(url)
        .current_dir(work_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let number = |label: &str| -> Option<f64> {
        stdout
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .and_then(|line| {
                line.split_once('=')
                    .map(|(_, v)| v)
                    .or(line.split_once(':').map(|(_, v)| v))
            })
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
    };
    let tps = number("tps").context("pgbench printed no tps")?;
    let transactions = number("number of transactions actually processed").unwrap_or(0.0) as u64;
    let failed = number("number of failed transactions").unwrap_or(0.0) as u64;
    let latency = read_logs(work_dir, &format!("c{clients}."))?;
    let summary = latency.summary();
    Ok(PgbenchRun {
        clients,
        tps,
        transactions,
        failed,
        within_slo: summary.count > 0 && summary.p99_ms <= slo_p99_ms,
        latency: summary,
    })
}

/// Per-transaction logs: `client_id transaction_no time_us script_no epoch epoch_us`.
fn read_logs(work_dir: &Path, file_prefix: &str) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies::default();
    for entry in std::fs::read_dir(work_dir).context("listing the pgbench logs")? {
        let entry = entry.context("listing the pgbench logs")?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(file_prefix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        for line in text.lines() {
            let Some(micros) = line
                .split_whitespace()
                .nth(2)
                .and_then(|field| field.parse::<u64>().ok())
            else {
                continue;
            };
            latencies.record(std::time::Duration::from_micros(micros));
        }
    }
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_binds_what_postgres_es_binds() {
        // postgres-es 0.5 `insert_event`: seven parameters in this column order.
        assert!(SCRIPT.contains(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)"
        ));
        assert!(SCRIPT.contains(
            "VALUES (:aggregate_type, :aggregate_id, :sequence, :event_type, :event_version, :payload, :metadata);"
        ));
        let variables = variables();
        for name in [
            "aggregate_type",
            "event_type",
            "event_version",
            "payload",
            "metadata",
        ] {
            assert!(
                variables.iter().any(|v| v.starts_with(&format!("{name}="))),
                "{name}"
            );
        }
    }
}
