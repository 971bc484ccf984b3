//! Killing and restarting the parts of the running platform. A process started by
//! `cargo xtask up` (a service, the broker, the registry) is found through its pid file;
//! before it is killed, its command line, environment, working directory and log file
//! are read from `/proc`, so the restart is the same process again, logging where it
//! logged, with its pid file updated for `cargo xtask status` and `down`. PostgreSQL is the
//! machine's server: it is stopped in `immediate` mode (no checkpoint, crash recovery on
//! start) with `pg_ctlcluster`.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

/// How long a killed process may take to disappear.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to start a process again as it was.
#[derive(Debug, Clone)]
pub struct Launch {
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    log: Option<PathBuf>,
}

/// A process of the platform that `cargo xtask up` started and keeps a pid file for.
#[derive(Debug, Clone)]
pub struct ManagedProcess {
    pub name: String,
    pid_file: PathBuf,
}

impl ManagedProcess {
    /// The process behind `<run dir>/<name>.pid`.
    pub fn new(run_dir: &Path, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            pid_file: run_dir.join(format!("{name}.pid")),
        }
    }

    /// Its pid, if its pid file names a live process.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(&self.pid_file).with_context(|| {
            format!(
                "reading {} (is the platform up: `cargo xtask up`?)",
                self.pid_file.display()
            )
        })?;
        let pid: u32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} holds no pid", self.pid_file.display()))?;
        anyhow::ensure!(alive(pid), "{} (pid {pid}) is not running", self.name);
        Ok(pid)
    }

    /// Reads how it was started, then kills it with SIGKILL and waits until it is gone.
    pub async fn kill(&self) -> anyhow::Result<Launch> {
        let pid = self.pid()?;
        let launch = Launch::of(pid).with_context(|| format!("reading how {} runs", self.name))?;
        signal(pid, "KILL")?;
        wait_gone(pid, &self.name).await?;
        Ok(launch)
    }

    /// Starts it again as `launch` says, detached (own process group, stdin closed,
    /// output appended to its log), and records the new pid.
    pub fn restart(&self, launch: &Launch) -> anyhow::Result<u32> {
        let (program, args) = launch
            .argv
            .split_first()
            .context("the process had an empty command line")?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .process_group(0);
        match &launch.log {
            Some(path) => {
                let log = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                command.stderr(log.try_clone()?).stdout(log);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("restarting {}", self.name))?;
        let pid = child.id();
        // Reaped by a thread of its own, so a later kill leaves no zombie behind.
        std::thread::spawn(move || child.wait());
        std::fs::write(&self.pid_file, format!("{pid}\n"))
            .with_context(|| format!("writing {}", self.pid_file.display()))?;
        Ok(pid)
    }
}

impl Launch {
    fn of(pid: u32) -> anyhow::Result<Self> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let split = |bytes: Vec<u8>| -> Vec<OsString> {
            bytes
                .split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| OsString::from_vec(part.to_vec()))
                .collect()
        };
        let argv = split(std::fs::read(proc.join("cmdline"))?);
        let env = split(std::fs::read(proc.join("environ"))?)
            .into_iter()
            .filter_map(|entry| {
                let bytes = entry.into_vec();
                let at = bytes.iter().position(|b| *b == b'=')?;
                Some((
                    OsString::from_vec(bytes[..at].to_vec()),
                    OsString::from_vec(bytes[at + 1..].to_vec()),
                ))
            })
            .collect();
        let cwd = std::fs::read_link(proc.join("cwd"))?;
        // Where its standard output goes, if that is a file (its log).
        let log = std::fs::read_link(proc.join("fd/1"))
            .ok()
            .filter(|path| path.is_file());
        anyhow::ensure!(!argv.is_empty(), "pid {pid} has no command line");
        Ok(Self {
            argv,
            env,
            cwd,
            log,
        })
    }
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed ({status})");
    }
    Ok(())
}

async fn wait_gone(pid: u32, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while alive(pid) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} (pid {pid}) still runs {EXIT_TIMEOUT:?} after SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The machine's PostgreSQL cluster serving the platform (`pg_lsclusters`).
#[derive(Debug, Clone)]
pub struct PostgresCluster {
    version: String,
    cluster: String,
}

impl PostgresCluster {
    /// The online cluster listening on `port`.
    pub fn on_port(port: u16) -> anyhow::Result<Self> {
        let output = Command::new("pg_lsclusters")
            .arg("--no-header")
            .output()
            .context("running pg_lsclusters (PostgreSQL faults need Debian's postgresql-common)")?;
        let listing = String::from_utf8_lossy(&output.stdout);
        listing
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.get(2) == Some(&port.to_string().as_str()))
            .map(|fields| Self {
                version: fields[0].to_owned(),
                cluster: fields[1].to_owned(),
            })
            .with_context(|| format!("no PostgreSQL cluster on port {port} in:\n{listing}"))
    }

    /// `pg_ctlcluster … stop -m immediate`: every backend is killed, nothing is flushed
    /// beyond what was committed; the next start runs crash recovery.
    pub fn stop_immediately(&self) -> anyhow::Result<()> {
        self.ctl(&["stop", "-m", "immediate"])
    }

    pub fn start(&self) -> anyhow::Result<()> {
        self.ctl(&["start"])
    }

    fn ctl(&self, action: &[&str]) -> anyhow::Result<()> {
        let output = Command::new("pg_ctlcluster")
            .args([&self.version, &self.cluster])
            .args(action)
            .output()
            .context("running pg_ctlcluster")?;
        anyhow::ensure!(
            output.status.success(),
            "pg_ctlcluster {} {} {} failed ({}): {}",
            self.version,
            self.cluster,
            action.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }
}
