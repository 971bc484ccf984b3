//! A message that cannot be decoded is dead-lettered at once (table and topic), without
//! the retry budget, and parks its aggregate; every other aggregate keeps flowing past it.

use std::time::Duration;

use projections::Projection;
use projections::config::RetryPolicy;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;
use schemas::AggregateKind;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, header, producer, receive, row, subscribe_from_start};

const POISON: &[u8] = b"not avro";

#[derive(Debug, sqlx::FromRow)]
struct DeadLetterRow {
    id: i64,
    projection: String,
    topic: String,
    kafka_partition: i32,
    kafka_offset: i64,
    message_key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: serde_json::Value,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    sequence: Option<i64>,
    reason: String,
    error: String,
    attempts: i32,
    published: bool,
}

async fn dead_letters(harness: &Harness) -> Vec<DeadLetterRow> {
    sqlx::query_as(
        "SELECT id, projection, topic, kafka_partition, kafka_offset, message_key, payload, \
                headers, aggregate_type, aggregate_id, sequence, reason, error, attempts, \
                published_at IS NOT NULL AS published \
         FROM read_model.dead_letters ORDER BY id",
    )
    .fetch_all(&harness.read_model)
    .await
    .expect("read dead letters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_and_parks_only_its_aggregate() {
    // One partition: the poison sits between other orders' events in the same log.
    let harness = Harness::start(1).await;
    let order_topic = harness.topic(AggregateKind::Order);
    let customer_id = Uuid::new_v4();

    let order_a = harness.create_order(customer_id).await;
    harness.add_line(order_a, "SKU-A", 1, 100).await;
    let poisoned = harness.create_order(customer_id).await;
    harness.add_line(poisoned, "SKU-P", 1, 300).await;
    harness.wait_for_empty_outbox().await;

    let producer = producer(&harness.kafka.brokers);
    let key = poisoned.to_string();
    let delivery = producer
        .send(
            FutureRecord::to(&order_topic).key(&key).payload(POISON),
            Duration::from_secs(15),
        )
        .await
        .map_err(|(error, _)| error)
        .expect("poison message delivered");
    let (poison_partition, poison_offset) = (delivery.partition, delivery.offset);

    let order_b = harness.create_order(customer_id).await;
    harness.add_line(order_b, "SKU-B", 2, 200).await;
    harness.place_order(order_b).await;
    harness.place_order(order_a).await;
    // A valid event of the poisoned order, after the poison.
    harness.add_line(poisoned, "SKU-Q", 1, 400).await;
    harness.wait_for_empty_outbox().await;
    let counts = harness.event_counts().await;
    assert_eq!(counts.order, 9, "events written");

    let mut settings = harness.projector_settings(100);
    // A budget that would show if it were spent on a message that can never decode.
    settings.retry = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_secs(5),
        max_backoff: Duration::from_secs(5),
    };
    let mut projector = harness.start_projector(Projection::Orders, &settings).await;
    let dlq = subscribe_from_start(&harness.kafka.brokers, &projector.dead_letter_topic);
    projector
        .wait_for(
            "8 events applied and 2 messages dead-lettered (the poison and the parked event)",
            |p| p.applied >= 8 && p.dead_lettered >= 2,
        )
        .await;

    // The table: the poison with its raw message, then the parked event behind it.
    let letters = dead_letters(&harness).await;
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let poison = &letters[0];
    assert_eq!(poison.reason, "poison", "{poison:#?}");
    assert_eq!(poison.projection, "orders");
    assert_eq!(poison.topic, order_topic);
    assert_eq!(
        (poison.kafka_partition, poison.kafka_offset),
        (poison_partition, poison_offset)
    );
    assert_eq!(poison.message_key.as_deref(), Some(key.as_bytes()));
    assert_eq!(poison.payload.as_deref(), Some(POISON));
    assert_eq!(poison.headers, json!({}));
    assert_eq!(poison.aggregate_type.as_deref(), Some("order"));
    assert_eq!(poison.aggregate_id.as_deref(), Some(key.as_str()));
    assert_eq!(poison.sequence, None);
    assert_eq!(poison.attempts, 1, "dead-lettered without retries");
    assert!(
        poison.error.starts_with("decode failed:") && poison.error.contains("wire format"),
        "error text: {}",
        poison.error
    );

    let parked = &letters[1];
    assert_eq!(parked.reason, "parked", "{parked:#?}");
    assert_eq!(parked.topic, order_topic);
    assert_eq!(parked.kafka_partition, poison_partition);
    assert!(parked.kafka_offset > poison_offset, "{parked:#?}");
    assert_eq!(parked.message_key.as_deref(), Some(key.as_bytes()));
    assert_eq!(
        parked.payload.as_deref().and_then(|p| p.first()),
        Some(&0),
        "the parked message is kept as received (Confluent frame)"
    );
    assert_eq!(parked.headers["sequence"], "3", "{parked:#?}");
    assert_eq!(parked.aggregate_type.as_deref(), Some("order"));
    assert_eq!(parked.aggregate_id.as_deref(), Some(key.as_str()));
    assert_eq!(parked.sequence, Some(3));
    assert_eq!(parked.attempts, 0);
    assert!(
        parked
            .error
            .contains(&format!("parked behind dead letter {}", poison.id)),
        "error text: {}",
        parked.error
    );

    let (last_sequence, parked_by): (i64, Option<i64>) = sqlx::query_as(
        "SELECT last_sequence, parked_by FROM read_model.checkpoints \
         WHERE projection = 'orders' AND aggregate_type = 'order' AND aggregate_id = $1",
    )
    .bind(&key)
    .fetch_one(&harness.read_model)
    .await
    .expect("checkpoint of the poisoned order");
    assert_eq!((last_sequence, parked_by), (2, Some(poison.id)));

    // Every other order flowed past the poison; the poisoned one stopped before it.
    let pool = &harness.read_model;
    for (order_id, status, version, total) in [
        (order_a, "placed", 3, 100),
        (order_b, "placed", 3, 400),
        (poisoned, "draft", 2, 300),
    ] {
        let view = row(pool, "order_view", "order_id", order_id).await;
        assert_eq!(
            (
                &view["status"],
                &view["version"],
                &view["line_count"],
                &view["total_minor"]
            ),
            (&json!(status), &json!(version), &json!(1), &json!(total)),
            "order {order_id}: {view}"
        );
    }

    // The topic: both letters, with where they came from.
    let messages = receive(&dlq, 2, "dead-letter topic").await;
    let source_offsets: Vec<Option<String>> = messages
        .iter()
        .map(|m| header(m, "dlq.source_offset"))
        .collect();
    assert_eq!(
        source_offsets,
        [
            Some(poison_offset.to_string()),
            Some(parked.kafka_offset.to_string())
        ]
    );
    let copy = &messages[0];
    assert_eq!(copy.key(), Some(key.as_bytes()));
    assert_eq!(copy.payload(), Some(POISON));
    for (name, value) in [
        ("dlq.projection", "orders"),
        ("dlq.reason", "poison"),
        ("dlq.attempts", "1"),
        ("dlq.source_topic", order_topic.as_str()),
        ("dlq.source_partition", &poison_partition.to_string()),
    ] {
        assert_eq!(header(copy, name).as_deref(), Some(value), "header {name}");
    }
    assert_eq!(header(copy, "dlq.error"), Some(poison.error.clone()));
    assert_eq!(
        header(&messages[1], "dlq.reason").as_deref(),
        Some("parked")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dead_letters(&harness).await.iter().any(|l| !l.published) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters delivered to the topic are not marked published"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let progress = projector.stop().await;
    assert_eq!(
        (
            progress.applied,
            progress.dead_lettered,
            progress.duplicates,
            progress.gaps
        ),
        (8, 2, 0, 0),
        "{progress:?}"
    );
    assert_eq!(
        progress.position(&order_topic, poison_partition),
        Some(parked.kafka_offset + 1),
        "the projector moved past every message of the order topic"
    );
    harness.finish().await;
}
