//! Given/when/then tests for every order command outcome (including the full status
//! machine), and property tests that totals always equal the sum of the lines.

use cqrs_es::Aggregate;
use cqrs_es::test::TestFramework;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::customer::{CustomerDetails, NoVault, PersonalDataVault};
use crate::test_support::{XorVault, details, run, runtime, vault};
use crate::{Currency, DomainError, ErrorCategory, Money, Sku};

type OrderTest = TestFramework<Order>;

fn eur() -> Currency {
    Currency::new("EUR").unwrap()
}

fn usd() -> Currency {
    Currency::new("USD").unwrap()
}

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn customer() -> Uuid {
    Uuid::from_u128(0xC0FFEE)
}

fn line(s: &str, quantity: u32, price: i64) -> OrderLine {
    OrderLine {
        sku: sku(s),
        quantity,
        unit_price: Money::new(price, eur()),
    }
}

fn created() -> OrderEvent {
    OrderEvent::OrderCreated {
        customer_id: customer(),
        currency: eur(),
        customer_details: None,
    }
}

fn line_added(s: &str, quantity: u32, price: i64) -> OrderEvent {
    OrderEvent::OrderLineAdded {
        line: line(s, quantity, price),
    }
}

fn placed(lines: Vec<OrderLine>, total: i64) -> OrderEvent {
    OrderEvent::OrderPlaced {
        customer_id: customer(),
        lines,
        total: Money::new(total, eur()),
        payment_method: None,
    }
}

/// A history ending in `status`, with one line `SKU-1` × 2 at 500.
fn history(status: OrderStatus) -> Vec<OrderEvent> {
    let mut events = vec![created(), line_added("SKU-1", 2, 500)];
    let place = placed(vec![line("SKU-1", 2, 500)], 1000);
    let tail: Vec<OrderEvent> = match status {
        OrderStatus::Draft => vec![],
        OrderStatus::Placed => vec![place],
        OrderStatus::Confirmed => vec![place, OrderEvent::OrderConfirmed {}],
        OrderStatus::Shipped => vec![
            place,
            OrderEvent::OrderConfirmed {},
            OrderEvent::OrderShipped {
                tracking_reference: None,
            },
        ],
        OrderStatus::Delivered => vec![
            place,
            OrderEvent::OrderConfirmed {},
            OrderEvent::OrderShipped {
                tracking_reference: None,
            },
            OrderEvent::OrderDelivered {},
        ],
        OrderStatus::Cancelled => vec![OrderEvent::OrderCancelled {
            reason: "changed my mind".into(),
        }],
    };
    events.extend(tail);
    events
}

/// A command for `action` that succeeds on the [`history`] of any status allowing it.
fn command_for(action: OrderAction) -> OrderCommand {
    match action {
        OrderAction::AddLine => AddOrderLine {
            sku: sku("SKU-2"),
            quantity: 1,
            unit_price: Money::new(250, eur()),
        }
        .into(),
        OrderAction::ChangeLineQuantity => ChangeOrderLineQuantity {
            sku: sku("SKU-1"),
            quantity: 3,
        }
        .into(),
        OrderAction::RemoveLine => RemoveOrderLine { sku: sku("SKU-1") }.into(),
        OrderAction::Place => PlaceOrder::default().into(),
        OrderAction::Confirm => ConfirmOrder {}.into(),
        OrderAction::Cancel => CancelOrder {
            reason: "customer request".into(),
        }
        .into(),
        OrderAction::Ship => ShipOrder {
            tracking_reference: Some("1Z999".into()),
        }
        .into(),
        OrderAction::Deliver => DeliverOrder {}.into(),
    }
}

async fn expect_events(
    given: Vec<OrderEvent>,
    command: impl Into<OrderCommand>,
    expected: Vec<OrderEvent>,
) {
    OrderTest::with(vault())
        .given(given)
        .when_async(command.into())
        .await
        .then_expect_events(expected);
}

async fn expect_error(
    given: Vec<OrderEvent>,
    command: impl Into<OrderCommand>,
    expected: OrderError,
) {
    OrderTest::with(vault())
        .given(given)
        .when_async(command.into())
        .await
        .then_expect_error(expected);
}

async fn expect_invalid_transition(status: OrderStatus, action: OrderAction) {
    expect_error(
        history(status),
        command_for(action),
        OrderError::InvalidTransition { action, status },
    )
    .await;
}

// --- CreateOrder ---

#[tokio::test]
async fn create_order_opens_a_draft() {
    expect_events(
        vec![],
        CreateOrder {
            customer_id: customer(),
            currency: eur(),
            customer_details: None,
        },
        vec![created()],
    )
    .await;
}

#[tokio::test]
async fn create_order_rejects_nil_customer() {
    expect_error(
        vec![],
        CreateOrder {
            customer_id: Uuid::nil(),
            currency: eur(),
            customer_details: None,
        },
        OrderError::InvalidCustomerId,
    )
    .await;
}

#[tokio::test]
async fn create_order_rejects_existing_order() {
    expect_error(
        vec![created()],
        CreateOrder {
            customer_id: customer(),
            currency: eur(),
            customer_details: None,
        },
        OrderError::AlreadyExists,
    )
    .await;
}

fn create_with(details: CustomerDetails) -> CreateOrder {
    CreateOrder {
        customer_id: customer(),
        currency: eur(),
        customer_details: Some(details),
    }
}

#[tokio::test]
async fn create_order_seals_the_customer_details() {
    let sealed = XorVault::sealed(customer(), &details());
    assert!(
        !String::from_utf8_lossy(&sealed.ciphertext).contains("ada@example.com"),
        "the stand-in vault must not keep plaintext either"
    );
    expect_events(
        vec![],
        create_with(details()),
        vec![OrderEvent::OrderCreated {
            customer_id: customer(),
            currency: eur(),
            customer_details: Some(sealed),
        }],
    )
    .await;
}

#[tokio::test]
async fn create_order_rejects_malformed_customer_details() {
    let mut bad = details();
    bad.email = "ada at example.com".into();
    let result = OrderTest::with(vault())
        .given_no_previous_events()
        .when_async(create_with(bad).into())
        .await
        .inspect_result();
    let error = result.unwrap_err();
    assert_eq!(error.code(), "order.invalid_customer_details");
    assert_eq!(error.category(), ErrorCategory::Validation);
    assert_eq!(
        error.to_string(),
        "invalid customer details: customer_details.email: must look like name@example.com"
    );
}

#[tokio::test]
async fn create_order_without_a_vault_refuses_personal_data_but_not_orders() {
    let no_vault: std::sync::Arc<dyn PersonalDataVault> = std::sync::Arc::new(NoVault);
    OrderTest::with(no_vault.clone())
        .given_no_previous_events()
        .when_async(create_with(details()).into())
        .await
        .then_expect_error(OrderError::PersonalDataUnavailable);
    assert_eq!(
        OrderError::PersonalDataUnavailable.category(),
        ErrorCategory::Transient
    );
    OrderTest::with(no_vault)
        .given_no_previous_events()
        .when_async(
            CreateOrder {
                customer_id: customer(),
                currency: eur(),
                customer_details: None,
            }
            .into(),
        )
        .await
        .then_expect_events(vec![created()]);
}

#[tokio::test]
async fn an_existing_order_is_not_sealed_again() {
    expect_error(
        vec![created()],
        create_with(details()),
        OrderError::AlreadyExists,
    )
    .await;
}

// --- AddOrderLine ---

fn add(s: &str, quantity: u32, price: Money) -> AddOrderLine {
    AddOrderLine {
        sku: sku(s),
        quantity,
        unit_price: price,
    }
}

#[tokio::test]
async fn add_line_to_draft() {
    expect_events(
        vec![created()],
        add("SKU-1", 2, Money::new(500, eur())),
        vec![line_added("SKU-1", 2, 500)],
    )
    .await;
}

#[tokio::test]
async fn add_free_line_to_draft() {
    expect_events(
        vec![created()],
        add("GIFT", 1, Money::zero(eur())),
        vec![line_added("GIFT", 1, 0)],
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_zero_quantity() {
    expect_error(
        vec![created()],
        add("SKU-1", 0, Money::new(500, eur())),
        OrderError::InvalidQuantity,
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_negative_price() {
    expect_error(
        vec![created()],
        add("SKU-1", 1, Money::new(-1, eur())),
        OrderError::InvalidUnitPrice,
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_other_currency() {
    expect_error(
        vec![created()],
        add("SKU-1", 1, Money::new(500, usd())),
        OrderError::CurrencyMismatch {
            expected: eur(),
            actual: usd(),
        },
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_duplicate_sku() {
    expect_error(
        vec![created(), line_added("SKU-1", 2, 500)],
        add("SKU-1", 1, Money::new(500, eur())),
        OrderError::DuplicateLine { sku: sku("SKU-1") },
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_line_total_overflow() {
    expect_error(
        vec![created()],
        add("SKU-1", 2, Money::new(i64::MAX / 2 + 1, eur())),
        OrderError::AmountOverflow,
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_order_total_overflow() {
    expect_error(
        vec![created(), line_added("SKU-1", 1, i64::MAX)],
        add("SKU-2", 1, Money::new(1, eur())),
        OrderError::AmountOverflow,
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_full_order() {
    let mut given = vec![created()];
    given.extend((0..MAX_ORDER_LINES).map(|i| line_added(&format!("SKU-{i}"), 1, 1)));
    expect_error(
        given,
        add("ONE-MORE", 1, Money::new(1, eur())),
        OrderError::TooManyLines {
            max: MAX_ORDER_LINES,
        },
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_unknown_order() {
    expect_error(
        vec![],
        add("SKU-1", 1, Money::new(1, eur())),
        OrderError::NotFound,
    )
    .await;
}

#[tokio::test]
async fn add_line_rejects_placed_order() {
    expect_invalid_transition(OrderStatus::Placed, OrderAction::AddLine).await;
}

// --- ChangeOrderLineQuantity ---

#[tokio::test]
async fn change_line_quantity() {
    expect_events(
        history(OrderStatus::Draft),
        ChangeOrderLineQuantity {
            sku: sku("SKU-1"),
            quantity: 5,
        },
        vec![OrderEvent::OrderLineQuantityChanged {
            sku: sku("SKU-1"),
            quantity: 5,
        }],
    )
    .await;
}

#[tokio::test]
async fn change_line_quantity_to_same_value_is_a_no_op() {
    expect_events(
        history(OrderStatus::Draft),
        ChangeOrderLineQuantity {
            sku: sku("SKU-1"),
            quantity: 2,
        },
        vec![],
    )
    .await;
}

#[tokio::test]
async fn change_line_quantity_rejects_zero() {
    expect_error(
        history(OrderStatus::Draft),
        ChangeOrderLineQuantity {
            sku: sku("SKU-1"),
            quantity: 0,
        },
        OrderError::InvalidQuantity,
    )
    .await;
}

#[tokio::test]
async fn change_line_quantity_rejects_missing_line() {
    expect_error(
        history(OrderStatus::Draft),
        ChangeOrderLineQuantity {
            sku: sku("SKU-9"),
            quantity: 1,
        },
        OrderError::LineNotFound { sku: sku("SKU-9") },
    )
    .await;
}

#[tokio::test]
async fn change_line_quantity_rejects_overflow() {
    expect_error(
        vec![created(), line_added("SKU-1", 1, i64::MAX / 2)],
        ChangeOrderLineQuantity {
            sku: sku("SKU-1"),
            quantity: 3,
        },
        OrderError::AmountOverflow,
    )
    .await;
}

#[tokio::test]
async fn change_line_quantity_rejects_unknown_order() {
    expect_error(
        vec![],
        ChangeOrderLineQuantity {
            sku: sku("SKU-1"),
            quantity: 1,
        },
        OrderError::NotFound,
    )
    .await;
}

#[tokio::test]
async fn change_line_quantity_rejects_confirmed_order() {
    expect_invalid_transition(OrderStatus::Confirmed, OrderAction::ChangeLineQuantity).await;
}

// --- RemoveOrderLine ---

#[tokio::test]
async fn remove_line() {
    expect_events(
        history(OrderStatus::Draft),
        RemoveOrderLine { sku: sku("SKU-1") },
        vec![OrderEvent::OrderLineRemoved { sku: sku("SKU-1") }],
    )
    .await;
}

#[tokio::test]
async fn remove_line_rejects_missing_line() {
    expect_error(
        history(OrderStatus::Draft),
        RemoveOrderLine { sku: sku("SKU-9") },
        OrderError::LineNotFound { sku: sku("SKU-9") },
    )
    .await;
}

#[tokio::test]
async fn remove_line_rejects_unknown_order() {
    expect_error(
        vec![],
        RemoveOrderLine { sku: sku("SKU-1") },
        OrderError::NotFound,
    )
    .await;
}

#[tokio::test]
async fn remove_line_rejects_shipped_order() {
    expect_invalid_transition(OrderStatus::Shipped, OrderAction::RemoveLine).await;
}

// --- PlaceOrder ---

#[tokio::test]
async fn place_order_freezes_lines_and_total() {
    expect_events(
        vec![
            created(),
            line_added("SKU-1", 2, 500),
            line_added("SKU-2", 3, 199),
            OrderEvent::OrderLineQuantityChanged {
                sku: sku("SKU-1"),
                quantity: 4,
            },
        ],
        PlaceOrder::default(),
        vec![placed(
            vec![line("SKU-1", 4, 500), line("SKU-2", 3, 199)],
            2597,
        )],
    )
    .await;
}

#[tokio::test]
async fn place_order_carries_the_payment_method() {
    let mut expected = placed(vec![line("SKU-1", 2, 500)], 1000);
    if let OrderEvent::OrderPlaced { payment_method, .. } = &mut expected {
        *payment_method = Some("tok_visa".into());
    }
    expect_events(
        vec![created(), line_added("SKU-1", 2, 500)],
        PlaceOrder {
            payment_method: Some("tok_visa".into()),
        },
        vec![expected],
    )
    .await;
}

#[tokio::test]
async fn place_order_rejects_invalid_payment_method() {
    for token in ["", "   ", "tok\nvisa", &"x".repeat(201)] {
        expect_error(
            vec![created(), line_added("SKU-1", 2, 500)],
            PlaceOrder {
                payment_method: Some(token.to_owned()),
            },
            OrderError::InvalidPaymentMethod,
        )
        .await;
    }
}

#[test]
fn order_placed_without_payment_method_still_deserializes() {
    let stored = r#"{"OrderPlaced":{"customer_id":"00000000-0000-0000-0000-000000c0ffee","lines":[],"total":{"amount_minor":0,"currency":"EUR"}}}"#;
    let event: OrderEvent = serde_json::from_str(stored).unwrap();
    assert_eq!(event, placed(vec![], 0));
}

#[tokio::test]
async fn place_order_rejects_empty_order() {
    expect_error(
        vec![created()],
        PlaceOrder::default(),
        OrderError::EmptyOrder,
    )
    .await;
}

#[tokio::test]
async fn place_order_rejects_emptied_order() {
    expect_error(
        vec![
            created(),
            line_added("SKU-1", 2, 500),
            OrderEvent::OrderLineRemoved { sku: sku("SKU-1") },
        ],
        PlaceOrder::default(),
        OrderError::EmptyOrder,
    )
    .await;
}

#[tokio::test]
async fn place_order_rejects_unknown_order() {
    expect_error(vec![], PlaceOrder::default(), OrderError::NotFound).await;
}

#[tokio::test]
async fn place_order_rejects_placed_order() {
    expect_invalid_transition(OrderStatus::Placed, OrderAction::Place).await;
}

// --- ConfirmOrder ---

#[tokio::test]
async fn confirm_placed_order() {
    expect_events(
        history(OrderStatus::Placed),
        ConfirmOrder {},
        vec![OrderEvent::OrderConfirmed {}],
    )
    .await;
}

#[tokio::test]
async fn confirm_rejects_draft() {
    expect_invalid_transition(OrderStatus::Draft, OrderAction::Confirm).await;
}

#[tokio::test]
async fn confirm_rejects_unknown_order() {
    expect_error(vec![], ConfirmOrder {}, OrderError::NotFound).await;
}

// --- CancelOrder ---

#[tokio::test]
async fn cancel_draft_placed_or_confirmed_order() {
    for status in [
        OrderStatus::Draft,
        OrderStatus::Placed,
        OrderStatus::Confirmed,
    ] {
        expect_events(
            history(status),
            CancelOrder {
                reason: "out of stock".into(),
            },
            vec![OrderEvent::OrderCancelled {
                reason: "out of stock".into(),
            }],
        )
        .await;
    }
}

#[tokio::test]
async fn cancel_rejects_blank_reason() {
    expect_error(
        history(OrderStatus::Placed),
        CancelOrder { reason: "".into() },
        OrderError::InvalidReason,
    )
    .await;
}

#[tokio::test]
async fn cancel_rejects_shipped_delivered_or_cancelled_order() {
    for status in [
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ] {
        expect_invalid_transition(status, OrderAction::Cancel).await;
    }
}

#[tokio::test]
async fn cancel_rejects_unknown_order() {
    expect_error(
        vec![],
        CancelOrder { reason: "x".into() },
        OrderError::NotFound,
    )
    .await;
}

// --- ShipOrder ---

#[tokio::test]
async fn ship_confirmed_order_with_tracking() {
    expect_events(
        history(OrderStatus::Confirmed),
        ShipOrder {
            tracking_reference: Some("1Z999".into()),
        },
        vec![OrderEvent::OrderShipped {
            tracking_reference: Some("1Z999".into()),
        }],
    )
    .await;
}

#[tokio::test]
async fn ship_confirmed_order_without_tracking() {
    expect_events(
        history(OrderStatus::Confirmed),
        ShipOrder::default(),
        vec![OrderEvent::OrderShipped {
            tracking_reference: None,
        }],
    )
    .await;
}

#[tokio::test]
async fn ship_rejects_invalid_tracking_reference() {
    for bad in ["", "  ", "line\nbreak"] {
        expect_error(
            history(OrderStatus::Confirmed),
            ShipOrder {
                tracking_reference: Some(bad.into()),
            },
            OrderError::InvalidTrackingReference,
        )
        .await;
    }
}

#[tokio::test]
async fn ship_rejects_order_before_confirmation() {
    expect_invalid_transition(OrderStatus::Placed, OrderAction::Ship).await;
}

#[tokio::test]
async fn ship_rejects_unknown_order() {
    expect_error(vec![], ShipOrder::default(), OrderError::NotFound).await;
}

// --- DeliverOrder ---

#[tokio::test]
async fn deliver_shipped_order() {
    expect_events(
        history(OrderStatus::Shipped),
        DeliverOrder {},
        vec![OrderEvent::OrderDelivered {}],
    )
    .await;
}

#[tokio::test]
async fn deliver_rejects_confirmed_order() {
    expect_invalid_transition(OrderStatus::Confirmed, OrderAction::Deliver).await;
}

#[tokio::test]
async fn deliver_rejects_unknown_order() {
    expect_error(vec![], DeliverOrder {}, OrderError::NotFound).await;
}

// --- The whole status machine ---

#[tokio::test]
async fn every_status_and_action_follows_the_status_machine() {
    for status in OrderStatus::ALL {
        for action in OrderAction::ALL {
            let outcome = OrderTest::with(vault())
                .given(history(status))
                .when_async(command_for(action))
                .await
                .inspect_result();
            if status.allows(action) {
                assert!(outcome.is_ok(), "{action} from {status}: {outcome:?}");
            } else {
                assert_eq!(
                    outcome,
                    Err(OrderError::InvalidTransition { action, status }),
                    "{action} from {status}"
                );
            }
        }
    }
}

#[test]
fn status_machine_table() {
    use OrderAction as A;
    let allowed: Vec<(OrderStatus, Vec<OrderAction>)> = OrderStatus::ALL
        .into_iter()
        .map(|s| {
            (
                s,
                OrderAction::ALL
                    .into_iter()
                    .filter(|a| s.allows(*a))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        allowed,
        vec![
            (
                OrderStatus::Draft,
                vec![
                    A::AddLine,
                    A::ChangeLineQuantity,
                    A::RemoveLine,
                    A::Place,
                    A::Cancel
                ]
            ),
            (OrderStatus::Placed, vec![A::Confirm, A::Cancel]),
            (OrderStatus::Confirmed, vec![A::Cancel, A::Ship]),
            (OrderStatus::Shipped, vec![A::Deliver]),
            (OrderStatus::Delivered, vec![]),
            (OrderStatus::Cancelled, vec![]),
        ]
    );
}

// --- State, contracts, codes ---

#[test]
fn apply_tracks_status_lines_and_total() {
    let mut order = Order::default();
    assert_eq!((order.status(), order.total()), (None, None));
    for event in history(OrderStatus::Confirmed) {
        order.apply(event);
    }
    assert_eq!(order.status(), Some(OrderStatus::Confirmed));
    assert_eq!(order.customer_id(), Some(customer()));
    assert_eq!(order.currency(), Some(eur()));
    assert_eq!(order.lines(), [line("SKU-1", 2, 500)]);
    assert_eq!(order.total(), Some(Money::new(1000, eur())));
}

#[test]
fn commands_reject_unknown_fields_and_invalid_values() {
    let command: OrderCommand = serde_json::from_str(
        r#"{"AddOrderLine":{"sku":"A-1","quantity":2,"unit_price":{"amount_minor":150,"currency":"EUR"}}}"#,
    )
    .unwrap();
    assert_eq!(command, add("A-1", 2, Money::new(150, eur())).into());
    assert!(serde_json::from_str::<PlaceOrder>(r#"{"now":true}"#).is_err());
    assert!(serde_json::from_str::<ShipOrder>(r#"{}"#).is_ok());
    assert!(
        serde_json::from_str::<CreateOrder>(
            r#"{"customer_id":"00000000-0000-0000-0000-000000000001","currency":"eur"}"#
        )
        .is_err()
    );
    assert!(
        serde_json::from_str::<AddOrderLine>(
            r#"{"sku":"A 1","quantity":2,"unit_price":{"amount_minor":1,"currency":"EUR"}}"#
        )
        .is_err()
    );
}

#[test]
fn event_types_are_the_variant_names() {
    assert_eq!(
        OrderEvent::EVENT_TYPES,
        [
            "OrderCreated",
            "OrderLineAdded",
            "OrderLineQuantityChanged",
            "OrderLineRemoved",
            "OrderPlaced",
            "OrderConfirmed",
            "OrderCancelled",
            "OrderShipped",
            "OrderDelivered"
        ]
    );
    assert_eq!(
        OrderEvent::OrderConfirmed {}.event_type_name(),
        "OrderConfirmed"
    );
}

#[test]
fn error_codes_and_categories() {
    use ErrorCategory::*;
    let cases = [
        (
            OrderError::InvalidCustomerId,
            "order.invalid_customer_id",
            Validation,
        ),
        (
            OrderError::InvalidQuantity,
            "order.invalid_quantity",
            Validation,
        ),
        (
            OrderError::InvalidUnitPrice,
            "order.invalid_unit_price",
            Validation,
        ),
        (
            OrderError::CurrencyMismatch {
                expected: eur(),
                actual: usd(),
            },
            "order.currency_mismatch",
            Validation,
        ),
        (
            OrderError::AmountOverflow,
            "order.amount_overflow",
            Validation,
        ),
        (
            OrderError::InvalidReason,
            "order.invalid_reason",
            Validation,
        ),
        (
            OrderError::InvalidTrackingReference,
            "order.invalid_tracking_reference",
            Validation,
        ),
        (
            OrderError::InvalidPaymentMethod,
            "order.invalid_payment_method",
            Validation,
        ),
        (OrderError::NotFound, "order.not_found", NotFound),
        (
            OrderError::LineNotFound { sku: sku("A") },
            "order.line_not_found",
            NotFound,
        ),
        (
            OrderError::AlreadyExists,
            "order.already_exists",
            InvalidState,
        ),
        (
            OrderError::InvalidTransition {
                action: OrderAction::Ship,
                status: OrderStatus::Placed,
            },
            "order.invalid_transition",
            InvalidState,
        ),
        (OrderError::EmptyOrder, "order.empty_order", InvalidState),
        (
            OrderError::DuplicateLine { sku: sku("A") },
            "order.duplicate_line",
            InvalidState,
        ),
        (
            OrderError::TooManyLines { max: 1 },
            "order.too_many_lines",
            InvalidState,
        ),
    ];
    for (error, code, category) in cases {
        assert_eq!(
            (error.code(), error.category()),
            (code, category),
            "{error}"
        );
    }
    assert_eq!(
        OrderError::InvalidTransition {
            action: OrderAction::Ship,
            status: OrderStatus::Placed
        }
        .to_string(),
        "cannot ship an order that is placed"
    );
}

// --- Properties ---

fn arbitrary_line_command() -> impl Strategy<Value = OrderCommand> {
    let sku = prop_oneof![Just("A"), Just("B"), Just("C"), Just("D")].prop_map(sku);
    let price = prop_oneof![
        8 => (-1i64..=100_000).prop_map(|m| Money::new(m, eur())),
        1 => (0i64..=100).prop_map(|m| Money::new(m, usd())),
        1 => Just(Money::new(i64::MAX / 3, eur())),
    ];
    prop_oneof![
        4 => (sku.clone(), 0u32..=10, price).prop_map(|(sku, quantity, unit_price)| {
            AddOrderLine { sku, quantity, unit_price }.into()
        }),
        3 => (sku.clone(), 0u32..=10)
            .prop_map(|(sku, quantity)| ChangeOrderLineQuantity { sku, quantity }.into()),
        2 => sku.prop_map(|sku| RemoveOrderLine { sku }.into()),
        1 => Just(PlaceOrder::default().into()),
    ]
}

proptest! {
    #[test]
    fn order_total_always_equals_the_sum_of_its_lines(
        commands in proptest::collection::vec(arbitrary_line_command(), 0..40)
    ) {
        let runtime = runtime();
        let mut order = Order::default();
        order.apply(created());
        // Independent model, folded from the emitted events only.
        let mut lines: Vec<(Sku, u32, i64)> = Vec::new();
        let model_total = |lines: &[(Sku, u32, i64)]| -> i128 {
            lines.iter().map(|(_, q, p)| i128::from(*q) * i128::from(*p)).sum()
        };

        for command in commands {
            let before = order.clone();
            match run(&runtime, &mut order, command, &vault()) {
                Err(_) => prop_assert_eq!(&order, &before, "a rejection must change nothing"),
                Ok(events) => {
                    for event in events {
                        match event {
                            OrderEvent::OrderLineAdded { line } => {
                                prop_assert_eq!(line.unit_price.currency, eur());
                                prop_assert!(line.quantity > 0 && line.unit_price.amount_minor >= 0);
                                lines.push((line.sku, line.quantity, line.unit_price.amount_minor));
                            }
                            OrderEvent::OrderLineQuantityChanged { sku, quantity } => {
                                let entry = lines.iter_mut().find(|(s, _, _)| *s == sku);
                                prop_assert!(entry.is_some());
                                if let Some(entry) = entry {
                                    entry.1 = quantity;
                                }
                            }
                            OrderEvent::OrderLineRemoved { sku } => lines.retain(|(s, _, _)| *s != sku),
                            OrderEvent::OrderPlaced { lines: placed, total, .. } => {
                                let sum: i128 = placed
                                    .iter()
                                    .map(|l| i128::from(l.quantity) * i128::from(l.unit_price.amount_minor))
                                    .sum();
                                prop_assert!(!placed.is_empty());
                                prop_assert_eq!(i128::from(total.amount_minor), sum);
                                prop_assert_eq!(sum, model_total(&lines));
                            }
                            other => prop_assert!(false, "unexpected event {:?}", other),
                        }
                    }
                }
            }
            let total = order.total();
            prop_assert!(total.is_some(), "a created order always has a representable total");
            if let Some(total) = total {
                prop_assert_eq!(i128::from(total.amount_minor), model_total(&lines));
                prop_assert_eq!(total.currency, eur());
            }
            prop_assert_eq!(order.lines().len(), lines.len());
        }
    }
}
