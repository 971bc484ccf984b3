//! Personal data end to end (ADR 0009): sealed on the wire, opened into the order view,
//! erased there when the customer is forgotten, and still erased after a rebuild from the
//! event store.

use projections::Projection;
use projections::replay::source::EventStore;
use projections::replay::{self, Fold, RebuildOptions, RebuildProgress};
use rdkafka::Message;
use schemas::AggregateKind;
use serde_json::{Value, json};
use test_support::personal::Person;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{
    Harness, dump_read_model, id_of, receive, row, subscribe_from_start, test_keyring,
};

async fn create_with(harness: &Harness, customer: Uuid, person: &Person) -> Uuid {
    let body = harness
        .post(
            "/orders",
            json!({"customer_id": customer, "currency": "EUR", "customer_details": person.details()}),
            201,
        )
        .await;
    id_of(&body)
}

fn personal_columns(view: &Value) -> Value {
    json!({
        "personal_data": view["personal_data"],
        "customer_name": view["customer_name"],
        "customer_email": view["customer_email"],
        "shipping_address": view["shipping_address"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_shown_until_forgotten_and_a_rebuild_keeps_it_erased() {
    let harness = Harness::start(2).await;
    let settings = harness.projector_settings(50);
    let mut orders = harness.start_projector(Projection::Orders, &settings).await;

    let person = Person::new();
    let customer = Uuid::new_v4();
    let first = create_with(&harness, customer, &person).await;
    harness.add_line(first, "SKU-P", 2, 700).await;
    harness.place_order(first).await;
    let second = create_with(&harness, customer, &person).await;
    let plain = harness.create_order(customer).await;
    let bystander = Person::new();
    let other = create_with(&harness, Uuid::new_v4(), &bystander).await;

    let counts = harness.event_counts().await;
    orders
        .wait_for_applied(counts.read_by(Projection::Orders))
        .await;
    let pool = &harness.read_model;
    let view = row(pool, "order_view", "order_id", first).await;
    assert_eq!(
        personal_columns(&view),
        json!({
            "personal_data": "present",
            "customer_name": person.name,
            "customer_email": person.email,
            "shipping_address": person.address(),
        })
    );
    assert_eq!(view["status"], "placed");
    assert_eq!(
        row(pool, "order_view", "order_id", plain).await["personal_data"],
        "none"
    );

    // What went over the wire: ciphertext only, in the order topic's raw message bytes.
    let consumer =
        subscribe_from_start(&harness.kafka.brokers, &harness.topic(AggregateKind::Order));
    let messages = receive(
        &consumer,
        usize::try_from(counts.order).unwrap(),
        "order topic",
    )
    .await;
    for message in &messages {
        person.assert_absent(
            message.payload().unwrap_or_default(),
            "a Kafka message value",
        );
        person.assert_absent(message.key().unwrap_or_default(), "a Kafka message key");
    }

    harness
        .post(&format!("/customers/{customer}/forget"), json!({}), 200)
        .await;
    let counts = harness.event_counts().await;
    assert_eq!(counts.customer, 1);
    orders
        .wait_for_applied(counts.read_by(Projection::Orders))
        .await;
    let erased = json!({
        "personal_data": "erased",
        "customer_name": null,
        "customer_email": null,
        "shipping_address": null,
    });
    for order in [first, second] {
        assert_eq!(
            personal_columns(&row(pool, "order_view", "order_id", order).await),
            erased
        );
    }
    assert_eq!(
        row(pool, "order_view", "order_id", plain).await["personal_data"],
        "none"
    );
    assert_eq!(
        personal_columns(&row(pool, "order_view", "order_id", other).await)["personal_data"],
        "present",
        "another customer keeps their data"
    );
    let dump = dump_read_model(pool).await;
    person.assert_absent(format!("{dump:?}").as_bytes(), "the read model");

    // The forget event is on the customer topic, without personal data.
    let customers = subscribe_from_start(
        &harness.kafka.brokers,
        &harness.topic(AggregateKind::Customer),
    );
    let forgotten = receive(&customers, 1, "customer topic").await;
    assert_eq!(forgotten[0].key(), Some(customer.to_string().as_bytes()));

    // Later commands on the forgotten customer's open order (the saga's confirm step)
    // need no personal data.
    harness.confirm_order(first).await;

    // A rebuild from the store opens nothing of the forgotten customer: the keys are gone.
    orders.stop().await;
    let store = EventStore::new(harness.event_store.clone()).with_keyring(Some(test_keyring()));
    let (progress, _updates) = watch::channel(RebuildProgress::default());
    replay::rebuild_from_store(
        Projection::Orders,
        pool,
        &store,
        &RebuildOptions {
            batch_size: 3,
            workers: 2,
            keep_old: false,
            restart: false,
            fold: Fold::PerEvent,
        },
        &CancellationToken::new(),
        &progress,
    )
    .await
    .expect("rebuild succeeds");
    for order in [first, second] {
        assert_eq!(
            personal_columns(&row(pool, "order_view", "order_id", order).await),
            erased
        );
    }
    assert_eq!(
        row(pool, "order_view", "order_id", first).await["status"],
        "confirmed"
    );
    let rebuilt = row(pool, "order_view", "order_id", other).await;
    assert_eq!(
        rebuilt["customer_name"], bystander.name,
        "rebuilds open live keys"
    );
    let dump = dump_read_model(pool).await;
    person.assert_absent(format!("{dump:?}").as_bytes(), "the rebuilt read model");
    harness.finish().await;
}
