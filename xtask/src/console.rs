//! The operator console's web app (`console/web`, ADR 0011): built with npm by `up`,
//! tested in Debian's Chromium by the gate against the running platform.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::postgres::{apt_install, has_command};
use crate::services::modified;

/// Debian's Chromium; Playwright drives it (no browser can be downloaded here).
const CHROMIUM: &str = "/usr/bin/chromium";

fn web_dir(workspace: &Path) -> PathBuf {
    workspace.join("console").join("web")
}

/// Installs the web app's packages (`npm ci`, when the lock file changed since the last
/// install) and builds it into `console/web/dist`, which the query API serves.
pub fn build(workspace: &Path) -> anyhow::Result<()> {
    let dir = web_dir(workspace);
    if !has_command("npm") {
        bail!(
            "npm is not installed: the console ({}) is built with Node.js 20+ and npm; install them, then `cargo xtask up` again",
            dir.display()
        );
    }
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules").join(".package-lock.json");
    if modified(&installed) < modified(&lock) {
        println!("  console: npm ci (packages of {})", lock.display());
        npm(&dir, &["ci", "--no-audit", "--no-fund"], &[])?;
    }
    let built = dir.join("dist").join("index.html");
    if modified(&built) > newest_source(&dir) {
        println!("  console: up to date ({})", built.display());
        return Ok(());
    }
    println!(
        "  console: npm run build (into {})",
        dir.join("dist").display()
    );
    npm(&dir, &["run", "--silent", "build"], &[])
}

/// When the web app's sources, build configuration or packages last changed.
fn newest_source(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut pending: Vec<PathBuf> = [
        "src",
        "index.html",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ]
    .iter()
    .map(|name| dir.join(name))
    .collect();
    while let Some(path) = pending.pop() {
        if let Ok(entries) = std::fs::read_dir(&path) {
            pending.extend(entries.flatten().map(|entry| entry.path()));
        }
        newest = newest.max(modified(&path));
    }
    newest
}

/// Runs the console's browser tests (`npm test`) against the running platform, in
/// Debian's Chromium, installed first if missing. Screenshots go to
/// `target/console-screenshots`.
pub fn test(workspace: &Path, database_url: &str) -> anyhow::Result<()> {
    if !Path::new(CHROMIUM).is_file() {
        println!("  Chromium not found at {CHROMIUM}: installing Debian's chromium");
        apt_install(&["chromium"])?;
    }
    let screenshots = workspace.join("target").join("console-screenshots");
    npm(
        &web_dir(workspace),
        &["test"],
        &[
            ("KEEL_CHROMIUM", CHROMIUM.to_owned()),
            ("KEEL_COMMAND_URL", "http://127.0.0.1:8080".to_owned()),
            ("KEEL_QUERY_URL", "http://127.0.0.1:8090".to_owned()),
            ("KEEL_DATABASE_URL", database_url.to_owned()),
            (
                "KEEL_CONSOLE_SCREENSHOTS",
                screenshots.display().to_string(),
            ),
        ],
    )?;
    println!("  console screenshots: {}", screenshots.display());
    Ok(())
}

fn npm(dir: &Path, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<()> {
    let what = format!("npm {} in {}", args.join(" "), dir.display());
    let status = Command::new("npm")
        .current_dir(dir)
        .args(args)
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
