//! Request heads over their bounds are refused at the edge, over a real TCP connection,
//! with problem documents.

use serde_json::Value;
use test_support::http::{RawResponse, raw_exchange};

use crate::helpers::spawn_app;

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: localhost\r\n{extra}connection: close\r\n\r\n")
        .into_bytes()
}

fn assert_problem(response: &RawResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_str(&response.body).expect("a JSON body");
    assert_eq!(problem["status"], status, "{problem}");
    assert_eq!(problem["code"], code, "{problem}");
    for member in ["type", "title", "detail"] {
        assert!(problem[member].is_string(), "{member}: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_431_or_414_problem_json() {
    let app = spawn_app().await;
    let huge = format!("x-padding: {}\r\n", "a".repeat(500 * 1024));
    let response = raw_exchange(app.base(), get("/stock/SKU-1", &huge)).await;
    assert_problem(&response, 431, "request.headers_too_large");
    let over = format!("x-padding: {}\r\n", "a".repeat(20 * 1024));
    let response = raw_exchange(app.base(), get("/stock/SKU-1", &over)).await;
    assert_problem(&response, 431, "request.headers_too_large");
    let target = format!("/stock/SKU-1?{}", "pad=1&".repeat(2 * 1024));
    let response = raw_exchange(app.base(), get(&target, "")).await;
    assert_problem(&response, 414, "request.uri_too_long");

    let fine = raw_exchange(app.base(), get("/health/live", "")).await;
    assert_eq!(fine.status, 200, "{fine:?}");
    app.finish().await;
}
