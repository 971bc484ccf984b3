//! The test gate: formatting, lints with warnings as errors, then every test against
//! the running stack. CI runs exactly this.

use std::process::Command;

use anyhow::{Context, bail};

use crate::config::StackConfig;

pub fn run(config: &StackConfig, test_args: &[String]) -> anyhow::Result<()> {
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    step(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let env = config.service_env();
    step(
        "doc tests",
        cargo()
            .args(["test", "--workspace", "--doc"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    )?;
    if has_nextest() {
        step(
            "cargo nextest run --workspace",
            cargo()
                .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .args(test_args)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
        )
    } else {
        println!("(cargo-nextest not found: running the suite with cargo test)");
        step(
            "cargo test --workspace",
            cargo()
                .args(["test", "--workspace", "--no-fail-fast"])
                .args(test_args)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
        )
    }
}

fn step(name: &str, command: &mut Command) -> anyhow::Result<()> {
    println!("==> {name}");
    let status = command
        .status()
        .with_context(|| format!("running {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}
