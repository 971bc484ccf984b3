//! What a Confluent consumer sees: key, headers, and a value decoded through the registry
//! by the schema id in its frame.

use std::time::Duration;

use aggregates::order::OrderEvent;
use apache_avro::Schema;
use schemas::{catalog, decode_event_with_writer_schema, wire};
use serde_json::{Value, json};
use test_support::Stack;

use crate::helpers::spawn_app;
use crate::support::{
    RunningRelay, receive_until, relay_config, stored_event_ids, subscribe, test_prefix,
    wait_for_empty_outbox,
};

/// The writer schema of `schema_id`, fetched the way any Confluent client does.
async fn writer_schema(registry_url: &str, schema_id: u32) -> Schema {
    let body: Value = reqwest::get(format!("{registry_url}/schemas/ids/{schema_id}"))
        .await
        .expect("registry answers")
        .error_for_status()
        .expect("schema id is known to the registry")
        .json()
        .await
        .expect("registry JSON");
    Schema::parse_str(body["schema"].as_str().expect("schema text")).expect("schema parses")
}

#[tokio::test]
async fn published_events_decode_through_the_registry_with_every_header() {
    let stack = Stack::from_env();
    let app = spawn_app().await;
    let prefix = test_prefix();
    let relay = RunningRelay::start(relay_config(&app, &stack.kafka_brokers, &prefix)).await;
    let consumer = subscribe(&stack.kafka_brokers, &prefix);

    let correlation_id = uuid::Uuid::new_v4().to_string();
    let causation_id = uuid::Uuid::new_v4().to_string();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let created = app
        .post_with(
            "/orders",
            json!({"customer_id": uuid::Uuid::new_v4(), "currency": "EUR"}),
            &[
                ("x-correlation-id", &correlation_id),
                ("x-causation-id", &causation_id),
                ("traceparent", traceparent),
                ("x-actor", "clerk-7"),
            ],
        )
        .await;
    created.assert_accepted(201, 1);
    let order_id = created.body["aggregate_id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.post(
        &format!("/orders/{order_id}/lines"),
        json!({"sku": "SKU-1", "quantity": 3, "unit_price": {"amount_minor": 1250, "currency": "EUR"}}),
    )
    .await
    .assert_accepted(201, 2);

    let messages = receive_until(&consumer, Duration::from_secs(30), |m| m.len() >= 2).await;
    wait_for_empty_outbox(&app, Duration::from_secs(10)).await;
    let stored = stored_event_ids(&app).await;

    assert_eq!(messages.len(), 2, "exactly the two events: {messages:?}");
    for (message, sequence) in messages.iter().zip(1_i64..) {
        assert_eq!(message.topic, format!("{prefix}order"));
        assert_eq!(message.key, order_id, "key is the aggregate id");
        assert_eq!(message.header("aggregate_type"), "order");
        assert_eq!(message.header("aggregate_id"), order_id);
        assert_eq!(message.sequence(), sequence);
        assert_eq!(message.header("schema_version"), schemas::SCHEMA_VERSION);
        assert_eq!(
            message.header("event_id"),
            stored[&(order_id.clone(), sequence)],
            "event id header is the stored event id"
        );

        let (schema_id, datum) = wire::decode_frame(&message.payload).expect("Confluent frame");
        let writer = writer_schema(&stack.registry_url, schema_id).await;
        let full_name = writer.name().expect("named record").fullname(None);
        let reader = catalog()
            .by_full_name(&full_name)
            .unwrap_or_else(|| panic!("{full_name} is in the schema catalog"));
        assert_eq!(reader.event_type(), message.header("event_type"));
        let (metadata, event) =
            decode_event_with_writer_schema::<OrderEvent>(&writer, reader, datum)
                .expect("value decodes with the registry's writer schema");
        assert_eq!(metadata.event_id.to_string(), message.header("event_id"));
        assert_eq!(
            metadata.sequence,
            u64::try_from(sequence).expect("positive")
        );
        assert_eq!(
            metadata.correlation_id.to_string(),
            message.header("correlation_id")
        );
        if sequence == 1 {
            assert_eq!(metadata.actor, "clerk-7");
            assert_eq!(metadata.correlation_id.to_string(), correlation_id);
        }
        match (sequence, &event) {
            (1, OrderEvent::OrderCreated { .. }) | (2, OrderEvent::OrderLineAdded { .. }) => {}
            other => panic!("unexpected event at sequence {}: {:?}", other.0, other.1),
        }
    }
    let first = &messages[0];
    assert_eq!(first.header("event_type"), "OrderCreated");
    assert_eq!(first.header("correlation_id"), correlation_id);
    assert_eq!(first.header("causation_id"), causation_id);
    assert_eq!(first.header("traceparent"), traceparent);

    relay.stop().await;
    app.finish().await;
}
