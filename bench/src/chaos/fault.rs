//! The faults: which part goes down, how, and when it counts as back.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use sqlx::Connection;
use tokio::time::Instant;

use super::process::{ManagedProcess, PostgresCluster};

/// How long a restarted part may take to answer again.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const READY_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL the command API.
    CommandApi,
    /// SIGKILL the outbox relay.
    OutboxRelay,
    /// SIGKILL the saga.
    Saga,
    /// SIGKILL the projector.
    Projector,
    /// SIGKILL the query API.
    QueryApi,
    /// SIGKILL the Kafka broker (the one KRaft node).
    Broker,
    /// SIGKILL the schema registry.
    Registry,
    /// Stop PostgreSQL in immediate mode (crash recovery on start).
    Postgres,
}

impl Fault {
    pub const ALL: [Self; 8] = [
        Self::CommandApi,
        Self::OutboxRelay,
        Self::Saga,
        Self::Projector,
        Self::QueryApi,
        Self::Broker,
        Self::Registry,
        Self::Postgres,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::CommandApi => "command-api",
            Self::OutboxRelay => "outbox-relay",
            Self::Saga => "saga",
            Self::Projector => "projector",
            Self::QueryApi => "query-api",
            Self::Broker => "broker",
            Self::Registry => "registry",
            Self::Postgres => "postgres",
        }
    }

    /// The pid file `cargo xtask up` keeps for it; PostgreSQL has none.
    fn pid_file_name(self) -> Option<&'static str> {
        match self {
            Self::Broker => Some("kafka"),
            Self::Registry => Some("schema-registry"),
            Self::Postgres => None,
            other => Some(other.name()),
        }
    }
}

/// Where the parts answer, to tell when a restarted one is back.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub command_url: String,
    pub query_url: String,
    pub registry_url: String,
    pub brokers: String,
    pub database_url: String,
    pub postgres_port: u16,
}

/// When a fault happened.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub injected: Instant,
    pub restarted: Instant,
    /// When the part answered again (its health endpoint, the broker's metadata, a
    /// database connection); at restart for the workers, which have no endpoint.
    pub ready: Instant,
}

/// Brings `fault`'s part down, waits `pause`, starts it again and waits until it answers.
pub async fn inject(
    fault: Fault,
    pause: Duration,
    run_dir: &Path,
    endpoints: &Endpoints,
    client: &reqwest::Client,
) -> anyhow::Result<Timing> {
    let injected = Instant::now();
    let restarted = match fault.pid_file_name() {
        Some(name) => {
            let process = ManagedProcess::new(run_dir, name);
            let launch = process.kill().await?;
            tokio::time::sleep(pause).await;
            process.restart(&launch)?;
            Instant::now()
        }
        None => {
            let cluster = PostgresCluster::on_port(endpoints.postgres_port)?;
            tokio::task::spawn_blocking({
                let cluster = cluster.clone();
                move || cluster.stop_immediately()
            })
            .await??;
            tokio::time::sleep(pause).await;
            tokio::task::spawn_blocking(move || cluster.start()).await??;
            Instant::now()
        }
    };
    let deadline = restarted + READY_TIMEOUT;
    loop {
        if answers(fault, endpoints, client).await {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not answer within {READY_TIMEOUT:?} of its restart",
            fault.name()
        );
        tokio::time::sleep(READY_POLL).await;
    }
    Ok(Timing {
        injected,
        restarted,
        ready: Instant::now(),
    })
}

async fn answers(fault: Fault, endpoints: &Endpoints, client: &reqwest::Client) -> bool {
    let ok = |url: String| async move {
        client
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    };
    match fault {
        Fault::CommandApi => ok(format!("{}/health/ready", endpoints.command_url)).await,
        Fault::QueryApi => ok(format!("{}/health/ready", endpoints.query_url)).await,
        Fault::Registry => ok(format!("{}/subjects", endpoints.registry_url)).await,
        Fault::Broker => {
            let brokers = endpoints.brokers.clone();
            tokio::task::spawn_blocking(move || broker_answers(&brokers))
                .await
                .unwrap_or(false)
        }
        Fault::Postgres => sqlx::PgConnection::connect(&endpoints.database_url)
            .await
            .is_ok(),
        Fault::OutboxRelay | Fault::Saga | Fault::Projector => true,
    }
}

fn broker_answers(brokers: &str) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create();
    consumer
        .context("creating a Kafka client")
        .and_then(|c| {
            c.fetch_metadata(None, Duration::from_secs(2))
                .context("broker metadata")
        })
        .is_ok_and(|metadata| !metadata.brokers().is_empty())
}
