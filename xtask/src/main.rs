//! `cargo xtask`: brings up the local platform stack and runs the test gate.
//!
//! Everything here is idempotent: `up` reuses what is already running and healthy,
//! installs tools only when the cached binary is missing or has the wrong version,
//! and fails with a message naming the part that did not come up.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod config;
mod console;
mod disk;
mod gate;
mod java;
mod kafka;
mod monitoring;
mod postgres;
mod probe;
mod process;
mod services;
mod stack;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::StackConfig;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Local platform stack and test gate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install missing tools, start PostgreSQL, the Kafka broker and the schema registry,
    /// then every platform service that exists; wait until each answers.
    Up,
    /// Show each part of the stack: running or not, pid, address, health.
    Status,
    /// Stop the broker, the registry and the platform services started by `up`.
    /// PostgreSQL is the machine's server and is left running.
    Down,
    /// Where the logs are; with a component name, print the end of its log.
    Logs {
        /// `kafka`, `schema-registry` or a service name.
        component: Option<String>,
        /// How many lines from the end to print.
        #[arg(long, short = 'n', default_value_t = 40)]
        lines: usize,
    },
    /// The CI gate: `up`, then `cargo fmt --check`, clippy with `-D warnings`, and every test.
    Test {
        /// Extra arguments passed to the test runner (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain of causes is the message; a backtrace of xtask itself helps no one.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    let config = StackConfig::from_env()?;
    match command {
        Command::Up => stack::up(&config),
        Command::Status => stack::status(&config),
        Command::Down => stack::down(&config),
        Command::Logs { component, lines } => stack::logs(&config, component.as_deref(), lines),
        Command::Test { args } => {
            // Most tests start their own service instances, but some check the platform's
            // real processes (per-process /metrics, the benchmark harness's smoke run), so
            // the gate brings the whole platform up, as `up` does.
            stack::up(&config)?;
            gate::run(&config, &args)
        }
    }
}
