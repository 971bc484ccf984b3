//! Where the stack lives and how it is reached. Defaults suit a developer machine;
//! every value can be overridden from the environment.

use std::env;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// A tool built with `cargo install`, cached outside the repository so that every
/// clone on the machine reuses it (the Tansu build takes about 20 minutes).
#[derive(Debug, Clone)]
pub struct Tool {
    pub crate_name: &'static str,
    pub version: &'static str,
    pub features: &'static [&'static str],
    pub binary: &'static str,
    /// Rough first build time on a 2-core machine, to set expectations.
    pub build_minutes: u32,
}

pub const TANSU: Tool = Tool {
    crate_name: "tansu",
    version: "0.6.0",
    // `dynostore` provides the memory:// engine the local stack uses.
    features: &["dynostore", "postgres"],
    binary: "tansu",
    build_minutes: 20,
};

pub const RIVVEN_SCHEMA: Tool = Tool {
    crate_name: "rivven-schema",
    version: "0.0.22",
    features: &[],
    binary: "rivven-schema",
    build_minutes: 8,
};

#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Cached tool installs: `<tools_dir>/<crate>-<version>/bin/<binary>`.
    pub tools_dir: PathBuf,
    /// Logs and pid files of the processes `up` starts.
    pub state_dir: PathBuf,
    pub pg_port: u16,
    pub pg_user: String,
    pub pg_password: String,
    pub pg_database: String,
    pub kafka_port: u16,
    pub registry_port: u16,
}

impl StackConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let home = env::var_os("HOME").map(PathBuf::from);
        let dir_from = |var: &str, xdg: &str, fallback: &str| -> anyhow::Result<PathBuf> {
            if let Some(dir) = env::var_os(var) {
                return Ok(PathBuf::from(dir));
            }
            if let Some(base) = env::var_os(xdg) {
                return Ok(PathBuf::from(base).join("keel"));
            }
            match &home {
                Some(home) => Ok(home.join(fallback).join("keel")),
                None => {
                    bail!("neither {var}, {xdg} nor HOME is set: cannot place the stack's files")
                }
            }
        };
        let tools_dir = match env::var_os("KEEL_TOOLS_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => dir_from("KEEL_CACHE_DIR", "XDG_CACHE_HOME", ".cache")?.join("tools"),
        };
        Ok(Self {
            tools_dir,
            state_dir: dir_from("KEEL_STATE_DIR", "XDG_STATE_HOME", ".local/state")?,
            pg_port: port_from_env("KEEL_PG_PORT", 5432)?,
            pg_user: env::var("KEEL_PG_USER").unwrap_or_else(|_| "keel".into()),
            pg_password: env::var("KEEL_PG_PASSWORD").unwrap_or_else(|_| "keel".into()),
            pg_database: env::var("KEEL_PG_DATABASE").unwrap_or_else(|_| "keel".into()),
            kafka_port: port_from_env("KEEL_KAFKA_PORT", 9092)?,
            registry_port: port_from_env("KEEL_REGISTRY_PORT", 8081)?,
        })
    }

    pub fn tool_root(&self, tool: &Tool) -> PathBuf {
        self.tools_dir
            .join(format!("{}-{}", tool.crate_name, tool.version))
    }

    pub fn tool_binary(&self, tool: &Tool) -> PathBuf {
        self.tool_root(tool).join("bin").join(tool.binary)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.state_dir.join("run")
    }

    pub fn database_url(&self) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            self.pg_user, self.pg_password, self.pg_port, self.pg_database
        )
    }

    /// The same URL with the password masked, for messages and logs.
    pub fn database_url_redacted(&self) -> String {
        format!(
            "postgres://{}:***@127.0.0.1:{}/{}",
            self.pg_user, self.pg_port, self.pg_database
        )
    }

    pub fn kafka_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry_port)
    }

    /// What the platform's processes and tests read to find the stack.
    pub fn service_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KEEL_DATABASE_URL", self.database_url()),
            // `#[sqlx::test]` creates a throwaway database per test from this URL.
            ("DATABASE_URL", self.database_url()),
            ("KEEL_KAFKA_BROKERS", self.kafka_bootstrap()),
            ("KEEL_SCHEMA_REGISTRY_URL", self.registry_url()),
            // Tests that stop and restart a broker run their own instance of this binary.
            (
                "KEEL_TANSU_BIN",
                self.tool_binary(&TANSU).display().to_string(),
            ),
        ]
    }
}

fn port_from_env(var: &str, default: u16) -> anyhow::Result<u16> {
    match env::var(var) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{var}={value:?} is not a TCP port")),
        Err(_) => Ok(default),
    }
}
