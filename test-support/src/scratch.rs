//! Scratch databases: one per test (or benchmark run), created next to the platform's
//! database on the same server and dropped at the end, so tests never share rows and the
//! live `keel` database only receives what the platform itself writes. Nothing is
//! migrated here: each caller applies the migrations of the crates it exercises.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use crate::Stack;

/// Why a scratch database could not be made or reached.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// The server's URL does not parse.
    #[error("the database URL does not parse: {0}")]
    Url(#[source] sqlx::Error),
    /// The URL names no database to replace.
    #[error("the database URL names no database")]
    NoDatabase,
    /// The server is unreachable.
    #[error(
        "PostgreSQL is not reachable (is the stack up? run `cargo xtask up`; or set KEEL_DATABASE_URL): {0}"
    )]
    Unreachable(#[source] sqlx::Error),
    /// The server refused to create it.
    #[error("cannot create the scratch database {name}: {source}")]
    Create {
        /// Its name.
        name: String,
        /// Why.
        source: sqlx::Error,
    },
    /// No pool on it.
    #[error("cannot connect to the scratch database {name}: {source}")]
    Connect {
        /// Its name.
        name: String,
        /// Why.
        source: sqlx::Error,
    },
}

/// A database of its own, named `<prefix>_<random>`. Dropping the value does not drop the
/// database: call [`ScratchDatabase::drop_database`] at the end (an async drop does not
/// exist), so a failed test leaves its rows to look at.
#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    name: String,
    url: String,
    admin: PgConnectOptions,
}

impl ScratchDatabase {
    /// Creates one on the stack's server (`KEEL_DATABASE_URL`).
    ///
    /// # Errors
    /// [`ScratchError`].
    pub async fn create(prefix: &str) -> Result<Self, ScratchError> {
        Self::create_on(&Stack::from_env().database_url, prefix).await
    }

    /// Creates one on the server of `base_url`, whose role must be allowed to create
    /// databases.
    ///
    /// # Errors
    /// [`ScratchError`].
    pub async fn create_on(base_url: &str, prefix: &str) -> Result<Self, ScratchError> {
        let admin = PgConnectOptions::from_str(base_url).map_err(ScratchError::Url)?;
        let name = format!("{prefix}_{}", Uuid::new_v4().simple());
        let mut connection = PgConnection::connect_with(&admin)
            .await
            .map_err(ScratchError::Unreachable)?;
        connection
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .map_err(|source| ScratchError::Create {
                name: name.clone(),
                source,
            })?;
        connection.close().await.ok();
        let (path, query) = base_url
            .split_once('?')
            .map_or((base_url, None), |(path, query)| (path, Some(query)));
        let (server, _) = path.rsplit_once('/').ok_or(ScratchError::NoDatabase)?;
        let url = match query {
            Some(query) => format!("{server}/{name}?{query}"),
            None => format!("{server}/{name}"),
        };
        Ok(Self { url, name, admin })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL, the server's query parameters kept (credentials included; never print it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Options that connect to it.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.name)
    }

    /// A pool of up to `connections` on it.
    ///
    /// # Errors
    /// [`ScratchError::Connect`].
    pub async fn pool(&self, connections: u32) -> Result<PgPool, ScratchError> {
        PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.connect_options())
            .await
            .map_err(|source| ScratchError::Connect {
                name: self.name.clone(),
                source,
            })
    }

    /// Drops it, closing whatever is still connected; best effort, a failure is only
    /// reported on stderr. A non-superuser cannot terminate an autovacuum worker, which
    /// busy scratch databases often have (it fails the `FORCE`), so a failed drop is tried
    /// again a few times, a second apart.
    pub async fn drop_database(&self) {
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            let outcome = match PgConnection::connect_with(&self.admin).await {
                Ok(mut connection) => {
                    let statement =
                        format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
                    let dropped = connection.execute(statement.as_str()).await.map(|_| ());
                    connection.close().await.ok();
                    dropped
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) => return,
                Err(error) if attempt == ATTEMPTS => {
                    eprintln!("scratch database {} not dropped: {error}", self.name);
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}
