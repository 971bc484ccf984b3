//! Where the stack lives and how it is reached. Defaults suit a developer machine;
//! every value can be overridden from the environment.

use std::env;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::java::Pins;

/// Where Apicurio serves the Confluent Schema Registry REST API.
pub const REGISTRY_API_PATH: &str = "/apis/ccompat/v7";

#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Cached tool installs (`kafka-<version>/`, `apicurio-registry-<version>/`, ...).
    pub tools_dir: PathBuf,
    /// Logs and pid files of the processes `up` starts.
    pub state_dir: PathBuf,
    pub pg_port: u16,
    pub pg_user: String,
    pub pg_password: String,
    pub pg_database: String,
    pub kafka_port: u16,
    pub kafka_controller_port: u16,
    pub registry_port: u16,
    /// Apicurio's management interface (health, metrics), moved off its default 9000.
    pub registry_management_port: u16,
    pub pins: Pins,
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
            kafka_controller_port: port_from_env("KEEL_KAFKA_CONTROLLER_PORT", 9093)?,
            registry_port: port_from_env("KEEL_REGISTRY_PORT", 8081)?,
            registry_management_port: port_from_env("KEEL_REGISTRY_MANAGEMENT_PORT", 8082)?,
            pins: Pins::read()?,
        })
    }

    /// The broker's jars, resolved by Maven: `<root>/lib/*.jar`.
    pub fn kafka_root(&self, version: &str) -> PathBuf {
        self.tools_dir.join(format!("kafka-{version}"))
    }

    pub fn kafka_lib_dir(&self) -> PathBuf {
        self.kafka_root(&self.pins.kafka).join("lib")
    }

    /// The unpacked Apicurio distribution (`quarkus-run.jar` at its root).
    pub fn apicurio_root(&self, version: &str) -> PathBuf {
        self.tools_dir.join(format!("apicurio-registry-{version}"))
    }

    /// The broker's configuration, cluster id and log segments (`data/`).
    pub fn kafka_state_dir(&self) -> PathBuf {
        self.state_dir.join("kafka")
    }

    /// The registry's H2 database: schemas and their ids outlive a restart, as the
    /// messages that carry those ids outlive one on the broker.
    pub fn registry_state_dir(&self) -> PathBuf {
        self.state_dir.join("schema-registry")
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

    /// The registry's Confluent-compatible API, which is what the platform speaks.
    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}{REGISTRY_API_PATH}", self.registry_port)
    }

    /// What the platform's processes and tests read to find the stack.
    pub fn service_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KEEL_DATABASE_URL", self.database_url()),
            // `#[sqlx::test]` creates a throwaway database per test from this URL.
            ("DATABASE_URL", self.database_url()),
            ("KEEL_KAFKA_BROKERS", self.kafka_bootstrap()),
            ("KEEL_SCHEMA_REGISTRY_URL", self.registry_url()),
            // Tests that stop and restart a broker run a private one from the same jars.
            (
                "KEEL_KAFKA_LIBS",
                self.kafka_lib_dir().display().to_string(),
            ),
            (
                "KEEL_KAFKA_JAVA",
                crate::java::find_java(17, "Apache Kafka")
                    .map(|java| java.binary.display().to_string())
                    .unwrap_or_else(|_| "java".into()),
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
