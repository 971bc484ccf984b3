//! Given/when/then tests for every inventory command outcome, and property tests of the
//! stock invariants over arbitrary command sequences.

use cqrs_es::Aggregate;
use cqrs_es::test::TestFramework;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::test_support::{run, runtime};
use crate::{DomainError, ErrorCategory};

type InventoryTest = TestFramework<InventoryItem>;

fn order(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn added(quantity: u32) -> InventoryEvent {
    InventoryEvent::StockAdded { quantity }
}

fn reserved(n: u128, quantity: u32) -> InventoryEvent {
    InventoryEvent::StockReserved {
        order_id: order(n),
        quantity,
    }
}

async fn expect_events(
    given: Vec<InventoryEvent>,
    command: impl Into<InventoryCommand>,
    expected: Vec<InventoryEvent>,
) {
    InventoryTest::with(())
        .given(given)
        .when_async(command.into())
        .await
        .then_expect_events(expected);
}

async fn expect_error(
    given: Vec<InventoryEvent>,
    command: impl Into<InventoryCommand>,
    expected: InventoryError,
) {
    InventoryTest::with(())
        .given(given)
        .when_async(command.into())
        .await
        .then_expect_error(expected);
}

fn adjust(delta: i64) -> AdjustStock {
    AdjustStock {
        delta,
        reason: "cycle count".into(),
    }
}

// --- AddStock ---

#[tokio::test]
async fn add_stock_creates_an_unknown_sku() {
    expect_events(vec![], AddStock { quantity: 10 }, vec![added(10)]).await;
}

#[tokio::test]
async fn add_stock_increases_known_stock() {
    expect_events(vec![added(10)], AddStock { quantity: 5 }, vec![added(5)]).await;
}

#[tokio::test]
async fn add_stock_rejects_zero() {
    expect_error(
        vec![],
        AddStock { quantity: 0 },
        InventoryError::InvalidQuantity,
    )
    .await;
}

#[tokio::test]
async fn add_stock_rejects_overflow_past_the_maximum() {
    let given = vec![InventoryEvent::StockAdjusted {
        delta: i64::MAX - 10,
        reason: "seed".into(),
    }];
    expect_error(
        [vec![added(10)], given].concat(),
        AddStock { quantity: 1 },
        InventoryError::QuantityOverflow,
    )
    .await;
}

// --- AdjustStock ---

#[tokio::test]
async fn adjust_stock_up() {
    expect_events(
        vec![added(10)],
        adjust(3),
        vec![InventoryEvent::StockAdjusted {
            delta: 3,
            reason: "cycle count".into(),
        }],
    )
    .await;
}

#[tokio::test]
async fn adjust_stock_down_to_exactly_reserved() {
    expect_events(
        vec![added(10), reserved(1, 4)],
        adjust(-6),
        vec![InventoryEvent::StockAdjusted {
            delta: -6,
            reason: "cycle count".into(),
        }],
    )
    .await;
}

#[tokio::test]
async fn adjust_stock_rejects_zero_delta() {
    expect_error(vec![added(10)], adjust(0), InventoryError::InvalidQuantity).await;
}

#[tokio::test]
async fn adjust_stock_rejects_blank_reason() {
    let command = AdjustStock {
        delta: 1,
        reason: "  ".into(),
    };
    expect_error(vec![added(10)], command, InventoryError::InvalidReason).await;
}

#[tokio::test]
async fn adjust_stock_rejects_overlong_reason() {
    let command = AdjustStock {
        delta: 1,
        reason: "x".repeat(501),
    };
    expect_error(vec![added(10)], command, InventoryError::InvalidReason).await;
}

#[tokio::test]
async fn adjust_stock_rejects_unknown_sku() {
    expect_error(vec![], adjust(5), InventoryError::UnknownSku).await;
}

#[tokio::test]
async fn adjust_stock_rejects_going_below_reserved() {
    expect_error(
        vec![added(10), reserved(1, 4)],
        adjust(-7),
        InventoryError::AdjustmentBelowReserved {
            delta: -7,
            on_hand: 10,
            reserved: 4,
        },
    )
    .await;
}

#[tokio::test]
async fn adjust_stock_rejects_going_below_zero() {
    expect_error(
        vec![added(10)],
        adjust(-11),
        InventoryError::AdjustmentBelowReserved {
            delta: -11,
            on_hand: 10,
            reserved: 0,
        },
    )
    .await;
}

#[tokio::test]
async fn adjust_stock_rejects_overflow() {
    expect_error(
        vec![added(10)],
        adjust(i64::MAX),
        InventoryError::QuantityOverflow,
    )
    .await;
}

// --- ReserveStock ---

#[tokio::test]
async fn reserve_stock_within_available() {
    expect_events(
        vec![added(10), reserved(1, 4)],
        ReserveStock {
            order_id: order(2),
            quantity: 6,
        },
        vec![reserved(2, 6)],
    )
    .await;
}

#[tokio::test]
async fn reserve_stock_again_with_same_quantity_is_a_no_op() {
    expect_events(
        vec![added(10), reserved(1, 4)],
        ReserveStock {
            order_id: order(1),
            quantity: 4,
        },
        vec![],
    )
    .await;
}

#[tokio::test]
async fn reserve_stock_again_with_other_quantity_conflicts() {
    expect_error(
        vec![added(10), reserved(1, 4)],
        ReserveStock {
            order_id: order(1),
            quantity: 5,
        },
        InventoryError::ReservationConflict {
            order_id: order(1),
            reserved: 4,
            requested: 5,
        },
    )
    .await;
}

#[tokio::test]
async fn reserve_stock_after_release_reserves_anew() {
    let released = InventoryEvent::ReservationReleased {
        order_id: order(1),
        quantity: 4,
    };
    expect_events(
        vec![added(10), reserved(1, 4), released],
        ReserveStock {
            order_id: order(1),
            quantity: 5,
        },
        vec![reserved(1, 5)],
    )
    .await;
}

#[tokio::test]
async fn reserve_stock_rejects_more_than_available() {
    expect_error(
        vec![added(10), reserved(1, 4)],
        ReserveStock {
            order_id: order(2),
            quantity: 7,
        },
        InventoryError::InsufficientStock {
            requested: 7,
            available: 6,
        },
    )
    .await;
}

#[tokio::test]
async fn reserve_stock_rejects_zero() {
    expect_error(
        vec![added(10)],
        ReserveStock {
            order_id: order(1),
            quantity: 0,
        },
        InventoryError::InvalidQuantity,
    )
    .await;
}

#[tokio::test]
async fn reserve_stock_rejects_unknown_sku() {
    expect_error(
        vec![],
        ReserveStock {
            order_id: order(1),
            quantity: 1,
        },
        InventoryError::UnknownSku,
    )
    .await;
}

// --- ReleaseReservation ---

#[tokio::test]
async fn release_reservation_returns_its_quantity() {
    expect_events(
        vec![added(10), reserved(1, 4)],
        ReleaseReservation { order_id: order(1) },
        vec![InventoryEvent::ReservationReleased {
            order_id: order(1),
            quantity: 4,
        }],
    )
    .await;
}

#[tokio::test]
async fn release_reservation_rejects_missing_reservation() {
    expect_error(
        vec![added(10), reserved(1, 4)],
        ReleaseReservation { order_id: order(2) },
        InventoryError::ReservationNotFound { order_id: order(2) },
    )
    .await;
}

#[tokio::test]
async fn release_reservation_rejects_committed_reservation() {
    let committed = InventoryEvent::ReservationCommitted {
        order_id: order(1),
        quantity: 4,
    };
    expect_error(
        vec![added(10), reserved(1, 4), committed],
        ReleaseReservation { order_id: order(1) },
        InventoryError::ReservationNotFound { order_id: order(1) },
    )
    .await;
}

#[tokio::test]
async fn release_reservation_rejects_unknown_sku() {
    expect_error(
        vec![],
        ReleaseReservation { order_id: order(1) },
        InventoryError::UnknownSku,
    )
    .await;
}

// --- CommitReservation ---

#[tokio::test]
async fn commit_reservation_ships_its_quantity() {
    expect_events(
        vec![added(10), reserved(1, 4)],
        CommitReservation { order_id: order(1) },
        vec![InventoryEvent::ReservationCommitted {
            order_id: order(1),
            quantity: 4,
        }],
    )
    .await;
}

#[tokio::test]
async fn commit_reservation_rejects_missing_reservation() {
    expect_error(
        vec![added(10)],
        CommitReservation { order_id: order(1) },
        InventoryError::ReservationNotFound { order_id: order(1) },
    )
    .await;
}

#[tokio::test]
async fn commit_reservation_rejects_unknown_sku() {
    expect_error(
        vec![],
        CommitReservation { order_id: order(1) },
        InventoryError::UnknownSku,
    )
    .await;
}

// --- State, contracts, codes ---

#[test]
fn apply_folds_levels_and_reservations() {
    let mut item = InventoryItem::default();
    for event in [
        added(10),
        reserved(1, 4),
        reserved(2, 3),
        InventoryEvent::ReservationCommitted {
            order_id: order(1),
            quantity: 4,
        },
        InventoryEvent::StockAdjusted {
            delta: -1,
            reason: "damaged".into(),
        },
    ] {
        item.apply(event);
    }
    assert!(item.is_known());
    assert_eq!(
        (item.on_hand(), item.reserved(), item.available()),
        (5, 3, 2)
    );
    assert_eq!(item.reservation(order(2)), Some(3));
    assert_eq!(item.reservation(order(1)), None);
}

#[test]
fn commands_reject_unknown_fields() {
    let ok: InventoryCommand = serde_json::from_str(r#"{"AddStock":{"quantity":3}}"#).unwrap();
    assert_eq!(ok, AddStock { quantity: 3 }.into());
    assert!(serde_json::from_str::<AddStock>(r#"{"quantity":3,"extra":1}"#).is_err());
    assert!(serde_json::from_str::<AddStock>(r#"{"quantity":-3}"#).is_err());
}

#[test]
fn event_types_are_the_variant_names() {
    use cqrs_es::DomainEvent;
    assert_eq!(
        InventoryEvent::EVENT_TYPES,
        [
            "StockAdded",
            "StockAdjusted",
            "StockReserved",
            "ReservationReleased",
            "ReservationCommitted"
        ]
    );
    assert_eq!(added(1).event_type(), "StockAdded");
    assert_eq!(added(1).event_version(), "1");
}

#[test]
fn error_codes_and_categories() {
    use ErrorCategory::*;
    let id = order(1);
    let cases = [
        (
            InventoryError::InvalidQuantity,
            "inventory.invalid_quantity",
            Validation,
        ),
        (
            InventoryError::InvalidReason,
            "inventory.invalid_reason",
            Validation,
        ),
        (
            InventoryError::QuantityOverflow,
            "inventory.quantity_overflow",
            Validation,
        ),
        (
            InventoryError::UnknownSku,
            "inventory.unknown_sku",
            NotFound,
        ),
        (
            InventoryError::ReservationNotFound { order_id: id },
            "inventory.reservation_not_found",
            NotFound,
        ),
        (
            InventoryError::InsufficientStock {
                requested: 1,
                available: 0,
            },
            "inventory.insufficient_stock",
            InvalidState,
        ),
        (
            InventoryError::AdjustmentBelowReserved {
                delta: -1,
                on_hand: 0,
                reserved: 0,
            },
            "inventory.adjustment_below_reserved",
            InvalidState,
        ),
        (
            InventoryError::ReservationConflict {
                order_id: id,
                reserved: 1,
                requested: 2,
            },
            "inventory.reservation_conflict",
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
}

// --- Properties ---

fn arbitrary_command() -> impl Strategy<Value = InventoryCommand> {
    let order_id = (1u128..=4).prop_map(order);
    prop_oneof![
        (0u32..=20).prop_map(|quantity| AddStock { quantity }.into()),
        (-30i64..=30, prop_oneof![Just("count"), Just(" ")]).prop_map(|(delta, reason)| {
            AdjustStock {
                delta,
                reason: reason.into(),
            }
            .into()
        }),
        (order_id.clone(), 0u32..=15).prop_map(|(order_id, quantity)| ReserveStock {
            order_id,
            quantity
        }
        .into()),
        order_id
            .clone()
            .prop_map(|order_id| ReleaseReservation { order_id }.into()),
        order_id.prop_map(|order_id| CommitReservation { order_id }.into()),
    ]
}

proptest! {
    #[test]
    fn any_command_sequence_keeps_stock_invariants(
        commands in proptest::collection::vec(arbitrary_command(), 1..60)
    ) {
        let runtime = runtime();
        let mut item = InventoryItem::default();
        let mut history = Vec::new();
        // An independent model, folded from the emitted events only.
        let mut open = std::collections::BTreeMap::<Uuid, u32>::new();
        let mut on_hand: i128 = 0;

        for command in commands {
            let before = item.clone();
            match run(&runtime, &mut item, command, &()) {
                Err(_) => prop_assert_eq!(&item, &before, "a rejection must change nothing"),
                Ok(events) => {
                    for event in events {
                        match &event {
                            InventoryEvent::StockAdded { quantity } => on_hand += i128::from(*quantity),
                            InventoryEvent::StockAdjusted { delta, .. } => on_hand += i128::from(*delta),
                            InventoryEvent::StockReserved { order_id, quantity } => {
                                prop_assert!(*quantity > 0);
                                prop_assert!(open.insert(*order_id, *quantity).is_none());
                            }
                            InventoryEvent::ReservationReleased { order_id, quantity } => {
                                prop_assert_eq!(open.remove(order_id), Some(*quantity));
                            }
                            InventoryEvent::ReservationCommitted { order_id, quantity } => {
                                prop_assert_eq!(open.remove(order_id), Some(*quantity));
                                on_hand -= i128::from(*quantity);
                            }
                        }
                        history.push(event);
                    }
                }
            }
            let reserved: i128 = open.values().map(|q| i128::from(*q)).sum();
            prop_assert!(on_hand - reserved >= 0, "available went negative");
            prop_assert_eq!(i128::from(item.on_hand()), on_hand);
            prop_assert_eq!(i128::from(item.reserved()), reserved);
            prop_assert_eq!(item.reservations(), &open);
        }

        let mut replayed = InventoryItem::default();
        for event in history {
            replayed.apply(event);
        }
        prop_assert_eq!(replayed, item);
    }
}
