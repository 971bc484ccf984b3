//! Request heads over their bounds are refused at the edge, over a real TCP connection,
//! with problem documents.

use test_support::http::raw_exchange;

use crate::helpers::spawn_app;

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: localhost\r\n{extra}connection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_431_or_414_problem_json() {
    let app = spawn_app().await;
    let huge = format!("x-padding: {}\r\n", "a".repeat(500 * 1024));
    let response = raw_exchange(app.base(), get("/stock/SKU-1", &huge)).await;
    response.assert_problem(431, "request.headers_too_large");
    let over = format!("x-padding: {}\r\n", "a".repeat(20 * 1024));
    let response = raw_exchange(app.base(), get("/stock/SKU-1", &over)).await;
    response.assert_problem(431, "request.headers_too_large");
    let target = format!("/stock/SKU-1?{}", "pad=1&".repeat(2 * 1024));
    let response = raw_exchange(app.base(), get(&target, "")).await;
    response.assert_problem(414, "request.uri_too_long");

    let fine = raw_exchange(app.base(), get("/health/live", "")).await;
    assert_eq!(fine.status, 200, "{fine:?}");
    app.finish().await;
}
