//! Resident memory of the platform's processes while a scenario runs: `VmRSS` from
//! `/proc/<pid>/status` of every pid file `cargo xtask up` keeps in
//! `$KEEL_STATE_DIR/run` (default `~/.local/state/keel/run`), sampled on a timer. Also the
//! CPU time each of them, every PostgreSQL process together and this load generator used
//! over the run (`/proc/<pid>/stat`): on a 2-core machine that shared budget is what
//! bounds throughput, so it is the first profile of a missed target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// `USER_HZ`: the unit of `/proc/<pid>/stat` times (100 on every Linux architecture ABI).
const TICKS_PER_SECOND: f64 = 100.0;
/// The name under which every PostgreSQL process's CPU time is summed.
const POSTGRES: &str = "postgres (all processes)";
/// Key prefix of one PostgreSQL process in a CPU snapshot.
const POSTGRES_PROCESS: &str = "postgres pid ";
/// The name of this process's own CPU time.
pub(crate) const LOAD_GENERATOR: &str = "bench (load generator)";

/// Peak and median RSS of one process over a run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRss {
    pub pid: u32,
    pub samples: usize,
    pub peak_mib: f64,
    pub median_mib: f64,
}

/// Samples until stopped.
#[derive(Debug)]
pub struct RssSampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<BTreeMap<String, (u32, Vec<u64>)>>,
    cpu_at_start: BTreeMap<String, u64>,
    started: std::time::Instant,
}

/// What the platform's processes used over a run.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// Resident memory by process (pid files).
    pub rss: BTreeMap<String, ProcessRss>,
    /// CPU seconds (user + system) by process over the run, PostgreSQL summed over all its
    /// processes, the load generator included.
    pub cpu_seconds: BTreeMap<String, f64>,
    /// Wall seconds the CPU times were taken over.
    pub wall_seconds: f64,
}

/// User + system ticks of `pid`, if it is alive.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); the first after the name is field 3.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// CPU ticks so far of the platform's processes, of each PostgreSQL process (named
/// `postgres`; keyed [`POSTGRES_PROCESS`] + pid) and of this process.
fn cpu_snapshot() -> BTreeMap<String, u64> {
    let mut ticks: BTreeMap<String, u64> = run_dir()
        .map(|dir| platform_pids(&dir))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, pid)| cpu_ticks(pid).map(|t| (name, t)))
        .collect();
    // One entry per PostgreSQL process: a difference of sums would lose, at the end, all
    // the CPU of a backend that exited meanwhile (a pool recycling a connection), not just
    // its share of the run.
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "postgres")
            })
        {
            if let Some(t) = cpu_ticks(pid) {
                ticks.insert(format!("{POSTGRES_PROCESS}{pid}"), t);
            }
        }
    }
    if let Some(own) = cpu_ticks(std::process::id()) {
        ticks.insert(LOAD_GENERATOR.to_owned(), own);
    }
    ticks
}

/// Where `cargo xtask up` keeps its pid files (the same rule as xtask's).
pub fn run_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KEEL_STATE_DIR") {
        return Some(PathBuf::from(dir).join("run"));
    }
    if let Some(base) = std::env::var_os("XDG_STATE_HOME") {
        return Some(PathBuf::from(base).join("keel").join("run"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state/keel/run"))
}

/// `name → pid` of the pid files in `dir` whose process is alive.
pub fn platform_pids(dir: &Path) -> BTreeMap<String, u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            if path.extension()? != "pid" {
                return None;
            }
            let pid: u32 = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
            Path::new(&format!("/proc/{pid}"))
                .exists()
                .then_some((name, pid))
        })
        .collect()
}

/// `VmRSS` of `pid` in KiB, if it is alive.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl RssSampler {
    /// Starts sampling the platform's processes (none if no pid file is found).
    pub fn start() -> Self {
        let pids = run_dir().map(|dir| platform_pids(&dir)).unwrap_or_default();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut samples: BTreeMap<String, (u32, Vec<u64>)> = pids
                .into_iter()
                .map(|(name, pid)| (name, (pid, Vec::new())))
                .collect();
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = ticker.tick() => {
                        for (pid, values) in samples.values_mut() {
                            if let Some(kib) = vm_rss_kib(*pid) {
                                values.push(kib);
                            }
                        }
                    }
                }
            }
            samples
        });
        Self {
            stop,
            task,
            cpu_at_start: cpu_snapshot(),
            started: std::time::Instant::now(),
        }
    }

    /// Stops and summarises. PostgreSQL's figure is the sum of what each of its processes
    /// alive at the end spent during the run; a backend that exited during the run drops
    /// out with what it spent, so it is a lower bound.
    pub async fn finish(self) -> Footprint {
        self.stop.send(true).ok();
        let wall_seconds = self.started.elapsed().as_secs_f64();
        let cpu_at_end = cpu_snapshot();
        // A process born during the run counts whole (nothing at the start).
        let mut cpu_seconds: BTreeMap<String, f64> = BTreeMap::new();
        for (name, end) in cpu_at_end {
            let start = self.cpu_at_start.get(&name).copied().unwrap_or_default();
            let seconds = end.saturating_sub(start) as f64 / TICKS_PER_SECOND;
            let name = if name.starts_with(POSTGRES_PROCESS) {
                POSTGRES.to_owned()
            } else {
                name
            };
            *cpu_seconds.entry(name).or_default() += seconds;
        }
        cpu_seconds.entry(POSTGRES.to_owned()).or_default();
        let samples = self.task.await.unwrap_or_default();
        let rss = samples
            .into_iter()
            .filter(|(_, (_, values))| !values.is_empty())
            .map(|(name, (pid, mut values))| {
                values.sort_unstable();
                let mib = |kib: u64| kib as f64 / 1024.0;
                let summary = ProcessRss {
                    pid,
                    samples: values.len(),
                    peak_mib: mib(values[values.len() - 1]),
                    median_mib: mib(values[values.len() / 2]),
                };
                (name, summary)
            })
            .collect();
        Footprint {
            rss,
            cpu_seconds,
            wall_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0_u64);
        }
        assert!(cpu_ticks(std::process::id()).expect("this process is alive") > 0);
    }

    #[test]
    fn reads_its_own_rss() {
        let kib = vm_rss_kib(std::process::id()).expect("this process is alive");
        assert!(kib > 0);
    }

    #[test]
    fn pid_files_of_live_processes_are_found() {
        let dir = std::env::temp_dir().join(format!("keel-bench-rss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("me.pid"), format!("{}\n", std::process::id())).unwrap();
        std::fs::write(dir.join("gone.pid"), "4194304999\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "1\n").unwrap();
        let pids = platform_pids(&dir);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(pids.len(), 1);
        assert_eq!(pids["me"], std::process::id());
    }
}
