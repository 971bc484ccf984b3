use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Money;
use crate::macros::command_enum_from;

/// Ask the gateway to hold `amount` on the customer's payment method for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizePayment {
    /// This payment's id (= the aggregate id); the gateway idempotency key derives from it.
    pub payment_id: Uuid,
    /// The order being paid.
    pub order_id: Uuid,
    /// Amount to hold; positive.
    pub amount: Money,
    /// Opaque payment-method token issued by the gateway (never card data); non-blank,
    /// at most 200 characters. See [`SimulatedPaymentGateway`](super::SimulatedPaymentGateway)
    /// for the simulator's trigger tokens.
    pub payment_method: String,
}

/// Take `amount` (at most the authorized amount) from an authorization, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapturePayment {
    /// Amount to take; positive, in the authorization's currency, at most the authorized amount.
    pub amount: Money,
}

/// Release an authorization that was not captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoidPayment {
    /// Why; non-blank, at most 500 characters.
    pub reason: String,
}

/// Return part or all of the captured amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundPayment {
    /// Caller-chosen identity of this refund; repeating it with the same amount is a no-op.
    pub refund_id: Uuid,
    /// Amount to return; positive, in the payment's currency, at most what is still refundable.
    pub amount: Money,
    /// Why; non-blank, at most 500 characters.
    pub reason: String,
}

/// Every command the payment aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum PaymentCommand {
    /// See [`AuthorizePayment`].
    AuthorizePayment(AuthorizePayment),
    /// See [`CapturePayment`].
    CapturePayment(CapturePayment),
    /// See [`VoidPayment`].
    VoidPayment(VoidPayment),
    /// See [`RefundPayment`].
    RefundPayment(RefundPayment),
}

command_enum_from!(
    PaymentCommand: AuthorizePayment,
    CapturePayment,
    VoidPayment,
    RefundPayment,
);

/// Payment commands call the payment gateway while deciding: a second decision would
/// authorize, capture or void a second time.
impl crate::Redecide for PaymentCommand {
    fn may_redecide(&self) -> bool {
        false
    }
}
