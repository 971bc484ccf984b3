//! A static member fenced out of its group (here by a second consumer under the same
//! `group.instance.id`; in the field, by its own rejoin after a broker restart) gets a
//! fatal error from librdkafka: its commits fail for good, and it can never rejoin (after a
//! broker restart it delivers nothing ever again). The projector replaces its consumer and
//! carries on: events written around the fencing are applied, and their offsets committed.

use std::time::Duration;

use projections::Projection;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::Harness;

/// Events written while the intruder joins.
const WRITES: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_static_member_replaces_its_consumer_and_carries_on() {
    let harness = Harness::start(2).await;
    let mut settings = harness.projector_settings(10);
    settings.instance_id = Some(test_support::unique_name("fenced"));
    let instance = settings
        .group_instance_id(Projection::Stock)
        .expect("a static member");
    let mut projector = harness.start_projector(Projection::Stock, &settings).await;
    harness.add_stock("FENCE-1", 3).await;
    projector.wait_for_applied(1).await;

    // An intruder joins under the projector's instance name while events keep coming:
    // the broker fences the projector's member, and its next offset commit fails fatally.
    let writes = async {
        for _ in 0..WRITES {
            harness.add_stock("FENCE-1", 1).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let intrude = async {
        let intruder: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &harness.kafka.brokers)
            .set("group.id", &projector.group_id)
            .set("group.instance.id", &instance)
            .set("session.timeout.ms", "6000")
            .set("enable.auto.commit", "false")
            .create()
            .expect("intruder consumer");
        intruder
            .subscribe(&[harness.topic(schemas::AggregateKind::Inventory).as_str()])
            .expect("intruder subscribes");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while intruder.assignment().map_or(0, |a| a.count()) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the intruder never got the partitions"
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), intruder.recv()).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::spawn_blocking(move || drop(intruder))
            .await
            .expect("intruder closed");
    };
    tokio::join!(writes, intrude);

    // Written after the fencing: the projector must apply them with a new consumer.
    harness.add_stock("FENCE-2", 5).await;
    harness.add_stock("FENCE-1", 1).await;
    let progress = projector.wait_for_applied(3 + WRITES).await;
    assert!(progress.applied >= 3 + WRITES, "{progress:?}");
    let on_hand: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, on_hand FROM read_model.stock_levels ORDER BY sku")
            .fetch_all(&harness.read_model)
            .await
            .expect("stock levels");
    assert_eq!(
        on_hand,
        vec![
            ("FENCE-1".to_owned(), 4 + WRITES as i64),
            ("FENCE-2".to_owned(), 5)
        ]
    );
    // And it is a member again: the offsets of what it applied get committed (a fenced
    // consumer's commits fail for good, and a restart would read it all again).
    let topic = harness.topic(schemas::AggregateKind::Inventory);
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &harness.kafka.brokers)
        .set("group.id", &projector.group_id)
        .create()
        .expect("offset reader");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (committed, end) = tokio::task::block_in_place(|| committed_and_end(&reader, &topic));
        if committed == end {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group committed {committed} of {end} offsets"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    projector.stop().await;
    harness.finish().await;
}

/// The group's committed offsets and the partitions' ends, summed over `topic`.
fn committed_and_end(reader: &BaseConsumer, topic: &str) -> (i64, i64) {
    let timeout = Duration::from_secs(5);
    let metadata = reader
        .fetch_metadata(Some(topic), timeout)
        .expect("topic metadata");
    let mut partitions = TopicPartitionList::new();
    let mut end = 0;
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions.add_partition(topic, partition.id());
        end += reader
            .fetch_watermarks(topic, partition.id(), timeout)
            .expect("watermarks")
            .1;
    }
    let committed = reader
        .committed_offsets(partitions, timeout)
        .expect("committed offsets")
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        })
        .sum();
    (committed, end)
}
