//! The Apache Kafka node of the local stack: its configuration (from the committed
//! template), its storage formatted once, and how it is launched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::config::StackConfig;
use crate::java::{Java, java_dir};

/// The broker's main class, in `kafka_2.13`.
pub const MAIN_CLASS: &str = "kafka.Kafka";

/// Writes `server.properties` for this stack's ports and data folder, and formats the
/// storage with the stack's cluster id when it has never been formatted.
pub fn prepare(config: &StackConfig, java: &Java) -> anyhow::Result<PathBuf> {
    let state = config.kafka_state_dir();
    let data = state.join("data");
    fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let properties = state.join("server.properties");
    let template_path = java_dir().join("kafka-server.properties");
    let template = fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let rendered = template
        .replace("{broker_port}", &config.kafka_port.to_string())
        .replace(
            "{controller_port}",
            &config.kafka_controller_port.to_string(),
        )
        .replace("{data_dir}", &data.display().to_string());
    fs::write(&properties, rendered)
        .with_context(|| format!("writing {}", properties.display()))?;
    if !data.join("meta.properties").is_file() {
        let cluster_id = cluster_id(config, java)?;
        println!(
            "  formatting the broker's storage in {} (cluster id {cluster_id})",
            data.display()
        );
        let output = storage_tool(config, java)
            .args(["format", "--cluster-id", &cluster_id, "--config"])
            .arg(&properties)
            .output()
            .context("running kafka.tools.StorageTool format")?;
        if !output.status.success() {
            bail!(
                "formatting the broker's storage failed: {}",
                String::from_utf8_lossy(&output.stdout).trim()
            );
        }
    }
    Ok(properties)
}

/// The cluster id, made once and kept beside the data it was formatted with.
fn cluster_id(config: &StackConfig, java: &Java) -> anyhow::Result<String> {
    let path = config.kafka_state_dir().join("cluster-id");
    if let Ok(id) = fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let output = storage_tool(config, java)
        .arg("random-uuid")
        .output()
        .context("running kafka.tools.StorageTool random-uuid")?;
    let id = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    if !output.status.success() || id.is_empty() {
        bail!(
            "kafka.tools.StorageTool random-uuid gave no id: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    fs::write(&path, format!("{id}\n")).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

fn storage_tool(config: &StackConfig, java: &Java) -> Command {
    let mut command = Command::new(&java.binary);
    command
        .arg("-Xmx256m")
        .arg(log_config_property())
        .arg("-cp")
        .arg(classpath(&config.kafka_lib_dir()))
        .arg("kafka.tools.StorageTool");
    command
}

/// The broker's JVM arguments and main class, for `java`.
pub fn broker_args(config: &StackConfig, properties: &Path) -> Vec<String> {
    vec![
        format!("@{}", java_dir().join("kafka-jvm.options").display()),
        log_config_property(),
        "-cp".into(),
        classpath(&config.kafka_lib_dir()),
        MAIN_CLASS.into(),
        properties.display().to_string(),
    ]
}

fn log_config_property() -> String {
    format!(
        "-Dlog4j2.configurationFile={}",
        java_dir().join("kafka-log4j2.properties").display()
    )
}

/// The jar folder as a classpath wildcard, which the JVM (not a shell) expands.
fn classpath(lib: &Path) -> String {
    format!("{}/*", lib.display())
}

/// The version the running broker printed when it started (`Kafka version: 4.3.1`),
/// from the part of its log after the last start marker.
pub fn reported_version(log_file: &Path) -> Option<String> {
    let log = fs::read_to_string(log_file).ok()?;
    let since_start = log.rsplit("=== xtask up: starting").next()?;
    since_start.lines().find_map(|line| {
        let (_, rest) = line.split_once("Kafka version: ")?;
        Some(rest.split_whitespace().next()?.to_string())
    })
}
