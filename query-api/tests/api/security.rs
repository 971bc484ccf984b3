//! Authentication, roles and rate limiting on the query API: `reader` reads the read
//! models, `auditor` the audit trail and the projections' status, and nobody reads
//! without a valid token.

use std::num::NonZeroU32;

use ops::rate_limit::RateLimitSettings;
use serde_json::json;
use test_support::tokens::{self, HS256_SECRET};

use crate::helpers::{TestApp, TestOptions, spawn_app_with};

async fn spawn_secured(rate_limit: Option<RateLimitSettings>) -> TestApp {
    let mut options = TestOptions::default();
    options.settings.http.auth = tokens::hs256_settings();
    options.settings.http.rate_limit = rate_limit;
    spawn_app_with(options).await
}

fn bearer(subject: &str, roles: &[&str]) -> String {
    format!("Bearer {}", tokens::writer_or(subject, roles))
}

#[tokio::test]
async fn reads_need_a_valid_token_with_the_route_role() {
    let app = spawn_secured(None).await;
    app.insert_stock("SEC-Q1", 7, 2, 1, 3).await;
    let reader = bearer("dashboard", &["reader"]);
    let auditor = bearer("compliance", &["auditor"]);
    let expired = format!(
        "Bearer {}",
        tokens::hs256(
            &json!({"sub": "dashboard", "roles": ["reader"], "exp": tokens::epoch_plus(-60)}),
            HS256_SECRET,
        )
    );
    let forged = format!(
        "Bearer {}",
        tokens::hs256(
            &tokens::claims("dashboard", &["reader"]),
            "a-forger-secret-that-is-also-32-bytes-long",
        )
    );

    let ok = app
        .get_with("/stock/SEC-Q1", &[("authorization", &reader)])
        .await;
    assert_eq!(ok.assert_ok()["on_hand"], 7);

    let refusals: [(&str, Option<&str>, u16, &str); 6] = [
        ("/stock/SEC-Q1", None, 401, "auth.missing_token"),
        (
            "/stock/SEC-Q1",
            Some("Bearer a.b"),
            401,
            "auth.malformed_token",
        ),
        ("/stock/SEC-Q1", Some(&forged), 401, "auth.bad_signature"),
        ("/stock/SEC-Q1", Some(&expired), 401, "auth.token_expired"),
        ("/stock/SEC-Q1", Some(&auditor), 403, "auth.forbidden"),
        ("/projections", Some(&reader), 403, "auth.forbidden"),
    ];
    for (path, authorization, status, code) in refusals {
        let headers: Vec<(&str, &str)> = authorization
            .map(|value| vec![("authorization", value)])
            .unwrap_or_default();
        app.get_with(path, &headers)
            .await
            .assert_problem(status, code);
    }
    let audit = app
        .get_with("/audit/events", &[("authorization", &reader)])
        .await;
    audit.assert_problem(403, "auth.forbidden");

    let status = app
        .get_with("/projections", &[("authorization", &auditor)])
        .await;
    assert_eq!(status.status, 200, "{}", status.text);
    app.finish().await;
}

#[tokio::test]
async fn a_reader_over_its_quota_gets_429_with_retry_after() {
    let app = spawn_secured(Some(RateLimitSettings {
        per_second: NonZeroU32::MIN,
        burst: NonZeroU32::new(3).expect("non-zero"),
    }))
    .await;
    app.insert_stock("SEC-Q2", 1, 0, 1, 1).await;
    let reader = bearer("dashboard", &["reader"]);
    for _ in 0..3 {
        app.get_with("/stock/SEC-Q2", &[("authorization", &reader)])
            .await
            .assert_ok();
    }
    let limited = app
        .get_with("/stock/SEC-Q2", &[("authorization", &reader)])
        .await;
    limited.assert_problem(429, "rate_limit.exceeded");
    assert!(
        limited
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|seconds| seconds >= 1),
        "{:?}",
        limited.headers
    );
    // Another client keeps its own quota.
    app.get_with(
        "/stock/SEC-Q2",
        &[("authorization", &bearer("other", &["reader"]))],
    )
    .await
    .assert_ok();
    // Probes are never limited nor authenticated.
    for _ in 0..5 {
        assert_eq!(app.get("/health/live").await.status, 200);
    }
    app.finish().await;
}
