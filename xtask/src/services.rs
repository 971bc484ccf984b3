//! The platform's own processes: built from this workspace and started after the stack,
//! with the stack's addresses in their environment.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::StackConfig;
use crate::probe;
use crate::process::Managed;

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A worker without an HTTP port counts as started once it has stayed up this long.
const WORKER_SETTLE: Duration = Duration::from_secs(3);

/// One process of the platform.
#[derive(Debug, Clone, Copy)]
pub struct PlatformService {
    pub name: &'static str,
    pub package: &'static str,
    pub binary: &'static str,
    /// HTTP port answering `GET /health/ready`; `None` for workers.
    pub http_port: Option<u16>,
    /// Extra environment for this process.
    pub env: &'static [(&'static str, &'static str)],
    /// Variables naming a file of this repository (a development secret), given to the
    /// process as an absolute path.
    pub files: &'static [(&'static str, &'static str)],
}

/// The development master key of personal data (ADR 0009), for the processes that seal or
/// open it. Published in this repository: for this machine only.
const MASTER_KEY: (&str, &str) = (
    "KEEL_MASTER_KEY_FILE",
    "deploy/secrets/dev-master-key.secret",
);

/// Started in this order by `cargo xtask up`; ports match the README. The local stack is a
/// development stack: authentication and rate limiting are off (each API logs a warning),
/// so the README's curl walk-through and the benchmarks need no tokens. The security tests
/// start their own services with both on.
pub const SERVICES: &[PlatformService] = &[
    PlatformService {
        name: "command-api",
        package: "command-api",
        binary: "command-api",
        http_port: Some(8080),
        env: &[
            ("KEEL_HTTP_ADDR", "127.0.0.1:8080"),
            ("KEEL_LOG_FORMAT", "pretty"),
            ("KEEL_AUTH", "disabled"),
            ("KEEL_RATE_LIMIT_PER_SECOND", "0"),
        ],
        files: &[MASTER_KEY],
    },
    PlatformService {
        name: "outbox-relay",
        package: "outbox-relay",
        binary: "outbox-relay",
        http_port: None,
        env: &[
            ("KEEL_LOG_FORMAT", "pretty"),
            ("KEEL_METRICS_ADDR", "127.0.0.1:9101"),
            // One relay on this machine: a restart takes every outbox shard back at once.
            ("KEEL_RELAY_INSTANCE_ID", "local-relay"),
        ],
        files: &[],
    },
    PlatformService {
        name: "saga",
        package: "saga",
        binary: "saga",
        http_port: None,
        env: &[
            ("KEEL_COMMAND_API_URL", "http://127.0.0.1:8080"),
            ("KEEL_LOG_FORMAT", "pretty"),
            ("KEEL_METRICS_ADDR", "127.0.0.1:9102"),
            // One saga on this machine: a restart takes its partitions back at once.
            ("KEEL_SAGA_INSTANCE_ID", "local-saga"),
        ],
        files: &[],
    },
    PlatformService {
        name: "projector",
        package: "projections",
        binary: "projections",
        http_port: None,
        env: &[
            ("KEEL_LOG_FORMAT", "pretty"),
            ("KEEL_METRICS_ADDR", "127.0.0.1:9103"),
            // One projector on this machine: a restart takes its partitions back at once.
            ("KEEL_PROJECTOR_INSTANCE_ID", "local-projector"),
        ],
        files: &[MASTER_KEY],
    },
    PlatformService {
        name: "query-api",
        package: "query-api",
        binary: "query-api",
        http_port: Some(8090),
        env: &[
            ("KEEL_HTTP_ADDR", "127.0.0.1:8090"),
            ("KEEL_LOG_FORMAT", "pretty"),
            ("KEEL_AUTH", "disabled"),
            ("KEEL_RATE_LIMIT_PER_SECOND", "0"),
        ],
        files: &[MASTER_KEY, ("KEEL_CONSOLE_DIR", "console/web/dist")],
    },
];

/// Builds every service binary in one cargo invocation.
pub fn build(workspace: &Path) -> anyhow::Result<()> {
    if SERVICES.is_empty() {
        return Ok(());
    }
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace).args(["build", "--release"]);
    for service in SERVICES {
        command.args(["-p", service.package, "--bin", service.binary]);
    }
    println!("  building the services (cargo build --release)");
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("building the platform services failed ({status}); see the compiler output above");
    }
    Ok(())
}

fn managed(config: &StackConfig, workspace: &Path, service: &PlatformService) -> Managed {
    Managed {
        name: service.name,
        binary: target_dir(workspace).join("release").join(service.binary),
        args: Vec::new(),
        identity: service.binary.to_string(),
        port: service.http_port.unwrap_or(0),
        log_file: config.log_dir().join(format!("{}.log", service.name)),
        pid_file: config.run_dir().join(format!("{}.pid", service.name)),
    }
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or the workspace's `target/`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
}

/// Starts a service unless it already runs the current binary and answers.
pub fn start(
    config: &StackConfig,
    workspace: &Path,
    service: &PlatformService,
) -> anyhow::Result<()> {
    let managed = managed(config, workspace, service);
    if let Some(pid) = managed.running_pid() {
        let rebuilt = modified(&managed.binary) > modified(&managed.pid_file);
        if !rebuilt && health(service).is_ok() {
            println!("  {}: already running (pid {pid})", service.name);
            return Ok(());
        }
        println!(
            "  {}: {}; restarting pid {pid}",
            service.name,
            if rebuilt {
                "binary rebuilt"
            } else {
                "not answering"
            }
        );
        managed.stop()?;
    }
    if let Some(port) = service.http_port.filter(|port| probe::port_in_use(*port)) {
        let owner = probe::port_owner(port)
            .map(|(pid, cmdline)| format!("pid {pid}: {cmdline}"))
            .unwrap_or_else(|| "owner unknown".into());
        bail!(
            "cannot start {}: 127.0.0.1:{port} is already taken ({owner})",
            service.name
        );
    }
    let mut env: Vec<(String, String)> = config
        .service_env()
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
    env.extend(
        service
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env.extend(
        service
            .files
            .iter()
            .map(|(k, path)| (k.to_string(), workspace.join(path).display().to_string())),
    );
    let pid = managed.spawn_with_env(&env)?;
    match service.http_port {
        Some(port) => {
            println!(
                "  {}: started pid {pid}; waiting for 127.0.0.1:{port}/health/ready",
                service.name
            );
            managed.wait_healthy(pid, START_TIMEOUT, || health(service))?;
        }
        None => {
            println!("  {}: started pid {pid}", service.name);
            std::thread::sleep(WORKER_SETTLE);
            if probe::process_cmdline(pid).is_none() {
                bail!(
                    "{} (pid {pid}) exited during start-up; last lines of {}:\n{}",
                    service.name,
                    managed.log_file.display(),
                    crate::process::tail(&managed.log_file, 20)
                );
            }
        }
    }
    println!("  {}: up; log {}", service.name, managed.log_file.display());
    Ok(())
}

pub fn health(service: &PlatformService) -> anyhow::Result<()> {
    match service.http_port {
        Some(port) => probe::http_ok(port, "/health/ready", Duration::from_secs(2)),
        None => Ok(()),
    }
}

pub fn status_line(
    config: &StackConfig,
    workspace: &Path,
    service: &PlatformService,
) -> (String, bool) {
    let managed = managed(config, workspace, service);
    match managed.running_pid() {
        Some(pid) => match health(service) {
            Ok(()) => (format!("pid {pid}, healthy"), true),
            Err(error) => (format!("pid {pid}, NOT READY ({error:#})"), false),
        },
        None => ("not running".into(), false),
    }
}

pub fn stop(
    config: &StackConfig,
    workspace: &Path,
    service: &PlatformService,
) -> anyhow::Result<bool> {
    managed(config, workspace, service).stop()
}

/// When `path` last changed (`None` if it does not exist).
pub fn modified(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|meta| meta.modified()).ok()
}
