//! Scratch databases: created for one run next to the platform's database, migrated with
//! the event store's own migrations (`event_store::MIGRATOR`, embedded at build time) and
//! dropped afterwards. Scenarios that write in bulk (pgbench, rebuild, aggregate loads) use
//! one, so the live `keel` database only ever receives what the platform itself writes.

use anyhow::Context;
use sqlx::PgPool;

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

/// A database of its own, named `keel_bench_<purpose>_<random>`: the tests' scratch
/// database with the event store migrated and `--keep-database` honoured.
#[derive(Debug)]
pub struct ScratchDatabase {
    inner: test_support::ScratchDatabase,
    keep: bool,
}

impl ScratchDatabase {
    /// Creates it on the server of `--database-url` (whose role must be allowed to create
    /// databases) and applies the event store's migrations.
    pub async fn create(args: &ScratchArgs, purpose: &str) -> anyhow::Result<Self> {
        let inner = test_support::ScratchDatabase::create_on(
            &args.database_url,
            &format!("keel_bench_{purpose}"),
        )
        .await
        .context("making a scratch database (--database-url / KEEL_DATABASE_URL)")?;
        let database = Self {
            inner,
            keep: args.keep_database,
        };
        let pool = database.pool(1).await?;
        let migrated = event_store::migrate(&pool).await;
        pool.close().await;
        if let Err(error) = migrated {
            database.drop().await;
            return Err(error).context("applying the event store migrations");
        }
        eprintln!("scratch database {} created", database.name());
        Ok(database)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Its URL (credentials included; never printed).
    pub fn url(&self) -> &str {
        self.inner.url()
    }

    /// A pool on it.
    pub async fn pool(&self, connections: u32) -> anyhow::Result<PgPool> {
        Ok(self.inner.pool(connections).await?)
    }

    /// Drops it (unless it is to be kept); best effort, a failure is only reported.
    pub async fn drop(self) {
        if self.keep {
            eprintln!("scratch database {} kept (--keep-database)", self.name());
            return;
        }
        self.inner.drop_database().await;
    }
}
