//! Personal data in the audit trail (ADR 0009): sealed in the stored payload, opened for the
//! `auditor` role only, `erased` once the customer is forgotten, and the hash chain verifies
//! before and after.

use std::sync::Arc;

use audit::personal_data::Keyring;
use event_store::customer_keys::MasterKey;
use serde_json::{Value, json};
use test_support::tokens::{self, HS256_SECRET};
use uuid::Uuid;

use crate::helpers::{Stack, StackOptions, spawn_stack_with};

fn keyring() -> Option<Arc<Keyring>> {
    Some(Arc::new(Keyring::new(
        MasterKey::from_bytes(&[42; 32]),
        vec![],
    )))
}

fn auditor() -> String {
    format!(
        "Bearer {}",
        tokens::hs256(&tokens::claims("auditor-1", &["auditor"]), HS256_SECRET)
    )
}

fn details(tag: &str) -> Value {
    json!({
        "name": format!("Ada Lovelace {tag}"),
        "email": format!("ada.{tag}@example.com"),
        "shipping_address": {
            "line1": format!("12 St James's Square {tag}"),
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country": "GB"
        }
    })
}

async fn create_with_details(stack: &Stack, customer: Uuid, tag: &str) -> String {
    let body = stack
        .post_ok(
            "/orders",
            json!({"customer_id": customer, "currency": "EUR", "customer_details": details(tag)}),
            &[],
        )
        .await;
    body["aggregate_id"].as_str().expect("order id").to_owned()
}

async fn history(stack: &Stack, order_id: &str, token: Option<&str>) -> Value {
    let path = format!("/audit/streams/order/{order_id}/events");
    let headers: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
    stack
        .queries
        .get_with(&path, &headers)
        .await
        .assert_ok()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_see_personal_data_until_the_customer_is_forgotten_and_the_chain_still_verifies() {
    let stack = spawn_stack_with(StackOptions {
        keyring: keyring(),
        query_auth: Some(tokens::hs256_settings()),
    })
    .await;
    let customer = Uuid::new_v4();
    let tag = Uuid::new_v4().simple().to_string();
    let order_id = create_with_details(&stack, customer, &tag).await;
    let token = auditor();

    let body = history(&stack, &order_id, Some(&token)).await;
    let created = &body["items"][0];
    let shown = &created["personal_data"];
    assert_eq!(shown["status"], "present", "{body}");
    assert_eq!(shown["name"], format!("Ada Lovelace {tag}"));
    assert_eq!(shown["email"], format!("ada.{tag}@example.com"));
    assert_eq!(shown["shipping_address"]["country"], "GB");
    // The payload stays as stored: ciphertext and key id only.
    let sealed = &created["payload"]["OrderCreated"]["customer_details"];
    assert!(sealed["ciphertext"].is_string(), "{created}");
    assert_eq!(sealed["key_id"], shown["key_id"]);
    assert!(!created["payload"].to_string().contains(&tag));

    // A reader token does not even reach the audit trail.
    let reader = format!(
        "Bearer {}",
        tokens::hs256(&tokens::claims("dashboard", &["reader"]), HS256_SECRET)
    );
    let refused = stack
        .queries
        .get_with(
            &format!("/audit/streams/order/{order_id}/events"),
            &[("authorization", reader.as_str())],
        )
        .await;
    refused.assert_problem(403, "auth.forbidden");

    let unknown = stack
        .commands
        .post(&format!("/customers/{}/forget", Uuid::new_v4()), json!({}))
        .await;
    unknown.assert_problem(404, "customer.not_found");

    let forgotten = stack
        .post_ok(&format!("/customers/{customer}/forget"), json!({}), &[])
        .await;
    assert_eq!(forgotten["events"][0]["event_type"], "CustomerForgotten");
    let again = stack
        .post_ok(&format!("/customers/{customer}/forget"), Value::Null, &[])
        .await;
    assert_eq!(
        again["events"],
        json!([]),
        "forgetting twice records nothing"
    );
    assert_eq!(again["version"], 1);

    let body = history(&stack, &order_id, Some(&token)).await;
    assert_eq!(body["items"][0]["personal_data"]["status"], "erased");
    assert!(!body.to_string().contains(&tag));
    let forget_event = history_of(&stack, "customer", &customer.to_string(), &token).await;
    assert_eq!(forget_event["items"][0]["event_type"], "CustomerForgotten");
    assert_eq!(
        forget_event["items"][0]["payload"],
        json!({"CustomerForgotten": {}}),
        "the forget event carries no personal data"
    );

    for path in [
        format!("/audit/streams/order/{order_id}/verify"),
        format!("/audit/streams/customer/{customer}/verify"),
        "/audit/verify".to_owned(),
    ] {
        let verified = stack
            .queries
            .get_with(&path, &[("authorization", token.as_str())])
            .await
            .assert_ok()
            .clone();
        assert_eq!(verified["ok"], true, "{path}: {verified}");
    }
    stack.finish().await;
}

async fn history_of(stack: &Stack, aggregate_type: &str, id: &str, token: &str) -> Value {
    stack
        .queries
        .get_with(
            &format!("/audit/streams/{aggregate_type}/{id}/events"),
            &[("authorization", token)],
        )
        .await
        .assert_ok()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_verified_auditor_personal_data_is_redacted() {
    // Authentication off (local development): nobody is known to be an auditor.
    let stack = spawn_stack_with(StackOptions {
        keyring: keyring(),
        query_auth: None,
    })
    .await;
    let tag = Uuid::new_v4().simple().to_string();
    let order_id = create_with_details(&stack, Uuid::new_v4(), &tag).await;
    let body = history(&stack, &order_id, None).await;
    assert_eq!(body["items"][0]["personal_data"]["status"], "redacted");
    assert!(!body.to_string().contains(&tag), "{body}");
    stack.wait_for_log(1).await;
    let log = stack
        .get("/audit/events?limit=10")
        .await
        .assert_ok()
        .clone();
    assert_eq!(log["items"][0]["personal_data"]["status"], "redacted");
    stack.finish().await;
}
