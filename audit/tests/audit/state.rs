//! `/audit/streams/{aggregate_type}/{aggregate_id}/state`: time travel.

use aggregates::inventory::InventoryItem;
use aggregates::order::Order;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use cqrs_es::Aggregate;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Stack, spawn_stack};

/// The test's own fold of `events[..version]`, independent of the service.
fn fold_locally<A>(events: &[Value], version: usize) -> Value
where
    A: Aggregate,
    A::Event: DeserializeOwned,
{
    let mut aggregate = A::default();
    for event in &events[..version] {
        let event: A::Event =
            serde_json::from_value(event["payload"].clone()).expect("a domain event");
        aggregate.apply(event);
    }
    serde_json::to_value(&aggregate).expect("serializable aggregate")
}

fn recorded_at(event: &Value) -> DateTime<Utc> {
    event["recorded_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .expect("recorded_at")
        .with_timezone(&Utc)
}

fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An order through its whole life: 9 events.
async fn order_lifecycle(stack: &Stack) -> String {
    let order_id = stack.create_order(&[]).await;
    stack.add_line(&order_id, "SKU-1", 2).await;
    stack.add_line(&order_id, "SKU-2", 1).await;
    let lines = format!("/orders/{order_id}/lines");
    stack
        .commands
        .send(
            Method::PATCH,
            &format!("{lines}/SKU-1"),
            json!({"quantity": 5}),
            &[],
        )
        .await
        .assert_success();
    stack
        .commands
        .send(Method::DELETE, &format!("{lines}/SKU-2"), Value::Null, &[])
        .await
        .assert_success();
    for (step, body) in [
        ("place", Value::Null),
        ("confirm", json!({})),
        ("ship", json!({"tracking_reference": "1Z999"})),
        ("deliver", Value::Null),
    ] {
        stack
            .post_ok(&format!("/orders/{order_id}/{step}"), body, &[])
            .await;
    }
    order_id
}

async fn history(stack: &Stack, aggregate_type: &str, aggregate_id: &str) -> Vec<Value> {
    let (items, _) = stack
        .all_pages(&format!(
            "/audit/streams/{aggregate_type}/{aggregate_id}/events?limit=200"
        ))
        .await;
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_returns_the_right_state_at_every_version_of_an_order() {
    let stack = spawn_stack().await;
    let order_id = order_lifecycle(&stack).await;
    let events = history(&stack, "order", &order_id).await;
    assert_eq!(events.len(), 9);
    let expected_status = [
        "Draft",
        "Draft",
        "Draft",
        "Draft",
        "Draft",
        "Placed",
        "Confirmed",
        "Shipped",
        "Delivered",
    ];
    let expected_lines = [0, 1, 2, 2, 1, 1, 1, 1, 1];
    let state_path = format!("/audit/streams/order/{order_id}/state");

    for version in 1..=events.len() {
        let response = stack.get(&format!("{state_path}?version={version}")).await;
        let body = response.assert_ok();
        assert_eq!(body["aggregate_type"], "order");
        assert_eq!(body["aggregate_id"], order_id);
        assert_eq!(body["version"], version);
        assert_eq!(body["current_version"], 9);
        assert_eq!(body["recorded_at"], events[version - 1]["recorded_at"]);
        assert_eq!(
            body["state"],
            fold_locally::<Order>(&events, version),
            "version {version}"
        );
        let state = &body["state"]["state"];
        assert_eq!(
            state["status"],
            expected_status[version - 1],
            "version {version}"
        );
        assert_eq!(
            state["lines"].as_array().expect("lines").len(),
            expected_lines[version - 1],
            "version {version}"
        );
    }
    // After the change of quantity (version 4) SKU-1 has 5 units; before it, 2.
    let v3 = stack.get(&format!("{state_path}?version=3")).await;
    assert_eq!(v3.assert_ok()["state"]["state"]["lines"][0]["quantity"], 2);
    let v4 = stack.get(&format!("{state_path}?version=4")).await;
    assert_eq!(v4.assert_ok()["state"]["state"]["lines"][0]["quantity"], 5);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_by_instant_lands_on_the_last_event_recorded_by_then() {
    let stack = spawn_stack().await;
    let order_id = order_lifecycle(&stack).await;
    let events = history(&stack, "order", &order_id).await;
    let state_path = format!("/audit/streams/order/{order_id}/state");

    for (index, event) in events.iter().enumerate() {
        let version = index + 1;
        let at = recorded_at(event);
        let exactly = stack.get(&format!("{state_path}?at={}", rfc3339(at))).await;
        let body = exactly.assert_ok();
        assert_eq!(body["version"], version, "at the event's own instant");
        assert_eq!(body["state"], fold_locally::<Order>(&events, version));

        let just_before = at - TimeDelta::microseconds(1);
        let response = stack
            .get(&format!("{state_path}?at={}", rfc3339(just_before)))
            .await;
        if version == 1 {
            response.assert_problem(404, "audit.no_state_at");
        } else {
            assert_eq!(
                response.assert_ok()["version"],
                version - 1,
                "just before event {version}"
            );
        }
    }
    let later = recorded_at(&events[8]) + TimeDelta::days(365);
    let response = stack
        .get(&format!("{state_path}?at={}", rfc3339(later)))
        .await;
    assert_eq!(response.assert_ok()["version"], 9);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_folds_inventory_too() {
    let stack = spawn_stack().await;
    for body in [json!({"quantity": 10}), json!({"quantity": 5})] {
        stack.post_ok("/inventory/SKU-TT/stock", body, &[]).await;
    }
    let order_id = Uuid::new_v4();
    stack
        .post_ok(
            "/inventory/SKU-TT/reservations",
            json!({"order_id": order_id, "quantity": 4}),
            &[],
        )
        .await;
    let events = history(&stack, "inventory", "SKU-TT").await;
    assert_eq!(events.len(), 3);

    for version in 1..=3 {
        let response = stack
            .get(&format!(
                "/audit/streams/inventory/SKU-TT/state?version={version}"
            ))
            .await;
        assert_eq!(
            response.assert_ok()["state"],
            fold_locally::<InventoryItem>(&events, version)
        );
    }
    let last = stack
        .get("/audit/streams/inventory/SKU-TT/state?version=3")
        .await;
    let state = &last.assert_ok()["state"];
    assert_eq!(state["on_hand"], 15);
    assert_eq!(state["reserved"], 4);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_states_are_clear_problems() {
    let stack = spawn_stack().await;
    let order_id = stack.create_order(&[]).await;
    stack.add_line(&order_id, "SKU-1", 1).await;
    let state_path = format!("/audit/streams/order/{order_id}/state");

    let beyond = stack.get(&format!("{state_path}?version=3")).await;
    let body = beyond.assert_problem(404, "audit.version_not_found");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("version 2") && d.contains("version 3")),
        "{body}"
    );
    stack
        .get(&format!(
            "/audit/streams/order/{}/state?version=1",
            Uuid::new_v4()
        ))
        .await
        .assert_problem(404, "audit.stream_not_found");
    stack
        .get("/audit/streams/saga/x/state?version=1")
        .await
        .assert_bad_parameter("request.invalid_path", "aggregate_type");
    stack
        .get(&state_path)
        .await
        .assert_bad_parameter("request.invalid_parameter", "version");
    stack
        .get(&format!("{state_path}?version=1&at=2024-05-01T00:00:00Z"))
        .await
        .assert_bad_parameter("request.invalid_parameter", "at");
    for bad in ["0", "-1", "two"] {
        stack
            .get(&format!("{state_path}?version={bad}"))
            .await
            .assert_bad_parameter("request.invalid_parameter", "version");
    }
    stack
        .get(&format!("{state_path}?at=2024-13-01T00:00:00Z"))
        .await
        .assert_bad_parameter("request.invalid_parameter", "at");
    stack
        .get(&format!("{state_path}?at=2000-01-01T00:00:00Z"))
        .await
        .assert_problem(404, "audit.no_state_at");
    stack.finish().await;
}
