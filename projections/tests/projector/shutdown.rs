//! Stopping a projector commits the offsets of exactly what it applied, so a restart in
//! the same consumer group continues where it stopped, applying nothing twice.

use std::collections::BTreeMap;
use std::time::Duration;

use projections::Projection;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schemas::AggregateKind;
use serde_json::json;
use uuid::Uuid;

use crate::support::{
    Harness, RunningProjector, assert_checkpoints_match_event_store, row, write_sample,
};

const PARTITIONS: i32 = 2;

/// What consumer group `group_id` has committed on every partition of the event topics.
async fn committed_offsets(harness: &Harness, group_id: &str) -> BTreeMap<(String, i32), i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &harness.kafka.brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut partitions = TopicPartitionList::new();
    for kind in AggregateKind::ALL {
        for partition in 0..PARTITIONS {
            partitions.add_partition(&harness.topic(kind), partition);
        }
    }
    let committed = tokio::task::spawn_blocking(move || {
        consumer.committed_offsets(partitions, Duration::from_secs(15))
    })
    .await
    .expect("offset reader task")
    .expect("committed offsets of the projector's group");
    committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => {
                Some(((element.topic().to_owned(), element.partition()), offset))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_was_applied_and_a_restart_applies_nothing_twice() {
    let harness = Harness::start(PARTITIONS).await;
    write_sample(&harness).await;
    let first_counts = harness.event_counts().await;
    let first_events = first_counts.read_by(Projection::Orders);

    let settings = harness.projector_settings(10);
    // No periodic commits during the test: what is committed is what stopping committed.
    let mut kafka = harness.kafka.clone();
    kafka.auto_commit_interval = Duration::from_secs(600);
    let start = || {
        RunningProjector::start(
            Projection::Orders,
            harness.read_model.clone(),
            &kafka,
            &settings,
        )
    };
    let mut projector = start().await;
    let group_id = projector.group_id.clone();
    projector.wait_for_applied(first_events).await;
    let first = projector.stop().await;
    assert_eq!(
        (first.applied, first.duplicates, first.gaps),
        (first_events, 0, 0),
        "{first:?}"
    );
    let consumed: i64 = first.positions.values().sum();
    assert_eq!(
        u64::try_from(consumed).expect("positive"),
        first_events,
        "positions cover every message from offset 0: {first:?}"
    );
    assert_eq!(
        committed_offsets(&harness, &group_id).await,
        first.positions,
        "committed offsets after shutdown"
    );

    // More events while it is down, then a restart in the same group.
    let customer_id = Uuid::new_v4();
    let order_id = harness.create_order(customer_id).await;
    harness.add_line(order_id, "SKU-C", 4, 500).await;
    harness.place_order(order_id).await;
    harness.add_stock("SKU-C", 4).await;
    harness.reserve_stock("SKU-C", order_id, 4).await;
    let payment_id = harness.authorize_payment(order_id, 2000).await;
    let new_events = harness.event_counts().await.read_by(Projection::Orders) - first_events;
    assert_eq!(new_events, 6);

    let mut projector = start().await;
    assert_eq!(projector.group_id, group_id);
    projector.wait_for_applied(new_events).await;
    // Give a wrongly rewound consumer time to show its redeliveries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = projector.stop().await;
    assert_eq!(
        (
            second.applied,
            second.duplicates,
            second.gaps,
            second.dead_lettered
        ),
        (new_events, 0, 0, 0),
        "the restart resumed at the committed offsets: {second:?}"
    );
    let mut expected_positions = first.positions.clone();
    expected_positions.extend(second.positions.clone());
    let consumed: i64 = expected_positions.values().sum();
    assert_eq!(
        u64::try_from(consumed).expect("positive"),
        first_events + new_events,
        "{second:?}"
    );
    assert_eq!(
        committed_offsets(&harness, &group_id).await,
        expected_positions,
        "committed offsets after the second shutdown"
    );

    assert_checkpoints_match_event_store(&harness, Projection::Orders).await;
    let pool = &harness.read_model;
    let view = row(pool, "order_view", "order_id", order_id).await;
    assert_eq!(
        (&view["status"], &view["version"], &view["total_minor"]),
        (&json!("placed"), &json!(3), &json!(2000)),
        "{view}"
    );
    let reservation = row(pool, "order_reservations", "order_id", order_id).await;
    assert_eq!(
        (
            &reservation["sku"],
            &reservation["quantity"],
            &reservation["status"]
        ),
        (&json!("SKU-C"), &json!(4), &json!("reserved"))
    );
    let payment = row(pool, "order_payments", "payment_id", payment_id).await;
    assert_eq!(payment["status"], "authorized");
    harness.finish().await;
}
