//! Optimistic concurrency over real, concurrent HTTP requests: `ETag`/`If-Match`, and
//! racing commands: a conditional loser gets 409, an unconditional one is decided again on
//! the fresh state — never a lost update.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{RaceGate, TestApp, TestOptions, spawn_app, spawn_app_with};

/// An app whose appends can be held at a barrier, and an order created on it.
async fn racing_app() -> (TestApp, Arc<RaceGate>, String) {
    let gate = Arc::new(RaceGate::default());
    let app = spawn_app_with(TestOptions::racing(gate.clone())).await;
    let order_id = app.create_order().await;
    (app, gate, order_id)
}

fn line(sku: &str) -> serde_json::Value {
    json!({"sku": sku, "quantity": 1, "unit_price": {"amount_minor": 100, "currency": "EUR"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_conditional_commands_racing_on_one_aggregate_one_wins_the_other_gets_409() {
    let (app, gate, order_id) = racing_app().await;
    // Both requests must have loaded version 1 and decided before either appends.
    gate.arm(&order_id, 2);

    // With If-Match the callers asked for version 1: the loser is not decided again.
    let path = format!("/orders/{order_id}/lines");
    let if_match = [("If-Match", "\"1\"")];
    let (a, b) = tokio::join!(
        app.post_with(&path, line("SKU-A"), &if_match),
        app.post_with(&path, line("SKU-B"), &if_match)
    );

    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "a: {} / b: {}", a.text, b.text);
    let (winner, loser) = if a.status == 201 { (&a, &b) } else { (&b, &a) };
    winner.assert_accepted(201, 2);
    let problem = loser.assert_problem(409, "concurrency.conflict");
    assert_eq!(problem["current_version"], 2);

    // The store holds the creation and exactly the winner's line, nothing of the loser.
    let stored = app.events_of("order", &order_id).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[1].event_id.to_string(),
        winner.body["events"][0]["event_id"]
    );
    let winner_sku = if a.status == 201 { "SKU-A" } else { "SKU-B" };
    assert_eq!(
        stored[1].payload["OrderLineAdded"]["line"]["sku"],
        winner_sku
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconditional_command_that_loses_a_race_is_decided_again_on_the_fresh_state() {
    let (app, gate, order_id) = racing_app().await;
    gate.arm(&order_id, 2);

    // Both decided on version 1; one appends first, the other conflicts and is decided
    // again on version 2 (the gate lets the second decision through).
    let path = format!("/orders/{order_id}/lines");
    let (a, b) = tokio::join!(
        app.post(&path, line("SKU-A")),
        app.post(&path, line("SKU-B"))
    );
    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
    assert_eq!(b.status.as_u16(), 201, "{}", b.text);
    let mut versions = [
        a.body["version"].as_u64().expect("a version"),
        b.body["version"].as_u64().expect("b version"),
    ];
    versions.sort_unstable();
    assert_eq!(versions, [2, 3]);

    // Both lines are stored, once each, in a gap-free stream: no update lost or doubled.
    let stored = app.events_of("order", &order_id).await;
    let skus: BTreeSet<String> = stored[1..]
        .iter()
        .map(|event| event.payload["OrderLineAdded"]["line"]["sku"].to_string())
        .collect();
    assert_eq!(stored.len(), 3);
    assert_eq!(
        skus,
        BTreeSet::from(["\"SKU-A\"".to_owned(), "\"SKU-B\"".to_owned()])
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_decided_again_gets_the_answer_of_the_fresh_state() {
    let (app, gate, order_id) = racing_app().await;
    app.post(&format!("/orders/{order_id}/lines"), line("SKU-A"))
        .await
        .assert_accepted(201, 2);
    gate.arm(&order_id, 2);

    // Two clerks place the same order: both decide on the draft, one places it, the other
    // is decided again on the placed order, which refuses.
    let path = format!("/orders/{order_id}/place");
    let (a, b) = tokio::join!(
        app.post(&path, serde_json::Value::Null),
        app.post(&path, serde_json::Value::Null)
    );
    let (winner, loser) = if a.status.as_u16() == 200 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    winner.assert_accepted(200, 3);
    loser.assert_problem(409, "order.invalid_transition");
    assert_eq!(app.events_of("order", &order_id).await.len(), 3);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_never_lose_an_update() {
    let app = spawn_app().await;
    app.add_stock("SKU-HOT", 1).await.assert_accepted(200, 1);

    let path = "/inventory/SKU-HOT/stock";
    let requests = (0..16).map(|_| app.post(path, json!({"quantity": 1})));
    let responses = join_all(requests).await;

    let mut versions = BTreeSet::new();
    let mut conflicts = 0;
    for response in &responses {
        match response.status.as_u16() {
            200 => {
                let version = response.body["version"].as_u64().unwrap();
                assert!(
                    versions.insert(version),
                    "two winners share version {version}"
                );
            }
            409 => {
                response.assert_problem(409, "concurrency.conflict");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {}", response.text),
        }
    }
    let successes = versions.len();
    assert_eq!(successes + conflicts, 16);
    // Every acknowledged command is in the store, exactly once, in a gap-free stream.
    let stored = app.events_of("inventory", "SKU-HOT").await;
    assert_eq!(stored.len(), 1 + successes);
    let sequences: Vec<i64> = stored.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=stored.len() as i64).collect::<Vec<_>>());
    let expected: BTreeSet<u64> = (2..=(1 + successes as u64)).collect();
    assert_eq!(versions, expected);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_with_the_current_etag_succeeds_and_a_stale_one_is_412() {
    let app = spawn_app().await;
    let order_id = app.create_order().await;
    let path = format!("/orders/{order_id}/lines");

    let added = app
        .post_with(&path, line("SKU-1"), &[("If-Match", "\"1\"")])
        .await;
    added.assert_accepted(201, 2);
    let etag = added.etag().to_owned();
    assert_eq!(etag, "\"2\"");

    let stale = app
        .post_with(&path, line("SKU-2"), &[("If-Match", "\"1\"")])
        .await;
    let problem = stale.assert_problem(412, "concurrency.version_mismatch");
    assert_eq!(problem["current_version"], 2);
    assert_eq!(stale.header("etag"), Some("\"2\""));
    assert_eq!(
        app.event_count().await,
        2,
        "the stale command wrote nothing"
    );

    app.post_with(&path, line("SKU-2"), &[("If-Match", "\"7\", \"2\"")])
        .await
        .assert_accepted(201, 3);
    app.post_with(&path, line("SKU-3"), &[("If-Match", "*")])
        .await
        .assert_accepted(201, 4);
    // A weak tag never matches (strong comparison).
    app.post_with(&path, line("SKU-4"), &[("If-Match", "W/\"4\"")])
        .await
        .assert_problem(412, "concurrency.version_mismatch");
    assert_eq!(app.event_count().await, 4);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_star_on_an_aggregate_that_does_not_exist_is_412() {
    let app = spawn_app().await;
    let response = app
        .post_with(
            "/inventory/SKU-NEW/stock",
            json!({"quantity": 1}),
            &[("If-Match", "*")],
        )
        .await;
    let problem = response.assert_problem(412, "concurrency.version_mismatch");
    assert_eq!(problem["current_version"], 0);
    assert_eq!(app.event_count().await, 0);
    // "0" means "must not exist yet": a conditional create.
    app.post_with(
        "/inventory/SKU-NEW/stock",
        json!({"quantity": 1}),
        &[("If-Match", "\"0\"")],
    )
    .await
    .assert_accepted(200, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_aggregate_in_one_process_take_turns_and_all_land() {
    let app = spawn_app().await;
    app.add_stock("SKU-TURNS", 1).await.assert_accepted(200, 1);

    // With If-Match-free commands on one aggregate, the process lets them append one after
    // another, each decided on the state the previous one left: no race, no conflict.
    let path = "/inventory/SKU-TURNS/stock";
    let responses = join_all((0..16).map(|_| app.post(path, json!({"quantity": 1})))).await;
    let mut versions: Vec<u64> = responses
        .iter()
        .map(|response| {
            assert_eq!(response.status.as_u16(), 200, "{}", response.text);
            response.body["version"].as_u64().expect("version")
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=17).collect::<Vec<u64>>());
    assert_eq!(app.events_of("inventory", "SKU-TURNS").await.len(), 17);
    app.finish().await;
}

/// Another process appends to an aggregate: a copy of a donor order's event, inserted as the
/// other process's append would be.
async fn appended_elsewhere(
    app: &TestApp,
    order_id: &str,
    donor: &str,
    donor_sequence: i64,
    sequence: i64,
) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT aggregate_type, $1, $2, event_type, event_version, payload, metadata
           FROM events WHERE aggregate_type = 'order' AND aggregate_id = $3 AND sequence = $4",
    )
    .bind(order_id)
    .bind(sequence)
    .bind(donor)
    .bind(donor_sequence)
    .execute(&app.db)
    .await
    .expect("append elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_a_cached_state_another_process_moved_on_is_made_again_on_the_stored_one() {
    let app = spawn_app().await;
    // This process caches the order at version 1 (its creation).
    let order_id = app.create_order().await;
    let donor = app.order_with_line("SKU-X").await;
    app.post(&format!("/orders/{donor}/place"), serde_json::Value::Null)
        .await
        .assert_accepted(200, 3);

    // Another process adds a line: the cached version 1 is stale. The decision on it loses
    // the append, and the command is decided again on the stored version 2.
    appended_elsewhere(&app, &order_id, &donor, 2, 2).await;
    app.post(&format!("/orders/{order_id}/lines"), line("SKU-Y"))
        .await
        .assert_accepted(201, 3);

    // Another process places the order. The cached draft would take one more line; the
    // stored, placed order refuses it, and that is the answer.
    appended_elsewhere(&app, &order_id, &donor, 3, 4).await;
    app.post(&format!("/orders/{order_id}/lines"), line("SKU-Z"))
        .await
        .assert_problem(409, "order.invalid_transition");
    let stored = app.events_of("order", &order_id).await;
    assert_eq!(
        stored
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        [
            "OrderCreated",
            "OrderLineAdded",
            "OrderLineAdded",
            "OrderPlaced"
        ]
    );
    app.finish().await;
}
