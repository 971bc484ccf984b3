//! The projector process: every configured projection, one shutdown owner.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::Settings;
use crate::projector::{Projector, StartError};
use crate::{Projection, db};

/// The process could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The read-model database is unreachable.
    #[error("read-model database {url}: {source}")]
    Database {
        /// Redacted URL.
        url: String,
        /// Driver error.
        source: sqlx::Error,
    },
    /// The read-model migrations failed.
    #[error("read-model migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A projector could not start.
    #[error("projection {projection}: {source}")]
    Start {
        /// Which one.
        projection: Projection,
        /// Why.
        source: StartError,
    },
    /// Projectors were still busy when the shutdown timeout expired.
    #[error("projectors did not stop within {0:?}")]
    ShutdownTimedOut(Duration),
}

/// Connects, migrates, starts a projector per configured projection and runs them until
/// `shutdown` is cancelled; then waits for them to commit and leave, at most
/// `settings.shutdown_timeout`.
///
/// # Errors
/// [`RunError`].
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RunError> {
    let pool = db::connect(&settings.database_url, settings.database_max_connections)
        .await
        .map_err(|source| RunError::Database {
            url: settings.database_url.to_string(),
            source,
        })?;
    read_model::migrate(&pool).await?;
    info!(database = %settings.database_url, "read-model schema migrated");

    let mut tasks = JoinSet::new();
    for projection in &settings.projections {
        let projector = Projector::start(
            *projection,
            pool.clone(),
            &settings.kafka,
            &settings.projector,
        )
        .await
        .map_err(|source| RunError::Start {
            projection: *projection,
            source,
        })?;
        tasks.spawn(projector.run(shutdown.child_token()));
    }

    // A projector only returns on shutdown; if one ends early (a panic), stop the others.
    if let Some(result) = tokio::select! {
        () = shutdown.cancelled() => None,
        result = tasks.join_next() => result,
    } && let Err(panic) = result
    {
        error!(%panic, "a projector crashed; stopping the others");
        shutdown.cancel();
    }
    shutdown.cancel();
    match tokio::time::timeout(settings.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    {
        Ok(()) => {
            pool.close().await;
            Ok(())
        }
        Err(_) => Err(RunError::ShutdownTimedOut(settings.shutdown_timeout)),
    }
}
