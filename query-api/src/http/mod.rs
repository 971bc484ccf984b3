//! The HTTP surface: routes, extractors, cursors, problem documents, OpenAPI. The audit
//! trail's routes come from the `audit` crate and are mounted here.
//!
//! Every route is a GET; the route table is in the crate docs. Single-aggregate reads
//! answer with `ETag: "<version>"` and accept `?min_version=` (read-your-writes, see
//! [`crate::changes`]).

pub mod cursor;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod problem;
pub mod projections;
pub mod stock;

use std::future::Future;
use std::sync::Arc;

use std::path::Path;

use audit::personal_data::AuditKeys;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use console::ConsoleSettings;
use ops::auth::{Access, Role};
use ops::gate::Gate;
use serde::Serialize;
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::problem::{Problem, QueryError};
use crate::changes::{VersionWaiter, WaitOutcome, WaitTarget};
use crate::config::{HttpSettings, SERVICE};

/// `X-Request-Id`: taken from the request or generated, logged and echoed.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The read-model database.
    pub pool: PgPool,
    /// Read-your-writes waits.
    pub waiter: VersionWaiter,
    /// Opens personal data in the audit trail (for the `auditor` role only).
    pub audit_keys: AuditKeys,
    /// The operator console's settings.
    pub console: ConsoleSettings,
}

impl AppState {
    /// With `min_version`, waits (bounded) until `probe` reports at least that version of
    /// `target`'s row; without, returns at once.
    ///
    /// # Errors
    /// [`QueryError::NotYetConsistent`] when the wait times out, database errors.
    pub async fn ensure_version<F, Fut>(
        &self,
        target: WaitTarget<'_>,
        min_version: Option<i64>,
        probe: F,
    ) -> Result<(), QueryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<i64>, sqlx::Error>>,
    {
        let Some(requested) = min_version else {
            return Ok(());
        };
        match self.waiter.wait_for(target, requested, probe).await? {
            WaitOutcome::Reached => Ok(()),
            WaitOutcome::TimedOut { current } => Err(QueryError::NotYetConsistent {
                requested,
                current,
                waited: self.waiter.timeout(),
            }),
        }
    }
}

/// The audit routes read the event store through the same pool.
impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> Self {
        state.pool.clone()
    }
}

/// The audit routes open personal data with the configured master keys.
impl FromRef<AppState> for AuditKeys {
    fn from_ref(state: &AppState) -> Self {
        state.audit_keys.clone()
    }
}

/// The console's routes read their settings from the state.
impl FromRef<AppState> for ConsoleSettings {
    fn from_ref(state: &AppState) -> Self {
        state.console.clone()
    }
}

/// A single-aggregate view, answered with `ETag: "<version>"` (the same value the command
/// API returns as its `ETag`).
#[derive(Debug)]
pub struct Versioned<T> {
    /// The view's version.
    pub version: i64,
    /// The view.
    pub body: T,
}

impl<T: Serialize> IntoResponse for Versioned<T> {
    fn into_response(self) -> Response {
        let mut response = Json(self.body).into_response();
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", self.version)) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        response
    }
}

/// Probes, the OpenAPI document, metrics and the console's web app (which holds no data)
/// are public; the audit trail, the projections' replay status and the console's data
/// need `auditor`, the console's actions `operator`; the read models need `reader`.
pub fn access(method: &Method, path: &str) -> Access {
    match path {
        "/health/live" | "/health/ready" | "/openapi.json" | "/metrics" => Access::Public,
        _ if path.starts_with("/console/api/") || path == "/console/api" => {
            if method == Method::GET || method == Method::HEAD {
                Access::Requires(Role::Auditor)
            } else {
                Access::Requires(Role::Operator)
            }
        }
        _ if path == "/console" || path.starts_with("/console/") => Access::Public,
        _ if path == "/audit" || path.starts_with("/audit/") => Access::Requires(Role::Auditor),
        _ if path == "/projections" || path.starts_with("/projections/") => {
            Access::Requires(Role::Auditor)
        }
        _ => Access::Requires(Role::Reader),
    }
}

/// Every route with its OpenAPI operation: the router and the document come from this one
/// list, so they cannot drift apart.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::list_customer_orders))
        .routes(routes!(payments::list_order_payments))
        .routes(routes!(payments::get_payment))
        .routes(routes!(stock::list_stock))
        .routes(routes!(stock::get_stock))
        .routes(routes!(projections::get_projections))
        .merge(audit::http::routes())
        .merge(console::routes())
        .routes(routes!(ops::health::live))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::document))
}

/// The OpenAPI document, as `/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut openapi) = routes().split_for_parts();
    openapi::document_query_conventions(&mut openapi);
    openapi
}

/// The whole HTTP application and its OpenAPI document; the console's web app is served
/// from `console_dir`.
///
/// # Errors
/// If the authentication settings are unusable (a key that does not parse).
pub fn router(
    state: AppState,
    settings: &HttpSettings,
    console_dir: &Path,
) -> Result<Router, ops::ConfigError> {
    let gate = Gate::new(SERVICE, &settings.auth, settings.rate_limit, access)?;
    // The process serving /metrics records from its first request on.
    ops::metrics::install();
    let (api, _) = routes().split_for_parts();
    let openapi = openapi_document();

    Ok(api
        .merge(ops::metrics::routes())
        .merge(console::assets(console_dir))
        .fallback(|| async { Problem::for_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async {
            Problem::for_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .with_state(state)
        .layer(Extension(Arc::new(openapi)))
        // Outermost last: request id → trace → metrics → gate → problem bodies → timeout →
        // routes.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            Problem::for_status as ops::problem::ForStatus,
            ops::problem::problem_bodies,
        ))
        .layer(middleware::from_fn_with_state(gate, ops::gate::enforce))
        .layer(middleware::from_fn_with_state(
            SERVICE,
            ops::metrics::track_http,
        ))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(&X_REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default();
                    let span = tracing::info_span!(
                        "http_request",
                        method = %request.method(),
                        route = %ops::metrics::route_template(request),
                        request_id = %request_id,
                    );
                    ops::telemetry::set_parent_from_headers(&span, request.headers());
                    span
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                // 503 `not_yet_consistent` is routine; real failures are logged at ERROR
                // with their cause where they happen.
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid)))
}
