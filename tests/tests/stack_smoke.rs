//! The three parts of the local stack work together from Rust: an Avro schema is
//! registered, a record goes through the broker in the Confluent wire format and is
//! decoded by a consumer group, and PostgreSQL answers through sqlx.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use apache_avro::types::Value;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use sqlx::Row;
use tests::{PROBE_TIMEOUT, Stack, StackError};
use uuid::Uuid;

const PING_SCHEMA: &str = r#"{
  "type": "record",
  "name": "StackPinged",
  "namespace": "io.keel.smoke",
  "fields": [
    {"name": "ping_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "sequence", "type": "long"},
    {"name": "note", "type": ["null", "string"], "default": null}
  ]
}"#;
const PING_RECORD: &str = "io.keel.smoke.StackPinged";

fn registry(stack: &Stack) -> SrSettings {
    SrSettings::new_builder(stack.registry_url.clone())
        .no_proxy()
        .set_timeout(Duration::from_secs(5))
        .build()
        .expect("schema registry client settings")
}

#[tokio::test]
async fn avro_record_travels_through_registry_broker_and_consumer_group() {
    let stack = Stack::from_env();
    tests::check_broker(&stack.kafka_brokers, PROBE_TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let topic = tests::unique_name("smoke");
    tests::create_topic(&stack.kafka_brokers, &topic, 1)
        .await
        .unwrap_or_else(|error| panic!("{error}"));

    // Registers the schema under the TopicRecordNameStrategy subject on first use.
    let encoder = AvroEncoder::new(registry(&stack));
    let ping_id = Uuid::new_v4();
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.clone(),
        SuppliedSchema::new(
            Some(PING_RECORD.into()),
            SchemaType::Avro,
            PING_SCHEMA.into(),
        ),
    );
    let payload = encoder
        .encode(
            vec![
                ("ping_id", Value::Uuid(ping_id)),
                ("sequence", Value::Long(42)),
                (
                    "note",
                    Value::Union(1, Box::new(Value::String("hello".into()))),
                ),
            ],
            strategy,
        )
        .await
        .unwrap_or_else(|error| {
            panic!(
                "schema registry at {} refused the schema or record: {error}",
                stack.registry_url
            )
        });
    assert_eq!(
        payload[0], 0,
        "Confluent wire format starts with magic byte 0"
    );
    let schema_id = u32::from_be_bytes(payload[1..5].try_into().expect("four id bytes"));

    let producer = tests::producer(&stack.kafka_brokers).unwrap_or_else(|error| panic!("{error}"));
    let key = ping_id.to_string();
    let rdkafka::producer::future_producer::Delivery {
        partition, offset, ..
    } = producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(&payload),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|(error, _)| {
            panic!(
                "broker at {} did not accept the record: {error}",
                stack.kafka_brokers
            )
        });
    assert_eq!(partition, 0);

    let group = tests::unique_name("smoke-group");
    let consumer =
        tests::consumer(&stack.kafka_brokers, &group).unwrap_or_else(|error| panic!("{error}"));
    consumer.subscribe(&[&topic]).expect("subscribe");
    let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no record from broker at {} within 60 s in group {group}",
                stack.kafka_brokers
            )
        })
        .expect("consume");
    assert_eq!(message.key(), Some(key.as_bytes()));
    assert_eq!(message.offset(), offset);
    let received = message.payload().expect("record has a value");
    assert_eq!(
        u32::from_be_bytes(received[1..5].try_into().expect("four id bytes")),
        schema_id,
        "the consumer sees the id the producer registered"
    );

    // A fresh decoder knows nothing: it must fetch the writer schema by id, as any
    // Confluent client would.
    let decoded = AvroDecoder::new(registry(&stack))
        .decode(Some(received))
        .await
        .expect("decode through the registry");
    assert_eq!(
        decoded.name.map(|name| name.fullname(None)),
        Some(PING_RECORD.to_string())
    );
    let Value::Record(fields) = decoded.value else {
        panic!("expected a record, got {:?}", decoded.value);
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("field {name} missing"))
    };
    assert_eq!(field("ping_id"), Value::Uuid(ping_id));
    assert_eq!(field("sequence"), Value::Long(42));
    assert_eq!(
        field("note"),
        Value::Union(1, Box::new(Value::String("hello".into())))
    );

    consumer
        .commit_message(&message, CommitMode::Sync)
        .expect("commit the consumed offset");
    assert_eq!(
        tests::committed_offset(&consumer, &topic, 0),
        Some(offset + 1),
        "the group remembers its position"
    );
    // A message still held keeps its partition referenced, and librdkafka's destroy
    // would wait for it forever: release the message before the consumer.
    drop(message);
    drop(consumer);
    tests::delete_topics_with_prefix(&stack.kafka_brokers, &topic)
        .await
        .expect("delete the smoke topic");
}

#[tokio::test]
async fn postgres_round_trip_through_sqlx() {
    let stack = Stack::from_env();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(PROBE_TIMEOUT)
        .connect(&stack.database_url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "PostgreSQL at {} not reachable: {error}",
                redact(&stack.database_url)
            )
        });
    let mut connection = pool.acquire().await.expect("connection");
    sqlx::query("CREATE TEMP TABLE smoke_round_trip (id uuid PRIMARY KEY, body jsonb NOT NULL, amount_minor bigint NOT NULL)")
        .execute(&mut *connection)
        .await
        .expect("create temp table");
    let id = Uuid::new_v4();
    let body = serde_json::json!({"sku": "SKU-1", "quantity": 3});
    sqlx::query("INSERT INTO smoke_round_trip (id, body, amount_minor) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(&body)
        .bind(1_999_i64)
        .execute(&mut *connection)
        .await
        .expect("insert");
    let row = sqlx::query("SELECT id, body, amount_minor FROM smoke_round_trip WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *connection)
        .await
        .expect("select");
    assert_eq!(row.get::<Uuid, _>("id"), id);
    assert_eq!(row.get::<serde_json::Value, _>("body"), body);
    assert_eq!(row.get::<i64, _>("amount_minor"), 1_999);
}

#[tokio::test]
async fn unreachable_broker_fails_fast_and_names_the_broker() {
    let address = tests::closed_loopback_address();
    // The outer timeout only guards against a hang; the probe has its own bound.
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        tests::check_broker(&address, Duration::from_secs(3)),
    )
    .await
    .expect("the broker probe must give up on its own instead of hanging");
    let error = outcome.expect_err("nothing listens there");
    assert!(
        matches!(error, StackError::BrokerUnreachable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("Kafka broker"), "{message}");
    assert!(message.contains(&address), "{message}");
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The registry enforces the contract's rule: under BACKWARD compatibility (set by
/// `cargo xtask up`, as a Confluent registry has it by default) a change that old data
/// cannot be read with is refused, and a compatible one is accepted.
#[tokio::test]
async fn the_registry_refuses_a_backward_incompatible_schema_change() {
    let stack = Stack::from_env();
    let client = reqwest::Client::new();
    let subject = format!("{}-value", tests::unique_name("smoke-compat"));
    let register = |schema: &str| {
        client
            .post(format!(
                "{}/subjects/{subject}/versions",
                stack.registry_url
            ))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema }))
            .send()
    };
    let v1 = register(PING_SCHEMA)
        .await
        .unwrap_or_else(|error| panic!("registry at {} unreachable: {error}", stack.registry_url));
    assert_eq!(v1.status(), 200, "first version registered");

    // A new field without a default: records written with v1 cannot be read with it.
    let incompatible = PING_SCHEMA.replace(
        r#"{"name": "sequence", "type": "long"},"#,
        r#"{"name": "sequence", "type": "long"}, {"name": "region", "type": "string"},"#,
    );
    assert_ne!(incompatible, PING_SCHEMA);
    let refused = register(&incompatible).await.expect("registry answers");
    assert_eq!(refused.status(), 409, "incompatible change refused");

    let compatible = PING_SCHEMA.replace(
        r#"{"name": "sequence", "type": "long"},"#,
        r#"{"name": "sequence", "type": "long"}, {"name": "region", "type": ["null", "string"], "default": null},"#,
    );
    let accepted = register(&compatible).await.expect("registry answers");
    assert_eq!(accepted.status(), 200, "compatible change accepted");

    let versions: Vec<i64> = client
        .get(format!(
            "{}/subjects/{subject}/versions",
            stack.registry_url
        ))
        .send()
        .await
        .expect("registry answers")
        .json()
        .await
        .expect("version list");
    assert_eq!(
        versions.len(),
        2,
        "the refused change left no version behind"
    );
}

/// The replication factor the platform's processes create topics with is the one configured
/// (`KEEL_TOPIC_REPLICATION_FACTOR`): 1 makes a topic on the local stack's single node; 2
/// is refused by it, naming the topic, and makes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_the_configured_replication_factor() {
    let stack = Stack::from_env();
    let prefix = tests::unique_name("replication");
    let single = format!("{prefix}.single");
    schemas::topics::ensure_topics(&stack.kafka_brokers, &[single.as_str()], 2, 1)
        .await
        .expect("replication factor 1 on one broker");
    // Creating it again leaves it as it is.
    schemas::topics::ensure_topics(&stack.kafka_brokers, &[single.as_str()], 2, 1)
        .await
        .expect("an existing topic is fine");

    let replicated = format!("{prefix}.replicated");
    let error = schemas::topics::ensure_topics(&stack.kafka_brokers, &[replicated.as_str()], 2, 2)
        .await
        .expect_err("one broker cannot keep two replicas");
    assert_eq!(error.topic, replicated, "{error}");
    assert!(
        error.reason.to_lowercase().contains("replication"),
        "{error}"
    );

    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka_brokers)
        .create()
        .expect("metadata client");
    let metadata =
        tokio::task::block_in_place(|| consumer.fetch_metadata(None, Duration::from_secs(10)))
            .expect("metadata");
    let topic = |name: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| {
                t.partitions()
                    .iter()
                    .map(|p| p.replicas().len())
                    .collect::<Vec<_>>()
            })
    };
    assert_eq!(topic(&single), Some(vec![1, 1]));
    assert!(
        topic(&replicated).is_none_or(|partitions| partitions.is_empty()),
        "{replicated} must not exist"
    );
    tests::delete_topics_with_prefix(&stack.kafka_brokers, &prefix)
        .await
        .expect("delete the test's topics");
}
