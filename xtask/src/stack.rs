//! `up`, `status`, `down` and `logs` over the whole local stack.

use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::{REGISTRY_API_PATH, StackConfig};
use crate::java::{self, Java, java_dir};
use crate::kafka;
use crate::postgres;
use crate::probe;
use crate::process::{self, Managed};
use crate::services;
use crate::tools;

/// A JVM cold start on two cores: the broker answers in about 10 s, Apicurio in about 20 s.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The broker closes its segments and writes a clean-shutdown marker on SIGTERM.
const BROKER_STOP_GRACE: Duration = Duration::from_secs(30);

/// Apicurio 3.3 is compiled for Java 21; Kafka 4 brokers need 17.
const KAFKA_MIN_JAVA: u32 = 17;
const REGISTRY_MIN_JAVA: u32 = 21;

/// What a managed component is and how to tell it is healthy.
#[derive(Debug, Clone, Copy)]
enum Component {
    Broker,
    Registry,
}

impl Component {
    const ALL: [Component; 2] = [Component::Broker, Component::Registry];

    fn name(self) -> &'static str {
        match self {
            Component::Broker => "kafka",
            Component::Registry => "schema-registry",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Component::Broker => "Kafka broker (Apache Kafka, KRaft)",
            Component::Registry => "schema registry (Apicurio Registry, Confluent API)",
        }
    }

    fn port(self, config: &StackConfig) -> u16 {
        match self {
            Component::Broker => config.kafka_port,
            Component::Registry => config.registry_port,
        }
    }

    /// The process as `status` and `down` know it: pid file, log and identity. `start`
    /// fills in the launcher and its arguments.
    fn managed(self, config: &StackConfig) -> Managed {
        let identity = match self {
            // The configuration path is this stack's own; a test's private broker runs
            // the same main class from another folder.
            Component::Broker => config
                .kafka_state_dir()
                .join("server.properties")
                .display()
                .to_string(),
            Component::Registry => config
                .apicurio_root(&config.pins.apicurio)
                .join("quarkus-run.jar")
                .display()
                .to_string(),
        };
        Managed {
            name: self.name(),
            binary: "java".into(),
            args: Vec::new(),
            identity,
            port: self.port(config),
            log_file: config.log_dir().join(format!("{}.log", self.name())),
            pid_file: config.run_dir().join(format!("{}.pid", self.name())),
        }
    }

    fn launch(
        self,
        config: &StackConfig,
        java: &Java,
        installed: &Path,
    ) -> anyhow::Result<Managed> {
        let mut managed = self.managed(config);
        managed.binary = java.binary.clone();
        managed.args = match self {
            Component::Broker => {
                let properties = kafka::prepare(config, java)?;
                kafka::broker_args(config, &properties)
            }
            Component::Registry => {
                let db = config.registry_state_dir();
                fs::create_dir_all(&db).with_context(|| format!("creating {}", db.display()))?;
                vec![
                    format!("@{}", java_dir().join("registry-jvm.options").display()),
                    "-Dquarkus.http.host=127.0.0.1".into(),
                    format!("-Dquarkus.http.port={}", config.registry_port),
                    "-Dquarkus.management.host=127.0.0.1".into(),
                    format!(
                        "-Dquarkus.management.port={}",
                        config.registry_management_port
                    ),
                    format!(
                        "-Dapicurio.datasource.url=jdbc:h2:file:{}",
                        db.join("registry").display()
                    ),
                    "-jar".into(),
                    installed.display().to_string(),
                ]
            }
        };
        Ok(managed)
    }

    /// A protocol-level answer, not just an open port.
    fn probe(self, config: &StackConfig) -> anyhow::Result<String> {
        match self {
            Component::Broker => {
                let (brokers, topics) =
                    probe::kafka_metadata(&config.kafka_bootstrap(), PROBE_TIMEOUT)?;
                let log = self.managed(config).log_file;
                let version = kafka::reported_version(&log).map_or_else(
                    || "version not in its log".into(),
                    |v| format!("Apache Kafka {v}"),
                );
                Ok(format!(
                    "{version}; metadata: {brokers} broker(s), {topics} topic(s)"
                ))
            }
            Component::Registry => {
                let subjects = probe::registry_subjects(
                    config.registry_port,
                    REGISTRY_API_PATH,
                    PROBE_TIMEOUT,
                )?;
                // Count the subjects rather than print them: tests register hundreds.
                let count = subjects.matches("\",\"").count() + usize::from(subjects.len() > 2);
                Ok(format!(
                    "Apicurio Registry {}; GET {REGISTRY_API_PATH}/subjects -> {count} subject(s)",
                    config.pins.apicurio
                ))
            }
        }
    }

    /// Settings a fresh component needs before the platform uses it.
    fn configure(self, config: &StackConfig) -> anyhow::Result<()> {
        match self {
            Component::Broker => Ok(()),
            // A Confluent registry checks BACKWARD compatibility unless told otherwise;
            // Apicurio checks nothing by default. The platform's contract is BACKWARD.
            Component::Registry => {
                let (status_line, body) = probe::http_request(
                    config.registry_port,
                    "PUT",
                    &format!("{REGISTRY_API_PATH}/config"),
                    Some(r#"{"compatibility":"BACKWARD"}"#),
                    PROBE_TIMEOUT,
                )?;
                if !status_line.contains(" 200") {
                    bail!(
                        "setting the registry's compatibility to BACKWARD answered {status_line:?}: {body}"
                    );
                }
                Ok(())
            }
        }
    }
}

/// Held while `up` or `down` changes the stack, so two of them (two shells, CI and a
/// developer) never start the same component twice.
fn lock_stack(config: &StackConfig) -> anyhow::Result<File> {
    fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    let path = config.state_dir.join("xtask.lock");
    let file = File::create(&path).with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        println!("(another `cargo xtask up/down` is running; waiting for it to finish)");
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// The workspace root, where the service binaries are built.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// The whole platform: the stack, then every service.
pub fn up(config: &StackConfig) -> anyhow::Result<()> {
    let _lock = lock_stack(config)?;
    up_stack(config)?;
    if !services::SERVICES.is_empty() {
        println!("==> platform services");
        services::build(workspace())?;
        crate::console::build(workspace())?;
        for service in services::SERVICES {
            services::start(config, workspace(), service)?;
        }
    }
    Ok(())
}

fn up_stack(config: &StackConfig) -> anyhow::Result<()> {
    println!("==> tools (cached in {})", config.tools_dir.display());
    let kafka_java = java::find_java(KAFKA_MIN_JAVA, "Apache Kafka")?;
    let registry_java = java::find_java(REGISTRY_MIN_JAVA, "Apicurio Registry")?;
    println!(
        "  Java: {} (Java {}) for the broker, {} (Java {}) for the registry",
        kafka_java.binary.display(),
        kafka_java.major,
        registry_java.binary.display(),
        registry_java.major
    );
    let kafka_libs = java::ensure_kafka(config, &config.pins)?;
    let registry_jar = java::ensure_apicurio(config, &config.pins)?;
    tools::ensure_schema_packages(config)?;

    println!("==> PostgreSQL");
    postgres::ensure_server(config)?;
    postgres::ensure_database(config)?;

    for (component, java, installed) in [
        (Component::Broker, &kafka_java, &kafka_libs),
        (Component::Registry, &registry_java, &registry_jar),
    ] {
        println!("==> {}", component.describe());
        start(config, component, java, installed)?;
    }
    println!(
        "==> stack is up; logs and pids in {}",
        config.state_dir.display()
    );
    for (key, value) in config.service_env() {
        if key.ends_with("DATABASE_URL") {
            println!("    {key}={}", config.database_url_redacted());
        } else {
            println!("    {key}={value}");
        }
    }
    Ok(())
}

fn start(
    config: &StackConfig,
    component: Component,
    java: &Java,
    installed: &Path,
) -> anyhow::Result<()> {
    let managed = component.managed(config);
    let port = managed.port;
    if let Some(pid) = managed.running_pid() {
        match component.probe(config) {
            Ok(answer) => {
                println!("  already running (pid {pid}) on 127.0.0.1:{port}; {answer}");
                return component.configure(config);
            }
            Err(error) => {
                println!("  pid {pid} is running but does not answer ({error:#}); restarting it");
                managed.stop_within(BROKER_STOP_GRACE)?;
            }
        }
    }
    if probe::port_in_use(port) {
        let owner = probe::port_owner(port)
            .map(|(pid, cmdline)| format!("pid {pid}: {cmdline}"))
            .unwrap_or_else(|| "owner unknown".into());
        bail!(
            "cannot start the {}: 127.0.0.1:{port} is already taken by another process ({owner}). \
             Stop that process, or choose another port with KEEL_{}_PORT.",
            component.describe(),
            match component {
                Component::Broker => "KAFKA",
                Component::Registry => "REGISTRY",
            }
        );
    }
    let managed = component.launch(config, java, installed)?;
    let pid = managed.spawn()?;
    println!("  started pid {pid}; waiting for it to answer on 127.0.0.1:{port}");
    managed.wait_healthy(pid, START_TIMEOUT, || component.probe(config).map(drop))?;
    component.configure(config)?;
    println!(
        "  healthy: {}; log: {}",
        component.probe(config)?,
        managed.log_file.display()
    );
    Ok(())
}

pub fn status(config: &StackConfig) -> anyhow::Result<()> {
    let pg_url = config.database_url_redacted();
    let pg = std::process::Command::new("pg_isready")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &config.pg_port.to_string(),
            "-t",
            "2",
        ])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|error| format!("pg_isready unavailable: {error}"));
    println!("{:<16} {pg}  ({pg_url})", "postgresql");
    let mut all_healthy = pg.contains("accepting connections");
    for component in Component::ALL {
        let managed = component.managed(config);
        let process = match managed.running_pid() {
            Some(pid) => format!("pid {pid}"),
            None => "not started by xtask".into(),
        };
        let health = match component.probe(config) {
            Ok(answer) => format!("healthy ({answer})"),
            Err(error) => {
                all_healthy = false;
                format!("DOWN ({error:#})")
            }
        };
        println!(
            "{:<16} {process}, 127.0.0.1:{}, {health}",
            component.name(),
            managed.port
        );
    }
    for service in services::SERVICES {
        let (line, healthy) = services::status_line(config, workspace(), service);
        all_healthy &= healthy;
        println!("{:<16} {line}", service.name);
    }
    if !all_healthy {
        bail!("part of the stack is down; `cargo xtask up` starts it");
    }
    Ok(())
}

pub fn down(config: &StackConfig) -> anyhow::Result<()> {
    let _lock = lock_stack(config)?;
    for service in services::SERVICES.iter().rev() {
        if services::stop(config, workspace(), service)? {
            println!("stopped {}", service.name);
        }
    }
    for component in Component::ALL.iter().rev() {
        let managed = component.managed(config);
        if managed.stop_within(BROKER_STOP_GRACE)? {
            println!("stopped {}", component.describe());
        } else {
            println!("{} was not running", component.describe());
        }
    }
    println!("PostgreSQL is the machine's server and keeps running.");
    println!(
        "The broker's topics and the registry's schemas are kept in {} and {}; remove both folders to forget them.",
        config.kafka_state_dir().display(),
        config.registry_state_dir().display()
    );
    Ok(())
}

pub fn logs(config: &StackConfig, component: Option<&str>, lines: usize) -> anyhow::Result<()> {
    let Some(name) = component else {
        println!("logs are in {}:", config.log_dir().display());
        for component in Component::ALL {
            println!(
                "  {:<16} {}",
                component.name(),
                component.managed(config).log_file.display()
            );
        }
        println!("  {:<16} /var/log/postgresql/", "postgresql");
        return Ok(());
    };
    let known = Component::ALL
        .iter()
        .map(|component| component.name())
        .chain(services::SERVICES.iter().map(|service| service.name))
        .collect::<Vec<_>>();
    if !known.contains(&name) {
        bail!(
            "unknown component {name:?}; expected one of {}",
            known.join(", ")
        );
    }
    let log_file = config.log_dir().join(format!("{name}.log"));
    println!("==> {} (last {lines} lines)", log_file.display());
    println!("{}", process::tail(&log_file, lines));
    Ok(())
}
