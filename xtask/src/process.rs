//! Background processes owned by the stack: started detached with their output in a
//! log file and their pid in a pid file, so `status` and `down` find them from any
//! clone and any shell.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::probe;

/// One process the stack starts and stops.
#[derive(Debug, Clone)]
pub struct Managed {
    /// Name used for its log and pid files.
    pub name: &'static str,
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// A part of its command line no other process has (the binary's name, a config
    /// path): a recorded pid counts as this process only while its command line holds it.
    pub identity: String,
    pub port: u16,
    pub log_file: PathBuf,
    pub pid_file: PathBuf,
}

impl Managed {
    /// The pid recorded by an earlier `up`, if that process is still alive and is
    /// still the binary we started (pids get reused).
    pub fn running_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = probe::process_cmdline(pid)?;
        cmdline.contains(&self.identity).then_some(pid)
    }

    /// Starts the process detached from this one (own process group, stdin closed),
    /// appending to its log.
    pub fn spawn(&self) -> anyhow::Result<u32> {
        self.spawn_with_env(&[])
    }

    /// As [`Self::spawn`], with extra environment variables.
    pub fn spawn_with_env(&self, env: &[(String, String)]) -> anyhow::Result<u32> {
        for file in [&self.log_file, &self.pid_file] {
            if let Some(dir) = file.parent() {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .with_context(|| format!("opening {}", self.log_file.display()))?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        writeln!(
            log,
            "=== xtask up: starting {} {} (unix time {started}) ===",
            self.binary.display(),
            self.args.join(" ")
        )?;
        let stderr = log.try_clone()?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let pid = child.id();
        fs::write(&self.pid_file, format!("{pid}\n"))
            .with_context(|| format!("writing {}", self.pid_file.display()))?;
        Ok(pid)
    }

    /// Polls `healthy` until it succeeds, the process dies, or `timeout` passes. The
    /// error names the process and carries the end of its log.
    pub fn wait_healthy(
        &self,
        pid: u32,
        timeout: Duration,
        mut healthy: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last_error = match healthy() {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if probe::process_cmdline(pid).is_none() {
                bail!(
                    "{} (pid {pid}) exited during start-up; last lines of {}:\n{}",
                    self.name,
                    self.log_file.display(),
                    tail(&self.log_file, 20)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {pid}) did not answer within {}s: {last_error:#}\nlast lines of {}:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log_file.display(),
                    tail(&self.log_file, 20)
                );
            }
            thread::sleep(Duration::from_millis(300));
        }
    }

    /// SIGTERM, then SIGKILL after a grace period; removes the pid file.
    pub fn stop(&self) -> anyhow::Result<bool> {
        self.stop_within(Duration::from_secs(10))
    }

    /// As [`Self::stop`], with the grace period given: a broker flushing its logs and
    /// closing its segments needs longer than a service draining requests.
    pub fn stop_within(&self, grace: Duration) -> anyhow::Result<bool> {
        let Some(pid) = self.running_pid() else {
            let _ = fs::remove_file(&self.pid_file);
            return Ok(false);
        };
        signal(pid, "TERM")?;
        let deadline = Instant::now() + grace;
        while probe::process_cmdline(pid).is_some() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        if probe::process_cmdline(pid).is_some() {
            signal(pid, "KILL")?;
        }
        let _ = fs::remove_file(&self.pid_file);
        Ok(true)
    }
}

fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() && probe::process_cmdline(pid).is_some() {
        bail!("could not send SIG{signal} to pid {pid}");
    }
    Ok(())
}

/// The last `lines` lines of a file, or a note that it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match File::open(path) {
        Ok(file) => {
            let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
