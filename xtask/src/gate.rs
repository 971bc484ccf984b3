//! The test gate: formatting, lints with warnings as errors, then every test against
//! the running stack. CI runs exactly this.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::StackConfig;

pub fn run(config: &StackConfig, test_args: &[String]) -> anyhow::Result<()> {
    crate::disk::ensure_room_for_test_build(&crate::services::target_dir(
        crate::stack::workspace(),
    ))?;
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
    crate::monitoring::check(crate::stack::workspace())?;
    let env = config.service_env();
    let topics_before = topic_count(config);
    let result = run_tests(&env, test_args).and_then(|()| {
        // The browser tests drive the platform `up` started; a test-name filter is for the
        // Rust suite, so they run only with the whole suite.
        if test_args.is_empty() {
            println!("==> console in Chromium (npm test)");
            crate::console::test(crate::stack::workspace(), &config.database_url())
        } else {
            Ok(())
        }
    });
    // Each test deletes the topics it made; a broker that keeps gaining them slows down.
    println!(
        "==> topics on the broker: {topics_before} before the tests, {} after",
        topic_count(config)
    );
    result
}

fn topic_count(config: &StackConfig) -> String {
    crate::probe::kafka_metadata(&config.kafka_bootstrap(), Duration::from_secs(5)).map_or_else(
        |error| format!("unknown ({error:#})"),
        |(_, topics)| topics.to_string(),
    )
}

fn run_tests(env: &[(&'static str, String)], test_args: &[String]) -> anyhow::Result<()> {
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
