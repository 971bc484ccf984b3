//! Request heads over their bounds are refused at the edge, over a real TCP connection,
//! with problem documents, and nothing is written.

use serde_json::json;
use test_support::http::raw_exchange;
use uuid::Uuid;

use crate::helpers::spawn_app;

/// A create-order request with `extra` header lines, as bytes on the wire.
fn create_order(target: &str, extra: &str) -> Vec<u8> {
    let body = json!({"customer_id": Uuid::new_v4(), "currency": "EUR"}).to_string();
    format!(
        "POST {target} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_bound_are_431_problem_json_and_write_nothing() {
    let app = spawn_app().await;
    // Far beyond the head buffer: hyper refuses it, the edge turns the answer into a problem.
    let huge = format!("x-padding: {}\r\n", "a".repeat(500 * 1024));
    let response = raw_exchange(app.base(), create_order("/orders", &huge)).await;
    response.assert_problem(431, "request.headers_too_large");
    // Over the 16 KiB header budget but within the buffer: refused before any route runs.
    let over = format!("x-padding: {}\r\n", "a".repeat(20 * 1024));
    let response = raw_exchange(app.base(), create_order("/orders", &over)).await;
    response.assert_problem(431, "request.headers_too_large");
    // Not HTTP at all.
    let response = raw_exchange(app.base(), b"NOT HTTP\r\n\r\n".to_vec()).await;
    response.assert_problem(400, "request.malformed");
    assert_eq!(app.event_count().await, 0, "nothing was written");

    // The same request within bounds goes through.
    let fine = raw_exchange(app.base(), create_order("/orders", "")).await;
    assert_ne!(fine.status, 431, "{fine:?}");
    assert_ne!(fine.status, 414, "{fine:?}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_uri_is_414_problem_json_and_writes_nothing() {
    let app = spawn_app().await;
    let target = format!("/orders?{}", "pad=1&".repeat(2 * 1024));
    let response = raw_exchange(app.base(), create_order(&target, "")).await;
    response.assert_problem(414, "request.uri_too_long");
    assert_eq!(app.event_count().await, 0, "nothing was written");
    app.finish().await;
}
