//! How every process starts and stops: the shutdown signals, a cancellation token they
//! fire, waiting for a dependency (broker, registry) that is not up yet instead of
//! exiting, and the HTTP server loop of both APIs with its bounded drain.

use std::future::Future;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::edge::{EdgeIo, EdgeLimits};

/// Completes on Ctrl-C or SIGTERM, logging which one arrived. If a signal cannot be
/// listened for, that is logged and only the other one stops the process.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

/// A token cancelled on Ctrl-C or SIGTERM: how the worker processes (relay, saga,
/// projector) and long CLI operations stop.
pub fn cancel_on_shutdown_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            shutdown_signal().await;
            cancel.cancel();
        }
    });
    cancel
}

/// Calls `attempt` every `every` until it succeeds (logging each failure as `what` not
/// ready yet), or returns `None` once `cancel` fires: workers wait for the broker and the
/// registry instead of exiting when they start first.
pub async fn retry_until_ready<T, E, F, Fut>(
    what: &str,
    every: Duration,
    cancel: &CancellationToken,
    mut attempt: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(ready) => return Some(ready),
            Err(error) => {
                tracing::warn!(%error, retry_in_s = every.as_secs(), "{what} not ready");
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = cancel.cancelled() => return None,
                }
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting
/// connections and lets in-flight requests finish for at most `grace`, after which they
/// are dropped (their transactions roll back unless already committed). Peer addresses are
/// available to handlers (`ConnectInfo<SocketAddr>`: the rate limit keys anonymous clients
/// by them). Request heads are bounded by `limits`, and every refusal at the edge is a
/// problem document (see [`crate::edge`]).
///
/// HTTP/1.1 only, as before (axum's `http2` feature is off).
///
/// # Errors
/// Never today: accept errors (out of file descriptors, …) are logged and retried.
pub async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    limits: EdgeLimits,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits,
        crate::edge::limit_head,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(limits.head_buffer_bytes());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // As axum::serve does: a full descriptor table must not end the server.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(EdgeIo::new(stream, limits)), service));
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(?grace, "shutting down: draining in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "drain deadline passed: aborting in-flight requests");
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Closes `pool`, waiting at most `timeout`: requests cut off by a drain deadline may still
/// hold connections, and the process must not wait on them.
pub async fn close_pool(pool: &sqlx::PgPool, timeout: Duration) {
    if tokio::time::timeout(timeout, pool.close()).await.is_err() {
        tracing::warn!("database connections still in use at exit");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_attempt_succeeds() {
        let attempts = AtomicU32::new(0);
        let cancel = CancellationToken::new();
        let ready = retry_until_ready("thing", Duration::from_secs(2), &cancel, || async {
            if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                Err("not yet")
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(ready, Some(7));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_cancelled() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let ready: Option<()> =
            retry_until_ready("thing", Duration::from_secs(2), &cancel, || async {
                Err::<(), _>("never")
            })
            .await;
        assert_eq!(ready, None);
    }
}
