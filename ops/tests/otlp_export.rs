//! With `KEEL_OTLP_ENDPOINT` set, spans leave the process over OTLP/HTTP: a receiver on
//! loopback (standing in for an OpenTelemetry collector, which cannot run here) gets a
//! protobuf export request holding the service name and the span, on shutdown at the latest.
//! Its own test binary, because it installs the process-wide subscriber.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use ops::telemetry::{LogFormat, TelemetrySettings};

#[derive(Debug, Default)]
struct Received {
    requests: Vec<(String, Vec<u8>)>,
}

async fn collect(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    received
        .lock()
        .expect("lock")
        .requests
        .push((content_type, body.to_vec()));
    ""
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn spans_are_exported_to_the_configured_otlp_endpoint() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let received = Arc::new(Mutex::new(Received::default()));
    let addr: SocketAddr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = Router::new()
            .route("/v1/traces", post(collect))
            .with_state(Arc::clone(&received));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });

    let settings =
        TelemetrySettings::from_lookup("keel-otlp-test", LogFormat::Pretty, &|name| match name {
            "KEEL_OTLP_ENDPOINT" => Some(format!("http://{addr}/v1/traces")),
            "RUST_LOG" => Some("info".into()),
            _ => None,
        })
        .expect("settings");
    let telemetry = ops::telemetry::init(&settings).expect("telemetry");
    {
        let span = tracing::info_span!("otlp_export_probe", order_id = "o-1");
        let _entered = span.enter();
        tracing::info!("inside the probe span");
        assert!(
            ops::telemetry::current_traceparent().is_some(),
            "an exported span has a trace context to hand on"
        );
    }
    // Dropping the guard flushes the batch.
    drop(telemetry);

    runtime.block_on(async {
        for _ in 0..50 {
            if !received.lock().expect("lock").requests.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let received = received.lock().expect("lock");
    let (content_type, body) = received
        .requests
        .first()
        .expect("the exporter posted to the endpoint");
    assert_eq!(content_type, "application/x-protobuf");
    assert!(
        contains(body, "keel-otlp-test"),
        "service.name in the export"
    );
    assert!(
        contains(body, "otlp_export_probe"),
        "the span in the export"
    );
}
