use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::customer::SealedPersonalData;
use crate::macros::domain_events;
use crate::{Currency, Money, MoneyError, Sku};

/// One product on an order: `quantity` units of `sku` at `unit_price` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Product.
    pub sku: Sku,
    /// Units; positive.
    pub quantity: u32,
    /// Price of one unit, in the order's currency; never negative.
    pub unit_price: Money,
}

impl OrderLine {
    /// `quantity × unit_price`.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`] if it does not fit in `i64` minor units.
    pub fn line_total(&self) -> Result<Money, MoneyError> {
        self.unit_price.checked_mul(self.quantity)
    }
}

/// Sum of the line totals, in `currency` (zero for no lines).
///
/// # Errors
/// [`MoneyError`] on overflow or on a line in another currency.
pub fn order_total<'a>(
    lines: impl IntoIterator<Item = &'a OrderLine>,
    currency: Currency,
) -> Result<Money, MoneyError> {
    lines
        .into_iter()
        .try_fold(Money::zero(currency), |total, line| {
            total.checked_add(line.line_total()?)
        })
}

domain_events! {
    /// Facts in an order's life.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum OrderEvent {
        /// A draft was opened for `customer_id`; every amount on it is in `currency`.
        /// `customer_details` is the customer's personal data sealed under their data key
        /// (`None` when none was given, and for events stored before it existed).
        OrderCreated {
            customer_id: Uuid,
            currency: Currency,
            #[serde(default)]
            customer_details: Option<SealedPersonalData>,
        },
        /// A line was added to the draft.
        OrderLineAdded { line: OrderLine },
        /// The draft line for `sku` now has `quantity` units.
        OrderLineQuantityChanged { sku: Sku, quantity: u32 },
        /// The draft line for `sku` was removed.
        OrderLineRemoved { sku: Sku },
        /// The order was submitted with these `lines` (in the order they were added); `total`
        /// is their sum. Carries the customer and the payment-method token (if the customer
        /// gave one) so fulfilment needs no other read. Events stored before the token
        /// existed read as `None`.
        OrderPlaced {
            customer_id: Uuid,
            lines: Vec<OrderLine>,
            total: Money,
            #[serde(default)]
            payment_method: Option<String>,
        },
        /// Stock and payment are secured.
        OrderConfirmed {},
        /// The order was abandoned before shipping.
        OrderCancelled { reason: String },
        /// The goods left with the carrier.
        OrderShipped { tracking_reference: Option<String> },
        /// The customer received the goods.
        OrderDelivered {},
    }
}
