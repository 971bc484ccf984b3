//! Scratch databases: created for one run next to the platform's database, migrated with
//! the event store's own migrations (`event_store::MIGRATOR`, embedded at build time) and
//! dropped afterwards. Scenarios that write in bulk (pgbench, rebuild, aggregate loads) use
//! one, so the live `keel` database only ever receives what the platform itself writes.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

/// Where a scenario makes its scratch database: the flags every such scenario shares.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct ScratchArgs {
    /// The server the scratch database is created on.
    #[arg(
        long,
        env = "KEEL_DATABASE_URL",
        default_value = "postgres://keel:keel@127.0.0.1:5432/keel",
        hide_env_values = true,
        hide_default_value = true
    )]
    #[serde(skip)]
    pub database_url: String,
    /// Keep the scratch database afterwards.
    #[arg(long)]
    pub keep_database: bool,
}

/// A database of its own, named `keel_bench_<purpose>_<random>`.
#[derive(Debug)]
pub struct ScratchDatabase {
    pub name: String,
    /// Its URL (credentials included; never printed).
    pub url: String,
    admin: PgConnectOptions,
    keep: bool,
}

impl ScratchDatabase {
    /// Creates it on the server of `base_url` (whose role must be allowed to create
    /// databases) and applies the event store's migrations.
    pub async fn create(args: &ScratchArgs, purpose: &str) -> anyhow::Result<Self> {
        let (base_url, keep) = (args.database_url.as_str(), args.keep_database);
        let admin = PgConnectOptions::from_str(base_url).context("parsing the database URL")?;
        let name = format!(
            "keel_bench_{purpose}_{}",
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let mut connection = PgConnection::connect_with(&admin)
            .await
            .context("connecting to PostgreSQL (--database-url / KEEL_DATABASE_URL)")?;
        connection
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .with_context(|| format!("creating the scratch database {name}"))?;
        connection.close().await.ok();
        let without_query = base_url.split('?').next().unwrap_or(base_url);
        let (server, _) = without_query
            .rsplit_once('/')
            .context("the database URL names no database")?;
        let database = Self {
            url: format!("{server}/{name}"),
            name,
            admin,
            keep,
        };
        let pool = database.pool(1).await?;
        let migrated = event_store::migrate(&pool).await;
        pool.close().await;
        if let Err(error) = migrated {
            database.drop().await;
            return Err(error).context("applying the event store migrations");
        }
        eprintln!("scratch database {} created", database.name);
        Ok(database)
    }

    /// A pool on it.
    pub async fn pool(&self, connections: u32) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.admin.clone().database(&self.name))
            .await
            .with_context(|| format!("connecting to {}", self.name))
    }

    /// Drops it (unless it is to be kept); best effort, a failure is only reported.
    pub async fn drop(self) {
        if self.keep {
            eprintln!("scratch database {} kept (--keep-database)", self.name);
            return;
        }
        match PgConnection::connect_with(&self.admin).await {
            Ok(mut connection) => {
                let statement = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
                if let Err(error) = connection.execute(statement.as_str()).await {
                    eprintln!("scratch database {} not dropped: {error}", self.name);
                }
                connection.close().await.ok();
            }
            Err(error) => eprintln!("scratch database {} not dropped: {error}", self.name),
        }
    }
}
