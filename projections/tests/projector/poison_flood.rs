//! A flood of messages that can never decode (100 among 1,000 good events over many SKUs)
//! goes straight to the dead letters: no retry budget is spent on them, nothing is held,
//! and every good event is applied.

use std::collections::BTreeMap;
use std::time::Duration;

use projections::Projection;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;
use schemas::AggregateKind;

use crate::support::{
    Harness, held_events, letters, producer, receive, stock, subscribe_from_start,
};

const SKUS: usize = 50;
const ADDS_PER_SKU: usize = 20;
const POISON: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_poison_messages_are_dead_lettered_at_once_and_every_good_event_applies() {
    let harness = Harness::start(2).await;
    let topic = harness.topic(AggregateKind::Inventory);
    let producer = producer(&harness.kafka.brokers);

    // A schema id the registry has: the frame of a real message.
    harness.add_stock("SKU-FIRST", 1).await;
    harness.wait_for_empty_outbox().await;
    let reader = subscribe_from_start(&harness.kafka.brokers, &topic);
    let first = receive(&reader, 1, "first inventory event").await;
    let known_schema: [u8; 5] = first[0].payload().expect("a value")[..5]
        .try_into()
        .expect("a Confluent header");

    // Three kinds: not a Confluent frame; an id the registry answers 404 for; a known
    // schema whose datum is cut short.
    let poison = |n: usize| -> Vec<u8> {
        match n % 3 {
            0 => b"not avro".to_vec(),
            1 => vec![0, 0x7f, 0xff, 0xff, 0xf0, 1, 2, 3],
            _ => [&known_schema[..], &[0x02]].concat(),
        }
    };
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut sent = 0;
    for round in 0..ADDS_PER_SKU {
        for n in 0..SKUS {
            let sku = format!("SKU-{n:03}");
            let quantity = u32::try_from(round + 1).expect("small");
            harness.add_stock(&sku, quantity).await;
            *expected.entry(sku).or_default() += i64::from(quantity);
            if (round * SKUS + n).is_multiple_of(SKUS * ADDS_PER_SKU / POISON) {
                let key = format!("POISON-{sent:03}");
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&poison(sent)),
                        Duration::from_secs(15),
                    )
                    .await
                    .map_err(|(error, _)| error)
                    .expect("poison delivered");
                sent += 1;
            }
        }
    }
    assert_eq!(sent, POISON);
    harness.wait_for_empty_outbox().await;

    let mut settings = harness.projector_settings(100);
    // A budget that would show if it were spent on messages that can never decode.
    settings.retry.max_attempts = 5;
    settings.retry.initial_backoff = Duration::from_secs(5);
    settings.retry.max_backoff = Duration::from_secs(5);
    let mut projector = harness.start_projector(Projection::Stock, &settings).await;
    let good = u64::try_from(SKUS * ADDS_PER_SKU + 1).expect("small");
    let progress = projector
        .wait_for(
            "every good event applied and every poison dead-lettered",
            |p| p.applied >= good && p.dead_lettered >= POISON as u64,
        )
        .await;
    assert_eq!(
        (progress.applied, progress.dead_lettered, progress.held),
        (good, POISON as u64, 0),
        "{progress:?}"
    );

    for (sku, on_hand) in &expected {
        assert_eq!(
            stock(&harness.read_model, sku).await,
            Some((*on_hand, ADDS_PER_SKU as i64)),
            "{sku}"
        );
    }
    let letters = letters(&harness.read_model).await;
    assert_eq!(letters.len(), POISON);
    let mut kinds = BTreeMap::new();
    for letter in &letters {
        assert_eq!(letter.reason, "poison", "{letter:?}");
        assert_eq!(letter.attempts, 1, "no retry budget spent: {letter:?}");
        assert!(
            letter
                .aggregate_id
                .as_deref()
                .is_some_and(|id| id.starts_with("POISON-")),
            "{letter:?}"
        );
        let kind = if letter.error.contains("wire format") {
            "frame"
        } else if letter.error.contains("404") {
            "unknown schema id"
        } else if letter.error.contains("does not decode") {
            "datum"
        } else {
            panic!("unexpected error text: {letter:?}")
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    assert_eq!(
        kinds,
        BTreeMap::from([("datum", 33), ("frame", 34), ("unknown schema id", 33)])
    );
    assert!(
        held_events(&harness.read_model, Projection::Stock)
            .await
            .is_empty()
    );
    projector.stop().await;
    harness.finish().await;
}
