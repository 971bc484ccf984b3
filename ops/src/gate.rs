//! The HTTP middleware that decides whether a request gets in: route access rule, bearer
//! token, rate limit — and records why it did not.
//!
//! Order of checks: public routes pass untouched; otherwise the token is verified first
//! (cheap, and it names the client), the client's quota is taken next (so failed guesses
//! are throttled like any request), and only then is a missing or insufficient token
//! refused. Refusals never reach a handler, so they change nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{Access, AuthError, AuthSettings, Verifier};
use crate::env::ConfigError;
use crate::problem::Problem;
use crate::rate_limit::{ClientRateLimiter, RateLimitSettings};

/// Which [`Access`] a request needs, from its method and path.
pub type AccessRule = fn(&Method, &str) -> Access;

/// Authentication and rate limiting for one service.
#[derive(Debug)]
pub struct Gate {
    service: &'static str,
    verifier: Option<Verifier>,
    limiter: Option<ClientRateLimiter>,
    access: AccessRule,
}

impl Gate {
    /// A gate for `service` (the label of its metrics).
    ///
    /// # Errors
    /// [`ConfigError`] if the JWT key cannot be used.
    pub fn new(
        service: &'static str,
        auth: &AuthSettings,
        rate_limit: Option<RateLimitSettings>,
        access: AccessRule,
    ) -> Result<Arc<Self>, ConfigError> {
        let verifier = match auth {
            AuthSettings::Disabled => {
                tracing::warn!(
                    service,
                    "authentication is DISABLED (KEEL_AUTH=disabled): every caller is let in \
                     and names itself with X-Actor; never run it like this in production"
                );
                None
            }
            AuthSettings::Jwt(settings) => Some(Verifier::new(settings)?),
        };
        Ok(Arc::new(Self {
            service,
            verifier,
            limiter: rate_limit.map(ClientRateLimiter::new),
            access,
        }))
    }
}

/// The middleware: `axum::middleware::from_fn_with_state(gate, ops::gate::enforce)`.
/// On success the request carries the [`Principal`](crate::auth::Principal) in its
/// extensions (when authentication is enabled).
pub async fn enforce(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let access = (gate.access)(request.method(), request.uri().path());
    if access == Access::Public {
        return next.run(request).await;
    }
    let verified = gate
        .verifier
        .as_ref()
        .map(|verifier| bearer_token(request.headers()).and_then(|token| verifier.verify(token)));
    if let Some(limiter) = &gate.limiter {
        let client = match &verified {
            Some(Ok(principal)) => format!("sub:{}", principal.subject),
            _ => request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(
                    || "ip:unknown".to_owned(),
                    |info| format!("ip:{}", info.0.ip()),
                ),
        };
        if let Err(wait) = limiter.check(&client) {
            metrics::counter!("keel_http_rate_limited_total", "service" => gate.service)
                .increment(1);
            tracing::info!(service = gate.service, %client, "rate limit exceeded");
            return too_many_requests(wait).into_response();
        }
    }
    let refusal = match verified {
        None => None,
        Some(Err(error)) => Some(error),
        Some(Ok(principal)) => match access {
            Access::Requires(role) if !principal.has(role) => {
                Some(AuthError::Forbidden { needed: role })
            }
            _ => {
                request.extensions_mut().insert(principal);
                None
            }
        },
    };
    match refusal {
        None => next.run(request).await,
        Some(error) => {
            metrics::counter!(
                "keel_http_auth_refusals_total",
                "service" => gate.service,
                "code" => error.code(),
            )
            .increment(1);
            tracing::info!(service = gate.service, code = error.code(), %error, "request refused");
            refusal_response(&error)
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::MissingToken);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("the Authorization header is not ASCII".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::Malformed(
            "expected Authorization: Bearer <token>".into(),
        )),
    }
}

fn refusal_response(error: &AuthError) -> Response {
    if let AuthError::Forbidden { .. } = error {
        return Problem::new(
            StatusCode::FORBIDDEN,
            error.code(),
            "Forbidden",
            error.to_string(),
        )
        .into_response();
    }
    // RFC 6750 §3: the challenge, with `invalid_token` when a token was sent.
    let challenge = match error {
        AuthError::MissingToken => r#"Bearer realm="keel""#.to_owned(),
        _ => format!(
            r#"Bearer realm="keel", error="invalid_token", error_description="{}""#,
            error.code()
        ),
    };
    let mut problem = Problem::new(
        StatusCode::UNAUTHORIZED,
        error.code(),
        "Unauthorized",
        error.to_string(),
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        problem = problem.with_header(header::WWW_AUTHENTICATE, value);
    }
    problem.into_response()
}

fn too_many_requests(wait: Duration) -> Problem {
    // Retry-After is in whole seconds; round up so a client that obeys it is let in.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit.exceeded",
        "Too many requests",
        format!("this client's request quota is used up; retry in {seconds} s"),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
}
