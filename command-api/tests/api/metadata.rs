//! Every event carries its metadata: event id, correlation and causation ids, actor,
//! occurred-at (from the injected clock), idempotency key and trace context.

use std::collections::HashMap;

use schemas::EventMetadata;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{NOW_RFC3339, now, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_request_metadata_in_the_schema_contract() {
    let app = spawn_app().await;
    let correlation_id = Uuid::new_v4();
    let causation_id = Uuid::new_v4();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    let response = app
        .post_with(
            "/inventory/SKU-M/stock",
            json!({"quantity": 3}),
            &[
                ("X-Correlation-Id", &correlation_id.to_string()),
                ("X-Causation-Id", &causation_id.to_string()),
                ("X-Actor", "user:42"),
                ("Idempotency-Key", "receipt-77"),
                ("traceparent", traceparent),
            ],
        )
        .await;
    response.assert_accepted(200, 1);
    assert_eq!(
        response.header("x-correlation-id"),
        Some(correlation_id.to_string().as_str())
    );

    let event = &app.events_of("inventory", "SKU-M").await[0];
    let metadata = &event.metadata;
    assert_eq!(metadata["event_id"], event.event_id.to_string());
    assert_eq!(
        response.body["events"][0]["event_id"],
        event.event_id.to_string()
    );
    assert_eq!(metadata["correlation_id"], correlation_id.to_string());
    assert_eq!(metadata["causation_id"], causation_id.to_string());
    assert_eq!(metadata["actor"], "user:42");
    assert_eq!(metadata["occurred_at"], NOW_RFC3339);
    assert_eq!(metadata["idempotency_key"], "receipt-77");
    assert_eq!(metadata["traceparent"], traceparent);

    // The stored map is exactly what the wire contract reads.
    let map: HashMap<String, String> = serde_json::from_value(metadata.clone()).unwrap();
    let parsed = EventMetadata::from_map("inventory", "SKU-M", 1, &map).unwrap();
    assert_eq!(parsed.event_id, event.event_id);
    assert_eq!(parsed.correlation_id, correlation_id);
    assert_eq!(parsed.causation_id, Some(causation_id));
    assert_eq!(parsed.occurred_at, now());
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_when_headers_are_absent_and_event_ids_are_unique() {
    let app = spawn_app().await;
    let first = app.add_stock("SKU-D", 1).await;
    first.assert_accepted(200, 1);
    let generated = first
        .header("x-correlation-id")
        .expect("generated correlation id");
    Uuid::parse_str(generated).expect("a UUID");
    let second = app.add_stock("SKU-D", 1).await;
    assert_ne!(second.header("x-correlation-id"), Some(generated));

    let events = app.events_of("inventory", "SKU-D").await;
    assert_eq!(events[0].metadata["correlation_id"], generated);
    assert_eq!(events[0].metadata["actor"], "anonymous");
    for key in ["causation_id", "idempotency_key", "traceparent"] {
        assert!(
            events[0].metadata.get(key).is_none(),
            "{key}: {}",
            events[0].metadata
        );
    }
    assert_ne!(events[0].event_id, events[1].event_id);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_traceparent_is_ignored_not_rejected() {
    let app = spawn_app().await;
    app.post_with(
        "/inventory/SKU-T/stock",
        json!({"quantity": 1}),
        &[("traceparent", "garbage")],
    )
    .await
    .assert_accepted(200, 1);
    let event = &app.events_of("inventory", "SKU-T").await[0];
    assert!(event.metadata.get("traceparent").is_none());
    app.finish().await;
}
