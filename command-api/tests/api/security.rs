//! Authentication, roles and rate limiting on the command API: every refusal is a problem
//! document, names its cause, and writes nothing; an accepted token's subject is the actor.

use std::num::NonZeroU32;

use command_api::config::Settings;
use ops::rate_limit::RateLimitSettings;
use serde_json::{Value, json};
use test_support::tokens::{self, HS256_SECRET};

use crate::helpers::{TestApp, TestOptions, spawn_app_with};

async fn spawn_secured(
    auth: ops::auth::AuthSettings,
    rate_limit: Option<RateLimitSettings>,
) -> TestApp {
    let mut options = TestOptions::default();
    options.settings = Settings {
        http: command_api::config::HttpSettings {
            auth,
            rate_limit,
            ..options.settings.http
        },
        ..options.settings
    };
    spawn_app_with(options).await
}

/// Request headers of one case, and the answer it must get.
type Headers = Vec<(&'static str, String)>;

fn add_stock() -> Value {
    json!({"quantity": 5})
}

async fn add_stock_with(
    app: &TestApp,
    sku: &str,
    headers: &[(&str, &str)],
) -> crate::helpers::TestResponse {
    app.post_with(&format!("/inventory/{sku}/stock"), add_stock(), headers)
        .await
}

#[tokio::test]
async fn every_bad_credential_is_refused_with_its_reason_and_nothing_is_written() {
    let app = spawn_secured(tokens::hs256_settings(), None).await;
    let expired = tokens::hs256(
        &json!({"sub": "alice", "roles": ["writer"], "exp": tokens::epoch_plus(-120)}),
        HS256_SECRET,
    );
    let forged = tokens::hs256(
        &tokens::claims("alice", &["writer"]),
        "another-secret-of-at-least-thirty-two-bytes",
    );
    let reader = tokens::writer_or("alice", &["reader", "auditor"]);
    let cases: Vec<(Headers, u16, &str)> = vec![
        (vec![], 401, "auth.missing_token"),
        (
            vec![("authorization", "Basic YWxpY2U6c2VjcmV0".to_owned())],
            401,
            "auth.malformed_token",
        ),
        (
            vec![("authorization", "Bearer not-a-jwt".to_owned())],
            401,
            "auth.malformed_token",
        ),
        (
            vec![("authorization", format!("Bearer {forged}"))],
            401,
            "auth.bad_signature",
        ),
        (
            vec![("authorization", format!("Bearer {expired}"))],
            401,
            "auth.token_expired",
        ),
        (
            vec![("authorization", format!("Bearer {reader}"))],
            403,
            "auth.forbidden",
        ),
    ];
    for (headers, status, code) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = add_stock_with(&app, "SEC-1", &headers).await;
        response.assert_problem(status, code);
        if status == 401 {
            let challenge = response.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{code}: {challenge:?}");
        }
    }
    assert_eq!(
        app.event_count().await,
        0,
        "no refused request wrote an event"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_writer_token_is_let_in_and_its_subject_is_the_actor() {
    let app = spawn_secured(tokens::hs256_settings(), None).await;
    let token = tokens::writer_or("user:alice", &["writer"]);
    let bearer = format!("Bearer {token}");

    // X-Actor cannot override the token's subject.
    let response = add_stock_with(
        &app,
        "SEC-2",
        &[("authorization", &bearer), ("x-actor", "user:mallory")],
    )
    .await;

    response.assert_accepted(200, 1);
    let events = app.events_of("inventory", "SEC-2").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata["actor"], "user:alice");
    app.finish().await;
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key_and_issuer_and_audience_are_enforced() {
    let app = spawn_secured(tokens::rs256_settings("https://idp.example", "keel"), None).await;
    let with = |claims: Value| format!("Bearer {}", tokens::rs256(&claims));
    let mut claims = tokens::claims("svc:importer", &["writer"]);
    claims["iss"] = json!("https://idp.example");
    claims["aud"] = json!("keel");
    let mut wrong_audience = claims.clone();
    wrong_audience["aud"] = json!("another-service");
    // The classic confusion: an HS256 token whose "secret" is the RSA public key.
    let confused = format!(
        "Bearer {}",
        tokens::hs256(&claims, tokens::RS256_PUBLIC_KEY_PEM)
    );

    add_stock_with(&app, "SEC-3", &[("authorization", &with(wrong_audience))])
        .await
        .assert_problem(401, "auth.invalid_claims");
    add_stock_with(&app, "SEC-3", &[("authorization", &confused)])
        .await
        .assert_problem(401, "auth.bad_signature");
    assert_eq!(app.event_count().await, 0);

    add_stock_with(&app, "SEC-3", &[("authorization", &with(claims))])
        .await
        .assert_accepted(200, 1);
    assert_eq!(
        app.events_of("inventory", "SEC-3").await[0].metadata["actor"],
        "svc:importer"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_client_over_its_quota_gets_429_with_retry_after_and_others_are_served() {
    let app = spawn_secured(
        tokens::hs256_settings(),
        Some(RateLimitSettings {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::new(2).expect("non-zero"),
        }),
    )
    .await;
    let alice = format!("Bearer {}", tokens::writer_or("alice", &["writer"]));
    let bob = format!("Bearer {}", tokens::writer_or("bob", &["writer"]));

    for version in 1..=2 {
        add_stock_with(&app, "SEC-4", &[("authorization", &alice)])
            .await
            .assert_accepted(200, version);
    }
    let limited = add_stock_with(&app, "SEC-4", &[("authorization", &alice)]).await;
    limited.assert_problem(429, "rate_limit.exceeded");
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(
        app.event_count().await,
        2,
        "the limited request wrote nothing"
    );

    add_stock_with(&app, "SEC-5", &[("authorization", &bob)])
        .await
        .assert_accepted(200, 1);
    app.finish().await;
}

#[tokio::test]
async fn probes_the_openapi_document_and_metrics_need_no_token() {
    let app = spawn_secured(tokens::hs256_settings(), None).await;
    for path in ["/health/live", "/health/ready", "/openapi.json", "/metrics"] {
        let response = app.get(path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text);
    }
    // The refusal of the request above and this scrape are both counted.
    add_stock_with(&app, "SEC-6", &[])
        .await
        .assert_problem(401, "auth.missing_token");
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains(
            r#"keel_http_auth_refusals_total{service="command-api",code="auth.missing_token"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"keel_http_requests_total{service="command-api",method="GET",route="/health/live",status="200"}"#),
        "{metrics}"
    );
    app.finish().await;
}
