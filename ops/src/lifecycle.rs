//! How every process starts and stops: the shutdown signals, a cancellation token they
//! fire, and waiting for a dependency (broker, registry) that is not up yet instead of
//! exiting.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

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
