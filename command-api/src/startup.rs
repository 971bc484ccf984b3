//! Wiring: pool, migrations, event stores, router, listener — and the server's lifecycle
//! (graceful drain on shutdown, with a hard deadline).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use aggregates::customer::PersonalDataVault;
use aggregates::payment::{PaymentGateway, PaymentServices, SimulatedPaymentGateway};
use axum::Router;
use event_store::doorbell::Doorbell;
use sqlx::PgPool;
use sqlx::migrate::MigrateError;
use tokio::net::TcpListener;

use crate::config::{ConfigError, PaymentGatewayKind, Settings};
use crate::gateway::GuardedGateway;
use crate::http::{self, AppState};
use crate::store::group_commit::GroupCommit;
use crate::store::{AggregateStore, AppendHook, Writer};
use crate::vault::KeyTableVault;
use ops::clock::{Clock, SystemClock};
use ops::ids::{IdSource, RandomIds};

/// How long shutdown waits for pooled connections to be returned.
const POOL_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Applies the event store's migrations ([`event_store::MIGRATOR`]): this service appends
/// to its tables.
///
/// # Errors
/// The database is unreachable, or a migration fails.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    event_store::migrate(pool).await
}

/// What the application is built from besides its settings: injected so tests can pin
/// time and ids, swap the gateway, and hold commands at the append.
#[derive(Clone)]
pub struct Dependencies {
    /// Source of `occurred_at`.
    pub clock: Arc<dyn Clock>,
    /// Source of server-chosen ids.
    pub ids: Arc<dyn IdSource>,
    /// The payment gateway behind the port.
    pub payment_gateway: Arc<dyn PaymentGateway>,
    /// Test seam; `None` in production.
    pub append_hook: Option<Arc<dyn AppendHook>>,
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependencies")
            .field("clock", &self.clock)
            .field("ids", &self.ids)
            .field("append_hook", &self.append_hook)
            .finish_non_exhaustive()
    }
}

impl Dependencies {
    /// Production wiring: system clock, UUIDv7 ids, the configured gateway behind a
    /// [`GuardedGateway`] (timeout, retries with backoff and jitter, circuit breaker).
    pub fn from_settings(settings: &Settings) -> Self {
        let adapter: Arc<dyn PaymentGateway> = match settings.payment_gateway {
            PaymentGatewayKind::Simulated => Arc::new(SimulatedPaymentGateway::new()),
        };
        let payment_gateway: Arc<dyn PaymentGateway> =
            Arc::new(GuardedGateway::new(adapter, settings.gateway_guard.clone()));
        Self {
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            payment_gateway,
            append_hook: None,
        }
    }
}

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The settings are unusable (the authentication key included).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// PostgreSQL could not be reached.
    #[error("cannot connect to PostgreSQL: {0}")]
    Database(#[source] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] MigrateError),
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
    shutdown_grace: Duration,
    edge_limits: ops::edge::EdgeLimits,
}

impl Application {
    /// Connects to the database from `settings`, then [`build_with_pool`](Self::build_with_pool).
    ///
    /// # Errors
    /// [`StartupError`].
    pub async fn build(
        settings: &Settings,
        dependencies: Dependencies,
    ) -> Result<Self, StartupError> {
        let pool = connect(settings).await?;
        Self::build_with_pool(settings, pool, dependencies).await
    }

    /// Migrates `pool`'s database, wires the event stores and binds the listener.
    ///
    /// # Errors
    /// [`StartupError`].
    pub async fn build_with_pool(
        settings: &Settings,
        pool: PgPool,
        dependencies: Dependencies,
    ) -> Result<Self, StartupError> {
        migrate(&pool).await?;
        let Dependencies {
            clock,
            ids,
            payment_gateway,
            append_hook,
        } = dependencies;
        let vault: Arc<dyn PersonalDataVault> =
            Arc::new(KeyTableVault::new(pool.clone(), settings.keyring.clone()));
        let doorbell = settings
            .event_store
            .doorbell_spacing
            .map_or_else(Doorbell::silent, |spacing| {
                Doorbell::start(&pool.connect_options(), spacing)
            });
        let writer = Writer {
            pool: pool.clone(),
            group_commit: GroupCommit::start(
                pool.clone(),
                settings.event_store.group_commit,
                doorbell.clone(),
            ),
            doorbell,
            append_hook,
            cache_entries: NonZeroUsize::new(settings.event_store.aggregate_cache_entries),
        };
        let state = AppState {
            orders: Arc::new(AggregateStore::new(&writer, Arc::clone(&vault), None)),
            customers: Arc::new(AggregateStore::new(&writer, vault, None)),
            fingerprint_key: settings
                .keyring
                .as_ref()
                .map(|keyring| Arc::from(keyring.fingerprint_key())),
            payments: Arc::new(AggregateStore::new(
                &writer,
                PaymentServices::new(payment_gateway),
                None,
            )),
            inventory: Arc::new(AggregateStore::new(
                &writer,
                (),
                Some(settings.event_store.inventory_snapshot_every),
            )),
            pool: pool.clone(),
            clock,
            ids,
        };
        let router = http::router(state, &settings.http)?;
        let addr = settings.http.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
            router,
            pool,
            shutdown_grace: settings.http.shutdown_grace,
            edge_limits: ops::edge::EdgeLimits::from(&settings.http),
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting connections and lets
    /// in-flight requests finish for at most the configured grace period, after which they
    /// are dropped (their transactions roll back unless already committed).
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
        ops::lifecycle::close_pool(&self.pool, POOL_CLOSE_TIMEOUT).await;
        tracing::info!("stopped");
        result
    }
}

async fn connect(settings: &Settings) -> Result<PgPool, StartupError> {
    settings
        .database
        .pool_options()
        .connect_with(settings.database.url.connect_options()?)
        .await
        .map_err(StartupError::Database)
}
