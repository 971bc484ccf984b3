//! Per-aggregate order with two relays and many writers; at-least-once across a crash.

use std::collections::BTreeMap;
use std::time::Duration;

use outbox_relay::OutboxRelay;
use serde_json::json;
use sqlx::Connection;
use test_support::Stack;

use crate::helpers::{TestApp, spawn_app};
use crate::support::{
    Received, RunningRelay, by_key, outbox_rows, receive_until, relay_config, stored_event_ids,
    subscribe, test_prefix, wait_for_empty_outbox,
};

const WRITERS: usize = 8;
const ORDERS_PER_WRITER: usize = 5;
const LINES_PER_ORDER: usize = 6;

/// One writer: creates orders and adds lines to them one command at a time.
async fn write_orders(app: &TestApp, writer: usize) -> Vec<String> {
    let mut orders = Vec::new();
    for _ in 0..ORDERS_PER_WRITER {
        let order_id = app.create_order().await;
        for line in 0..LINES_PER_ORDER {
            app.post(
                &format!("/orders/{order_id}/lines"),
                json!({"sku": format!("W{writer}-L{line}"), "quantity": 1,
                       "unit_price": {"amount_minor": 100, "currency": "EUR"}}),
            )
            .await
            .assert_accepted(201, u64::try_from(line).expect("small") + 2);
        }
        orders.push(order_id);
    }
    orders
}

/// Asserts what a consumer applying "sequence == last applied + 1" relies on: per key,
/// the first arrival of each sequence comes in sequence order, every stored event
/// arrived, and a repeated sequence always carries the same event id.
fn assert_complete_and_ordered(
    messages: &[Received],
    stored: &BTreeMap<(String, i64), String>,
) -> usize {
    let mut duplicates = 0;
    for (key, received) in by_key(messages) {
        let mut first_seen: Vec<i64> = Vec::new();
        let mut ids: BTreeMap<i64, &str> = BTreeMap::new();
        for message in received {
            let sequence = message.sequence();
            match ids.insert(sequence, message.header("event_id")) {
                Some(earlier) => {
                    duplicates += 1;
                    assert_eq!(
                        earlier,
                        message.header("event_id"),
                        "{key}#{sequence} was published twice with different event ids"
                    );
                }
                None => first_seen.push(sequence),
            }
        }
        let expected: Vec<i64> = stored
            .keys()
            .filter(|(id, _)| *id == key)
            .map(|(_, sequence)| *sequence)
            .collect();
        assert_eq!(
            first_seen, expected,
            "{key}: first arrivals must be every stored sequence, in order"
        );
        for (sequence, event_id) in ids {
            assert_eq!(event_id, stored[&(key.clone(), sequence)]);
        }
    }
    duplicates
}

#[tokio::test]
async fn two_relays_and_concurrent_writers_publish_every_event_in_aggregate_order() {
    let stack = Stack::from_env();
    let app = spawn_app().await;
    let prefix = test_prefix();
    let config = relay_config(&app, &stack.kafka_brokers, &prefix);
    let first = RunningRelay::start(config.clone()).await;
    let second = RunningRelay::start(config).await;
    let consumer = subscribe(&stack.kafka_brokers, &prefix);

    let writers = (0..WRITERS).map(|writer| write_orders(&app, writer));
    let orders: Vec<String> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let total = WRITERS * ORDERS_PER_WRITER * (LINES_PER_ORDER + 1);
    assert_eq!(
        app.event_count().await,
        i64::try_from(total).expect("small")
    );

    let messages = receive_until(&consumer, Duration::from_secs(60), |m| m.len() >= total).await;
    wait_for_empty_outbox(&app, Duration::from_secs(10)).await;
    let stored = stored_event_ids(&app).await;
    let duplicates = assert_complete_and_ordered(&messages, &stored);
    assert_eq!(by_key(&messages).len(), orders.len());
    // Without a crash nothing is published twice.
    assert_eq!(duplicates, 0);

    // Both relays come to hold shards (leases are rebalanced every 2 s): the work is
    // shared, not serialised behind one relay.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let holding: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_relays WHERE cardinality(shards) > 0")
                .fetch_one(&app.db)
                .await
                .expect("relay registrations");
        if holding == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {holding} relay(s) hold shards"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    first.stop().await;
    second.stop().await;
    app.finish().await;
}

#[tokio::test]
async fn a_crash_between_publish_and_delete_republishes_with_the_same_event_ids() {
    let stack = Stack::from_env();
    let app = spawn_app().await;
    let prefix = test_prefix();
    let config = relay_config(&app, &stack.kafka_brokers, &prefix);
    let consumer = subscribe(&stack.kafka_brokers, &prefix);
    let order_id = app.order_with_line("SKU-C").await;
    app.post(
        &format!("/orders/{order_id}/place"),
        serde_json::Value::Null,
    )
    .await
    .assert_accepted(200, 3);

    // A relay publishes every shard's events and "crashes" before deleting them.
    let crashed = OutboxRelay::prepare(config.clone()).await.expect("prepare");
    let mut connection = sqlx::PgConnection::connect_with(&config.database)
        .await
        .expect("connect");
    let all_shards: Vec<i16> = (0..outbox_relay::OUTBOX_SHARDS).collect();
    let published = crashed
        .publish_pending(&mut connection, &all_shards)
        .await
        .expect("publish");
    assert_eq!(published.acknowledged.len(), 3);
    assert_eq!(outbox_rows(&app).await, 3, "nothing was marked published");
    drop(connection);

    // The next relay publishes them again, then cleans up.
    let relay = RunningRelay::start(config).await;
    let messages = receive_until(&consumer, Duration::from_secs(30), |m| m.len() >= 6).await;
    wait_for_empty_outbox(&app, Duration::from_secs(10)).await;
    let stored = stored_event_ids(&app).await;
    assert_eq!(assert_complete_and_ordered(&messages, &stored), 3);
    assert_eq!(messages.len(), 6, "each event exactly twice: {messages:?}");

    relay.stop().await;
    app.finish().await;
}
