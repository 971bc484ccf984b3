use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::customer::CustomerDetails;
use crate::macros::command_enum_from;
use crate::{Currency, Money, Sku};

/// Open a draft order for a customer, fixing the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// The buyer; must not be the nil UUID.
    pub customer_id: Uuid,
    /// Currency of every amount on this order.
    pub currency: Currency,
    /// Who receives the order and where, if the shop gave it: validated, then sealed under
    /// the customer's data key before anything is recorded (the event holds only
    /// ciphertext).
    #[serde(default)]
    pub customer_details: Option<CustomerDetails>,
}

/// Add a product line to a draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddOrderLine {
    /// Product; at most one line per SKU.
    pub sku: Sku,
    /// Units; positive.
    pub quantity: u32,
    /// Price of one unit, in the order's currency; zero (a free item) or more.
    pub unit_price: Money,
}

/// Set a draft line's quantity. Setting the current quantity is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeOrderLineQuantity {
    /// Line to change.
    pub sku: Sku,
    /// New quantity; positive (use [`RemoveOrderLine`] to drop a line).
    pub quantity: u32,
}

/// Drop a line from a draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveOrderLine {
    /// Line to remove.
    pub sku: Sku,
}

/// Submit a non-empty draft; its lines and total are frozen from now on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Gateway payment-method token the fulfilment saga authorizes the total with (never
    /// card data); if present non-blank, at most
    /// [`MAX_PAYMENT_METHOD_CHARS`](crate::payment::MAX_PAYMENT_METHOD_CHARS) characters,
    /// without control characters. Optional: an order placed without one is cancelled by
    /// the saga ("no payment method").
    #[serde(default)]
    pub payment_method: Option<String>,
}

/// Mark a placed order as ready to ship (stock reserved, payment authorized).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmOrder {}

/// Abandon an order that has not shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    /// Why; non-blank, at most 500 characters. Kept in the audit trail.
    pub reason: String,
}

/// Hand a confirmed order to the carrier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipOrder {
    /// Carrier tracking number, when known; if present non-blank, at most 100 characters.
    pub tracking_reference: Option<String>,
}

/// Record that the customer received a shipped order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverOrder {}

/// Every command the order aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum OrderCommand {
    /// See [`CreateOrder`].
    CreateOrder(CreateOrder),
    /// See [`AddOrderLine`].
    AddOrderLine(AddOrderLine),
    /// See [`ChangeOrderLineQuantity`].
    ChangeOrderLineQuantity(ChangeOrderLineQuantity),
    /// See [`RemoveOrderLine`].
    RemoveOrderLine(RemoveOrderLine),
    /// See [`PlaceOrder`].
    PlaceOrder(PlaceOrder),
    /// See [`ConfirmOrder`].
    ConfirmOrder(ConfirmOrder),
    /// See [`CancelOrder`].
    CancelOrder(CancelOrder),
    /// See [`ShipOrder`].
    ShipOrder(ShipOrder),
    /// See [`DeliverOrder`].
    DeliverOrder(DeliverOrder),
}

command_enum_from!(
    OrderCommand: CreateOrder,
    AddOrderLine,
    ChangeOrderLineQuantity,
    RemoveOrderLine,
    PlaceOrder,
    ConfirmOrder,
    CancelOrder,
    ShipOrder,
    DeliverOrder,
);

/// Order commands change the order only; sealing personal data gets or creates the
/// customer's one live key, which is the same on a second decision.
impl crate::Redecide for OrderCommand {
    fn may_redecide(&self) -> bool {
        true
    }
}
