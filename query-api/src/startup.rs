//! Wiring: pool, change feed, router, listener — and the server's lifecycle (graceful
//! drain on shutdown, with a hard deadline).
//!
//! The query API starts without its database: the pool connects lazily, readiness says
//! whether PostgreSQL and the read-model schema are there, and queries answer 503 until
//! they are. It never migrates; the projector owns the read-model schema.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::changes::{ChangeFeed, VersionWaiter};
use crate::config::{ConfigError, Settings};
use crate::http::{self, AppState};
use audit::personal_data::AuditKeys;

/// How long shutdown waits for pooled connections to be returned.
const POOL_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The settings are unusable (the authentication key included).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address is unavailable.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// A built application, bound to its port and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    pool: PgPool,
    stop_feed: CancellationToken,
    feed: JoinHandle<()>,
    shutdown_grace: Duration,
    edge_limits: ops::edge::EdgeLimits,
}

impl Application {
    /// Creates the (lazy) pool from `settings`, then [`build_with_pool`](Self::build_with_pool).
    /// An unreachable database is logged, not fatal.
    ///
    /// # Errors
    /// [`StartupError`].
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let pool = settings
            .database
            .pool_options()
            .connect_lazy_with(settings.database.url.connect_options()?);
        if let Err(error) = pool.acquire().await {
            tracing::warn!(error = %error, "PostgreSQL is not reachable yet; serving 503 until it is");
        }
        Self::build_with_pool(settings, pool).await
    }

    /// Binds the listener and starts the change feed on `pool`'s database.
    ///
    /// # Errors
    /// [`StartupError`].
    pub async fn build_with_pool(settings: &Settings, pool: PgPool) -> Result<Self, StartupError> {
        let addr = settings.http.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;

        let stop_feed = CancellationToken::new();
        let (changes, feed) = ChangeFeed::spawn(pool.clone(), stop_feed.clone());
        let state = AppState {
            pool: pool.clone(),
            waiter: VersionWaiter::new(
                changes,
                settings.read_wait.timeout,
                settings.read_wait.recheck_interval,
            ),
            audit_keys: AuditKeys(settings.keyring.clone()),
            console: settings.console.clone(),
        };
        let router = http::router(state, &settings.http, &settings.console_dir)?;
        Ok(Self {
            listener,
            local_addr,
            router,
            pool,
            stop_feed,
            feed,
            shutdown_grace: settings.http.shutdown_grace,
            edge_limits: ops::edge::EdgeLimits::from(&settings.http),
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting connections and lets
    /// in-flight requests (read-your-writes waits included) finish for at most the
    /// configured grace period, after which they are dropped.
    ///
    /// # Errors
    /// If the server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let result = ops::lifecycle::serve_until_stopped(
            self.listener,
            self.router,
            shutdown,
            self.shutdown_grace,
            self.edge_limits,
        )
        .await;
        // Waiters are gone: the feed's listener connection can go too.
        self.stop_feed.cancel();
        if let Err(error) = self.feed.await {
            tracing::warn!(error = %error, "change feed task failed");
        }
        ops::lifecycle::close_pool(&self.pool, POOL_CLOSE_TIMEOUT).await;
        tracing::info!("stopped");
        result
    }
}
