//! Group commit seen from HTTP: commands that share one transaction each get their own
//! answer (ADR 0010). The batches are made deterministic by a long batch wait closed by
//! the batch size: the commands of a test are all queued before their batch commits.

use std::sync::Arc;
use std::time::Duration;

use command_api::store::group_commit::GroupCommitSettings;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{RaceGate, TestApp, TestOptions, spawn_app_with};

/// An app whose batches close when `commands` are queued (or after 3 s, which a test that
/// sends fewer pays once per command).
async fn batching_app(commands: usize, gate: Option<Arc<RaceGate>>) -> TestApp {
    let mut options = gate.map_or_else(TestOptions::default, TestOptions::racing);
    options.settings.event_store.group_commit = GroupCommitSettings {
        max_batch: commands,
        max_wait: Duration::from_secs(3),
        in_flight: 1,
    };
    spawn_app_with(options).await
}

/// The transaction that appended an aggregate's event at `sequence`.
async fn transaction_of(
    app: &TestApp,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> String {
    sqlx::query_scalar(
        "SELECT transaction_id::text FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_one(&app.db)
    .await
    .expect("stored event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_and_successes_in_one_group_commit_each_get_their_own_answer() {
    let gate = Arc::new(RaceGate::default());
    let app = batching_app(3, Some(gate.clone())).await;
    let order_id = app.create_order().await;
    // Both racers must have decided on version 1 before either is queued.
    gate.arm(&order_id, 2);

    let path = format!("/orders/{order_id}/lines");
    let if_match = [("If-Match", "\"1\"")];
    let line = |sku: &str| json!({"sku": sku, "quantity": 1, "unit_price": {"amount_minor": 100, "currency": "EUR"}});
    let (a, b, created) = tokio::join!(
        app.post_with(&path, line("SKU-A"), &if_match),
        app.post_with(&path, line("SKU-B"), &if_match),
        app.post(
            "/orders",
            json!({"customer_id": Uuid::new_v4(), "currency": "EUR"})
        ),
    );

    let (winner, loser) = if a.status == 201 { (&a, &b) } else { (&b, &a) };
    winner.assert_accepted(201, 2);
    let problem = loser.assert_problem(409, "concurrency.conflict");
    assert_eq!(problem["current_version"], 2);
    created.assert_accepted(201, 1);
    let created_id = created.body["aggregate_id"]
        .as_str()
        .expect("id")
        .to_owned();

    // The winner and the unrelated create were committed by one transaction; the loser
    // appended nothing.
    assert_eq!(
        transaction_of(&app, "order", &order_id, 2).await,
        transaction_of(&app, "order", &created_id, 1).await
    );
    assert_eq!(app.events_of("order", &order_id).await.len(), 2);
    // Each answer names the event the database assigned to it.
    let stored = app.events_of("order", &created_id).await;
    assert_eq!(
        created.body["events"][0]["event_id"],
        stored[0].event_id.to_string()
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_with_one_idempotency_key_in_one_group_commit_get_the_same_answer() {
    let app = batching_app(2, None).await;
    let body = json!({"customer_id": Uuid::new_v4(), "currency": "EUR"});
    let key = [("Idempotency-Key", "batched-create")];

    // Neither request finds the key before the batch commits: both decide the create of the
    // order the key names, and the batch appends the first and rejects the second.
    let (a, b) = tokio::join!(
        app.post_with("/orders", body.clone(), &key),
        app.post_with("/orders", body.clone(), &key)
    );
    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
    assert_eq!(b.status.as_u16(), 201, "{}", b.text);
    assert_eq!(a.body, b.body, "one answer for one key");
    let replayed = [&a, &b]
        .into_iter()
        .filter(|response| response.header("idempotent-replayed") == Some("true"))
        .count();
    assert_eq!(replayed, 1, "the second is the first one's replay");
    assert_eq!(app.event_count().await, 1, "one order was created");
    assert_eq!(app.idempotency_key_count().await, 1);
    app.finish().await;
}
