//! Every process of the running platform (`cargo xtask up`) exports its metrics: after a
//! command has travelled command API → outbox relay → Kafka → projector → query API, each
//! process's `/metrics` shows the series that describe its part of that trip.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

/// Where `cargo xtask up` runs each process (see `xtask/src/services.rs`).
const COMMAND_API: &str = "http://127.0.0.1:8080";
const QUERY_API: &str = "http://127.0.0.1:8090";
const OUTBOX_RELAY_METRICS: &str = "http://127.0.0.1:9101";
const SAGA_METRICS: &str = "http://127.0.0.1:9102";
const PROJECTOR_METRICS: &str = "http://127.0.0.1:9103";

/// Longest wait for a series to appear (the relay and the saga refresh gauges every few
/// seconds, librdkafka reports the projector's lag every 5 s).
const APPEAR_TIMEOUT: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client")
}

/// Scrapes `base/metrics` until every series in `expected` (a prefix of a sample line) is
/// there, or panics naming the process and the missing ones.
async fn wait_for_series(process: &str, base: &str, expected: &[&str]) {
    let client = client();
    let started = Instant::now();
    loop {
        let scraped = match client.get(format!("{base}/metrics")).send().await {
            Ok(response) => {
                assert_eq!(response.status(), 200, "{process} /metrics");
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                assert!(content_type.starts_with("text/plain"), "{content_type}");
                response.text().await.unwrap_or_default()
            }
            Err(error) => panic!(
                "{process} does not serve {base}/metrics (is the stack up? `cargo xtask up`): {error}"
            ),
        };
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|series| !scraped.lines().any(|line| line.starts_with(**series)))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < APPEAR_TIMEOUT,
            "{process}: series {missing:?} missing from /metrics after {APPEAR_TIMEOUT:?}:\n{scraped}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn each_process_exports_the_metrics_of_its_part_after_a_command_travels_end_to_end() {
    let client = client();
    let sku = format!("METRICS-{}", Uuid::new_v4().simple());
    let response = client
        .post(format!("{COMMAND_API}/inventory/{sku}/stock"))
        .json(&json!({"quantity": 3}))
        .send()
        .await
        .expect("the command API answers (is the stack up? `cargo xtask up`)");
    assert_eq!(response.status(), 200);
    let version = response.json::<Value>().await.expect("JSON")["version"]
        .as_u64()
        .expect("version");

    // Read-your-writes: the event reached the stock read model through Kafka.
    let started = Instant::now();
    loop {
        let read = client
            .get(format!("{QUERY_API}/stock/{sku}?min_version={version}"))
            .send()
            .await
            .expect("the query API answers");
        if read.status() == 200 {
            assert_eq!(read.json::<Value>().await.expect("JSON")["on_hand"], 3);
            break;
        }
        assert!(
            started.elapsed() < APPEAR_TIMEOUT,
            "stock {sku} never reached the query API: {}",
            read.status()
        );
    }

    wait_for_series(
        "command-api",
        COMMAND_API,
        &[
            r#"keel_http_requests_total{service="command-api",method="POST",route="/inventory/{sku}/stock",status="200"}"#,
            r#"keel_http_request_duration_seconds_bucket{service="command-api""#,
            r#"keel_commands_total{aggregate="inventory",command="AddStock",outcome="accepted"}"#,
            r#"keel_command_duration_seconds_bucket{aggregate="inventory",command="AddStock""#,
            r#"keel_concurrency_conflicts_total{aggregate="inventory"}"#,
        ],
    )
    .await;
    wait_for_series(
        "outbox-relay",
        OUTBOX_RELAY_METRICS,
        &[
            r#"keel_relay_events_published_total{aggregate="inventory"}"#,
            "keel_relay_publish_lag_seconds_bucket",
            "keel_outbox_backlog_events",
            "keel_outbox_oldest_unpublished_age_seconds",
        ],
    )
    .await;
    wait_for_series(
        "projector",
        PROJECTOR_METRICS,
        &[
            r#"keel_projector_events_total{projection="stock",outcome="applied"}"#,
            r#"keel_projector_event_age_seconds_bucket{projection="stock""#,
            r#"keel_projector_lag_messages{projection="stock""#,
            r#"keel_projector_dead_letters_total{projection="stock",reason="poison"}"#,
        ],
    )
    .await;
    wait_for_series(
        "saga",
        SAGA_METRICS,
        &[
            r#"keel_saga_flows{status="reserving"}"#,
            r#"keel_saga_flows{status="completed"}"#,
        ],
    )
    .await;
    wait_for_series(
        "query-api",
        QUERY_API,
        &[r#"keel_http_requests_total{service="query-api",method="GET",route="/stock/{sku}""#],
    )
    .await;
}
