//! Resident memory of the platform's processes while a scenario runs: `VmRSS` from
//! `/proc/<pid>/status` of every pid file `cargo xtask up` keeps in
//! `$KEEL_STATE_DIR/run` (default `~/.local/state/keel/run`), sampled on a timer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SAMPLE_EVERY: Duration = Duration::from_millis(250);

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
        Self { stop, task }
    }

    /// Stops and summarises: process name → peak and median.
    pub async fn finish(self) -> BTreeMap<String, ProcessRss> {
        self.stop.send(true).ok();
        let samples = self.task.await.unwrap_or_default();
        samples
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
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
