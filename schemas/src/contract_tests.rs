//! The contract tests: every event type has a schema, every schema parses (alone and as a
//! list with the shared types), and every event variant round-trips through its schema.

use std::collections::BTreeSet;

use aggregates::customer::{CustomerEvent, SealedPersonalData};
use aggregates::inventory::InventoryEvent;
use aggregates::order::{OrderEvent, OrderLine};
use aggregates::payment::{DeclineReason, PaymentEvent};
use aggregates::{Currency, Money, Sku};
use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use chrono::DateTime;
use proptest::prelude::*;
use uuid::Uuid;

use crate::metadata::sample_metadata;
use crate::wire::{decode_frame, encode_frame};
use crate::*;

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::new("EUR").unwrap())
}

fn line(sku: &str, quantity: u32, price: i64) -> OrderLine {
    OrderLine {
        sku: Sku::new(sku).unwrap(),
        quantity,
        unit_price: eur(price),
    }
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// At least one instance of every variant; optional fields both absent and present.
fn order_samples() -> Vec<OrderEvent> {
    vec![
        OrderEvent::OrderCreated {
            customer_id: id(10),
            currency: Currency::new("JPY").unwrap(),
            customer_details: None,
        },
        OrderEvent::OrderCreated {
            customer_id: id(10),
            currency: Currency::new("EUR").unwrap(),
            customer_details: Some(SealedPersonalData {
                key_id: id(11),
                ciphertext: vec![0, 1, 2, 254, 255],
            }),
        },
        OrderEvent::OrderLineAdded {
            line: line("SKU-1", u32::MAX, i64::MAX),
        },
        OrderEvent::OrderLineQuantityChanged {
            sku: Sku::new("SKU-1").unwrap(),
            quantity: 3,
        },
        OrderEvent::OrderLineRemoved {
            sku: Sku::new("a.b_c-d").unwrap(),
        },
        OrderEvent::OrderPlaced {
            customer_id: id(10),
            lines: vec![line("SKU-1", 2, 500), line("SKU-2", 1, 0)],
            total: eur(1000),
            payment_method: Some("tok_visa".into()),
        },
        OrderEvent::OrderPlaced {
            customer_id: id(10),
            lines: vec![line("SKU-1", 1, 1)],
            total: eur(1),
            payment_method: None,
        },
        OrderEvent::OrderConfirmed {},
        OrderEvent::OrderCancelled {
            reason: "payment declined: insufficient funds ✗".into(),
        },
        OrderEvent::OrderShipped {
            tracking_reference: Some("1Z999AA10123456784".into()),
        },
        OrderEvent::OrderShipped {
            tracking_reference: None,
        },
        OrderEvent::OrderDelivered {},
    ]
}

fn payment_samples() -> Vec<PaymentEvent> {
    let mut samples = vec![
        PaymentEvent::PaymentAuthorized {
            payment_id: id(20),
            order_id: id(10),
            amount: eur(10_000),
            authorization_code: "sim_auth_x".into(),
        },
        PaymentEvent::PaymentCaptured {
            amount: eur(9_999),
            gateway_reference: "sim_capture_x".into(),
        },
        PaymentEvent::PaymentVoided {
            reason: "order cancelled".into(),
            gateway_reference: "sim_void_x".into(),
        },
        PaymentEvent::PaymentRefunded {
            refund_id: id(30),
            amount: eur(1),
            reason: "returned".into(),
            gateway_reference: "sim_refund_x".into(),
        },
    ];
    samples.extend(
        DeclineReason::ALL.map(|reason| PaymentEvent::PaymentDeclined {
            payment_id: id(20),
            order_id: id(10),
            amount: eur(10_000),
            reason,
        }),
    );
    samples
}

fn inventory_samples() -> Vec<InventoryEvent> {
    vec![
        InventoryEvent::StockAdded { quantity: 1 },
        InventoryEvent::StockAdjusted {
            delta: i64::MIN,
            reason: "cycle count".into(),
        },
        InventoryEvent::StockAdjusted {
            delta: 7,
            reason: "found".into(),
        },
        InventoryEvent::StockReserved {
            order_id: id(10),
            quantity: u32::MAX,
        },
        InventoryEvent::ReservationReleased {
            order_id: id(10),
            quantity: 2,
        },
        InventoryEvent::ReservationCommitted {
            order_id: id(10),
            quantity: 2,
        },
    ]
}

fn customer_samples() -> Vec<CustomerEvent> {
    vec![CustomerEvent::CustomerForgotten {}]
}

fn metadata_for(kind: AggregateKind, full: bool) -> EventMetadata {
    let metadata = EventMetadata {
        aggregate_type: kind.aggregate_type().into(),
        ..sample_metadata()
    };
    if full {
        metadata
    } else {
        EventMetadata {
            causation_id: None,
            idempotency_key: None,
            traceparent: None,
            ..metadata
        }
    }
}

/// domain event → Avro value → binary → Avro value → domain event, checking each step.
fn assert_round_trip<E: AvroEvent>(event: &E, metadata: &EventMetadata) {
    let schema = event.event_schema().unwrap();
    let value = event.to_avro(metadata).unwrap();
    assert!(
        value.validate(schema.schema()),
        "{} does not validate",
        schema.full_name()
    );

    let datum = GenericDatumWriter::builder(schema.schema())
        .build()
        .unwrap()
        .write_value_to_vec(value.clone())
        .unwrap();
    let decoded = GenericDatumReader::builder(schema.schema())
        .build()
        .unwrap()
        .read_value(&mut &datum[..])
        .unwrap();
    assert_eq!(decoded, value, "{}", schema.full_name());

    let (metadata_back, event_back) = E::from_avro(schema.event_type(), decoded).unwrap();
    assert_eq!(&event_back, event);
    assert_eq!(&metadata_back, metadata);

    // The public codec agrees with the step-by-step path.
    let encoded = encode_event(metadata, event).unwrap();
    assert_eq!(encoded.datum, datum);
    let (metadata_back, event_back) = decode_event::<E>(encoded.schema, &encoded.datum).unwrap();
    assert_eq!((&metadata_back, &event_back), (metadata, event));
}

fn covered_types<E: AvroEvent>(samples: &[E]) -> BTreeSet<String> {
    samples.iter().map(|e| e.event_type()).collect()
}

fn all_types(kind: AggregateKind) -> BTreeSet<String> {
    kind.event_types().iter().map(|t| (*t).to_owned()).collect()
}

#[test]
fn samples_cover_every_event_variant() {
    assert_eq!(
        covered_types(&order_samples()),
        all_types(AggregateKind::Order)
    );
    assert_eq!(
        covered_types(&payment_samples()),
        all_types(AggregateKind::Payment)
    );
    assert_eq!(
        covered_types(&inventory_samples()),
        all_types(AggregateKind::Inventory)
    );
    assert_eq!(
        covered_types(&customer_samples()),
        all_types(AggregateKind::Customer)
    );
}

#[test]
fn every_event_variant_round_trips_through_its_schema() {
    for full in [true, false] {
        for event in order_samples() {
            assert_round_trip(&event, &metadata_for(AggregateKind::Order, full));
        }
        for event in payment_samples() {
            assert_round_trip(&event, &metadata_for(AggregateKind::Payment, full));
        }
        for event in inventory_samples() {
            assert_round_trip(&event, &metadata_for(AggregateKind::Inventory, full));
        }
        for event in customer_samples() {
            assert_round_trip(&event, &metadata_for(AggregateKind::Customer, full));
        }
    }
}

#[test]
fn every_event_type_of_every_aggregate_has_a_schema() {
    let catalog = catalog();
    let mut expected = BTreeSet::new();
    for kind in AggregateKind::ALL {
        for event_type in kind.event_types() {
            let schema = catalog
                .by_event_type(event_type)
                .unwrap_or_else(|| panic!("{kind} event {event_type} has no Avro schema"));
            assert_eq!(schema.aggregate(), kind);
            assert_eq!(
                schema.full_name(),
                format!("{}.{event_type}", kind.avro_namespace())
            );
            assert_eq!(
                schema.file(),
                format!("avro/{}/{event_type}.avsc", kind.topic_suffix())
            );
            assert!(expected.insert(*event_type), "{event_type} is not unique");
        }
    }
    let registered: BTreeSet<&str> = catalog.events().iter().map(|s| s.event_type()).collect();
    assert_eq!(registered, expected, "a schema has no domain event");
}

#[test]
fn every_avsc_file_on_disk_is_in_the_catalog() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut on_disk = BTreeSet::new();
    for dir in ["common", "order", "payment", "inventory", "customer"] {
        for entry in std::fs::read_dir(root.join("avro").join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            on_disk.insert(format!("avro/{dir}/{name}"));
        }
    }
    let catalog = catalog();
    let embedded: BTreeSet<String> = catalog
        .common()
        .iter()
        .map(|s| s.file().to_owned())
        .chain(catalog.events().iter().map(|s| s.file().to_owned()))
        .collect();
    assert_eq!(on_disk, embedded);
}

#[test]
fn every_self_contained_schema_parses_standalone() {
    for schema in catalog().events() {
        let parsed = Schema::parse_str(schema.schema_json())
            .unwrap_or_else(|e| panic!("{}: {e}", schema.file()));
        assert_eq!(parsed.name().unwrap().fullname(None), schema.full_name());
        // Each shared type is defined exactly once: later uses are references.
        for common in catalog().common() {
            let short = common.full_name().rsplit('.').next().unwrap();
            let definitions = schema
                .schema_json()
                .matches(&format!("\"name\":\"{short}\""))
                .count();
            assert!(definitions <= 1, "{} defines {short} twice", schema.file());
        }
    }
}

#[test]
fn common_and_event_sources_parse_as_one_list() {
    let catalog = catalog();
    let sources: Vec<&str> = catalog
        .common()
        .iter()
        .map(|s| s.source())
        .chain(catalog.events().iter().map(|s| s.source()))
        .collect();
    let schemas = Schema::parse_list(&sources).unwrap();
    assert_eq!(
        schemas.len(),
        catalog.common().len() + catalog.events().len()
    );
}

#[test]
fn datum_written_with_the_inlined_schema_reads_with_the_referencing_schemas() {
    let catalog = catalog();
    let sources: Vec<&str> = catalog
        .common()
        .iter()
        .map(|s| s.source())
        .chain(catalog.events().iter().map(|s| s.source()))
        .collect();
    let list = Schema::parse_list(&sources).unwrap();
    let samples = order_samples();
    let event = samples
        .iter()
        .find(|e| e.event_type_name() == "OrderPlaced")
        .expect("an OrderPlaced sample");
    let metadata = metadata_for(AggregateKind::Order, true);
    let encoded = encode_event(&metadata, event).unwrap();
    let index = catalog.common().len()
        + catalog
            .events()
            .iter()
            .position(|s| s.full_name() == "io.keel.order.OrderPlaced")
            .unwrap();
    let value = GenericDatumReader::builder(&list[index])
        .writer_schemata(list.iter().collect())
        .unwrap()
        .build()
        .unwrap()
        .read_value(&mut &encoded.datum[..])
        .unwrap();
    assert_eq!(value, event.to_avro(&metadata).unwrap());
}

#[test]
fn optional_fields_default_to_null_for_backward_compatibility() {
    for schema in catalog().events() {
        let json: serde_json::Value = serde_json::from_str(schema.schema_json()).unwrap();
        let mut stack = vec![&json];
        while let Some(node) = stack.pop() {
            if let Some(fields) = node.get("fields").and_then(|f| f.as_array()) {
                for field in fields {
                    if let Some(union) = field["type"].as_array()
                        && union.first() == Some(&serde_json::json!("null"))
                    {
                        assert_eq!(
                            field.get("default"),
                            Some(&serde_json::Value::Null),
                            "{}: optional field {} lacks default null",
                            schema.file(),
                            field["name"]
                        );
                    }
                    stack.push(&field["type"]);
                }
            }
            if let Some(items) = node.get("items") {
                stack.push(items);
            }
        }
    }
}

#[test]
fn an_older_writer_without_an_optional_field_is_read_by_the_current_schema() {
    // OrderShipped as it would have been before `tracking_reference` existed.
    let reader = catalog().by_event_type("OrderShipped").unwrap();
    let mut json: serde_json::Value = serde_json::from_str(reader.schema_json()).unwrap();
    json["fields"].as_array_mut().unwrap().truncate(1);
    let writer = Schema::parse(&json).unwrap();
    SchemaCompatibility::can_read(&writer, reader.schema()).unwrap();

    let metadata = metadata_for(AggregateKind::Order, true);
    let metadata_value = OrderEvent::OrderDelivered {}.to_avro(&metadata).unwrap();
    let datum = GenericDatumWriter::builder(&writer)
        .build()
        .unwrap()
        .write_value_to_vec(metadata_value)
        .unwrap();
    let (metadata_back, event) =
        decode_event_with_writer_schema::<OrderEvent>(&writer, reader, &datum).unwrap();
    assert_eq!(metadata_back, metadata);
    assert_eq!(
        event,
        OrderEvent::OrderShipped {
            tracking_reference: None
        }
    );
}

/// `event` as a writer from before `field` existed encoded it (the field was appended last,
/// so the old writer schema is the current one without it), read with the current schema.
/// Also checks that the current schema can read the old one.
fn read_as_written_before(field: &str, event: &OrderEvent) -> OrderEvent {
    let reader = catalog().by_event_type(event.event_type_name()).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(reader.schema_json()).unwrap();
    let fields = json["fields"].as_array_mut().unwrap();
    assert_eq!(fields.last().unwrap()["name"], field);
    fields.pop();
    let writer = Schema::parse(&json).unwrap();
    SchemaCompatibility::can_read(&writer, reader.schema()).unwrap();

    let metadata = metadata_for(AggregateKind::Order, true);
    let apache_avro::types::Value::Record(mut old_fields) = event.to_avro(&metadata).unwrap()
    else {
        panic!("a record")
    };
    old_fields.pop();
    let datum = GenericDatumWriter::builder(&writer)
        .build()
        .unwrap()
        .write_value_to_vec(apache_avro::types::Value::Record(old_fields))
        .unwrap();
    let (_, decoded) =
        decode_event_with_writer_schema::<OrderEvent>(&writer, reader, &datum).unwrap();
    decoded
}

#[test]
fn an_order_placed_written_before_payment_method_existed_reads_as_none() {
    let event = OrderEvent::OrderPlaced {
        customer_id: id(10),
        lines: vec![line("SKU-1", 2, 500)],
        total: eur(1000),
        payment_method: Some("dropped by the old writer".into()),
    };
    assert_eq!(
        read_as_written_before("payment_method", &event),
        OrderEvent::OrderPlaced {
            customer_id: id(10),
            lines: vec![line("SKU-1", 2, 500)],
            total: eur(1000),
            payment_method: None,
        }
    );
}

#[test]
fn an_order_created_written_before_customer_details_existed_reads_as_none() {
    let event = OrderEvent::OrderCreated {
        customer_id: id(10),
        currency: Currency::new("EUR").unwrap(),
        customer_details: None,
    };
    assert_eq!(read_as_written_before("customer_details", &event), event);
}

#[test]
fn confluent_frame_carries_an_encoded_event() {
    let metadata = metadata_for(AggregateKind::Payment, true);
    let event = payment_samples().remove(0);
    let encoded = encode_event(&metadata, &event).unwrap();
    let frame = encode_frame(42, &encoded.datum);
    let (schema_id, datum) = decode_frame(&frame).unwrap();
    assert_eq!(schema_id, 42);
    let (_, back) = decode_event::<PaymentEvent>(encoded.schema, datum).unwrap();
    assert_eq!(back, event);
}

#[test]
fn topics_subjects_and_aggregate_types() {
    use aggregates::inventory::InventoryItem;
    use aggregates::order::Order;
    use aggregates::payment::Payment;
    use cqrs_es::Aggregate;

    let topics: Vec<_> = AggregateKind::ALL.map(AggregateKind::topic_suffix).into();
    assert_eq!(topics, ["order", "payment", "inventory", "customer"]);
    assert_eq!(AggregateKind::Order.aggregate_type(), Order::TYPE);
    assert_eq!(AggregateKind::Payment.aggregate_type(), Payment::TYPE);
    assert_eq!(
        AggregateKind::Inventory.aggregate_type(),
        InventoryItem::TYPE
    );
    for kind in AggregateKind::ALL {
        assert_eq!(
            AggregateKind::from_aggregate_type(kind.aggregate_type()),
            Some(kind)
        );
    }
    assert_eq!(
        AggregateKind::Customer.aggregate_type(),
        aggregates::customer::Customer::TYPE
    );
    assert_eq!(AggregateKind::from_aggregate_type("shipment"), None);

    let schema = catalog()
        .by_full_name("io.keel.inventory.StockReserved")
        .unwrap();
    assert_eq!(
        schema.subject("keel.inventory"),
        "keel.inventory-io.keel.inventory.StockReserved"
    );
    assert_eq!(
        subject("dev.order", "io.keel.order.OrderPlaced"),
        "dev.order-io.keel.order.OrderPlaced"
    );
    assert_eq!(SCHEMA_VERSION, "1");
}

#[test]
fn metadata_of_another_aggregate_is_rejected() {
    let event = OrderEvent::OrderConfirmed {};
    let wrong = metadata_for(AggregateKind::Payment, true);
    assert!(matches!(
        encode_event(&wrong, &event),
        Err(MappingError::AggregateMismatch {
            expected: "order",
            ..
        })
    ));
}

#[test]
fn decoding_failures_are_typed_errors() {
    let metadata = metadata_for(AggregateKind::Order, true);
    let encoded = encode_event(&metadata, &order_samples()[0]).unwrap();

    // Another aggregate's schema.
    assert!(matches!(
        decode_event::<PaymentEvent>(encoded.schema, &encoded.datum),
        Err(MappingError::UnknownEventType { .. })
    ));
    // Truncated and padded datums.
    let truncated = &encoded.datum[..encoded.datum.len() - 3];
    assert!(decode_event::<OrderEvent>(encoded.schema, truncated).is_err());
    let mut padded = encoded.datum.clone();
    padded.push(0);
    assert!(matches!(
        decode_event::<OrderEvent>(encoded.schema, &padded),
        Err(MappingError::InvalidValue { .. })
    ));
    // A record that breaks a domain rule: lowercase currency.
    let mut value = order_samples()[0].to_avro(&metadata).unwrap();
    if let apache_avro::types::Value::Record(fields) = &mut value {
        fields[2].1 = apache_avro::types::Value::String("eur".into());
    }
    assert!(matches!(
        OrderEvent::from_avro("OrderCreated", value.clone()),
        Err(MappingError::InvalidValue { .. })
    ));
    // A name that is no event type of this aggregate.
    assert!(matches!(
        OrderEvent::from_avro("StockAdded", value),
        Err(MappingError::UnknownEventType { .. })
    ));
}

#[test]
fn catalog_loads_fresh_and_matches_the_shared_instance() {
    let fresh = SchemaCatalog::load().unwrap();
    assert_eq!(fresh.events().len(), catalog().events().len());
    for (a, b) in fresh.events().iter().zip(catalog().events()) {
        assert_eq!(a.schema_json(), b.schema_json());
    }
    assert_eq!(catalog().for_aggregate(AggregateKind::Order).count(), 9);
}

fn arbitrary_metadata() -> impl Strategy<Value = EventMetadata> {
    (
        any::<u128>(),
        "[a-z0-9-]{1,40}",
        any::<u32>(),
        any::<u128>(),
        proptest::option::of(any::<u128>()),
        ".{0,20}",
        // Any instant chrono can represent at microsecond precision around now ± 100 years.
        -3_155_760_000_000_000i64..=3_155_760_000_000_000 + 1_700_000_000_000_000,
        proptest::option::of(".{0,20}"),
        proptest::option::of("[0-9a-f-]{0,55}"),
    )
        .prop_map(
            |(event, aggregate_id, sequence, correlation, causation, actor, micros, key, trace)| {
                EventMetadata {
                    event_id: Uuid::from_u128(event),
                    aggregate_type: "inventory".into(),
                    aggregate_id,
                    sequence: u64::from(sequence),
                    correlation_id: Uuid::from_u128(correlation),
                    causation_id: causation.map(Uuid::from_u128),
                    actor,
                    occurred_at: DateTime::from_timestamp_micros(micros).unwrap(),
                    idempotency_key: key,
                    traceparent: trace,
                }
            },
        )
}

fn arbitrary_inventory_event() -> impl Strategy<Value = InventoryEvent> {
    prop_oneof![
        any::<u32>().prop_map(|quantity| InventoryEvent::StockAdded { quantity }),
        (any::<i64>(), ".{0,30}")
            .prop_map(|(delta, reason)| InventoryEvent::StockAdjusted { delta, reason }),
        (any::<u128>(), any::<u32>()).prop_map(|(o, quantity)| InventoryEvent::StockReserved {
            order_id: Uuid::from_u128(o),
            quantity
        }),
        (any::<u128>(), any::<u32>()).prop_map(|(o, quantity)| {
            InventoryEvent::ReservationReleased {
                order_id: Uuid::from_u128(o),
                quantity,
            }
        }),
        (any::<u128>(), any::<u32>()).prop_map(|(o, quantity)| {
            InventoryEvent::ReservationCommitted {
                order_id: Uuid::from_u128(o),
                quantity,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_events_and_metadata_round_trip(
        metadata in arbitrary_metadata(),
        event in arbitrary_inventory_event(),
        amount in any::<i64>(),
        reason in ".{0,30}",
    ) {
        assert_round_trip(&event, &metadata);
        let payment = PaymentEvent::PaymentCaptured { amount: eur(amount), gateway_reference: reason };
        assert_round_trip(&payment, &EventMetadata { aggregate_type: "payment".into(), ..metadata });
    }
}
