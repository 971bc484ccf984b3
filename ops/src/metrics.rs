//! Prometheus metrics: one recorder per process, a `/metrics` endpoint, HTTP request
//! metrics, and a small listener for worker processes that serve no HTTP of their own.
//!
//! Every metric of the platform starts with `keel_`; durations are histograms in seconds.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Bucket bounds (seconds) of every `*_seconds` histogram: 1 ms to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same
/// handle, so in-process tests that start several services share it).
///
/// # Panics
/// If another `metrics` recorder was installed by someone else first.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            #[allow(clippy::expect_used)] // constant, non-empty bucket list
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// The text exposition of every metric recorded so far.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

/// `GET /metrics`, to merge into a service's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/metrics", get(metrics_endpoint))
}

async fn metrics_endpoint() -> Response {
    let mut response = render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Middleware recording `keel_http_requests_total` and
/// `keel_http_request_duration_seconds` by service, method, route template and status:
/// `axum::middleware::from_fn_with_state("command-api", ops::metrics::track_http)`.
/// The route template a request matched (`/orders/{order_id}`), never its raw path, so
/// neither metric labels nor request spans carry ids or whatever a scanner sends;
/// `unmatched` when no route matched. Available to layers applied with `Router::layer`.
pub fn route_template<B>(request: &axum::http::Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// Requests that matched no route are labelled `route="unmatched"`, so scanners cannot
/// blow up the label set.
pub async fn track_http(
    State(service): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = route_template(&request).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_owned()),
        ("method", method),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("keel_http_requests_total", &labels).increment(1);
    metrics::histogram!("keel_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves `GET /metrics` and `GET /health/live` on `addr` until `shutdown` completes: the
/// scrape endpoint of a worker process (outbox relay, projector, saga).
///
/// # Errors
/// If `addr` cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<SocketAddr> {
    install();
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let app: Router = routes().route("/health/live", get(|| async { "ok" }));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "metrics endpoint failed");
        }
    });
    tracing::info!(addr = %local_addr, "metrics at /metrics");
    Ok(local_addr)
}

#[cfg(test)]
mod route_tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request as HttpRequest, StatusCode};
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// Answers with the template the layer saw, as a span or a metric would record it.
    async fn echo_route(request: Request, next: Next) -> Response {
        let route = route_template(&request).to_owned();
        let status = next.run(request).await.status();
        (status, route).into_response()
    }

    async fn seen(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(HttpRequest::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_layer_sees_the_route_template_not_the_raw_path() {
        let router = Router::new()
            .route("/orders/{order_id}", get(|| async { "ok" }))
            .layer(middleware::from_fn(echo_route));
        assert_eq!(
            seen(&router, "/orders/0b9b1f0e-1f4e-4b7c-8a47-3c6a4b6a7d21").await,
            (StatusCode::OK, "/orders/{order_id}".to_owned())
        );
    }

    #[tokio::test]
    async fn an_unmatched_request_is_unmatched() {
        let router = Router::new()
            .route("/orders/{order_id}", get(|| async { "ok" }))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(middleware::from_fn(echo_route));
        assert_eq!(
            seen(&router, "/wp-admin/../../etc/passwd").await,
            (StatusCode::NOT_FOUND, "unmatched".to_owned())
        );
    }
}
