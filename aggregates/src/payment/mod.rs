//! Payment: money moved for one order through a payment gateway (aggregate id = payment UUID).
//!
//! ```text
//!  (new) ──authorize──► Authorized ──capture──► Captured ──refund (partial, repeatable)──► Refunded
//!    │                      │                      ▲ └──────────── refund ───────────┘
//!    └──► Declined          └──void──► Voided      (Refunded once everything captured is returned)
//! ```
//!
//! Rules:
//! - Every gateway call goes through the [`PaymentGateway`] port (the cqrs-es `Services`),
//!   with an idempotency key derived from the payment id (see [`PaymentGateway`]).
//! - A **decline** is a business fact: the command succeeds and records
//!   [`PaymentEvent::PaymentDeclined`]. A declined payment is final; retrying with another
//!   payment method means a new payment id (a real gateway would replay the decline for the
//!   same idempotency key anyway).
//! - A gateway **timeout or outage** is not a fact: the command fails with a
//!   [`Transient`](crate::ErrorCategory::Transient) error, records nothing, and may be retried.
//! - Capture happens once, for at most the authorized amount (a partial capture releases
//!   the rest). Void only before capture. Refunds may be partial and repeated, but their sum
//!   never exceeds the captured amount; each refund is identified by a caller-chosen
//!   `refund_id`, and repeating a refund with the same id and amount is a no-op.
//! - All amounts are positive and in the currency of the authorization.
//!
//! The command's `payment_id` must be the aggregate id it is sent to; the command layer
//! guarantees that (the aggregate cannot see its own id).

mod aggregate;
mod commands;
mod errors;
mod events;
mod services;
mod status;

#[cfg(test)]
mod tests;

pub use aggregate::{MAX_PAYMENT_METHOD_CHARS, Payment};
pub use commands::{AuthorizePayment, CapturePayment, PaymentCommand, RefundPayment, VoidPayment};
pub use errors::PaymentError;
pub use events::{DeclineReason, PaymentEvent};
pub use services::{
    AuthorizationOutcome, AuthorizationRequest, CaptureRequest, GatewayError, GatewayReceipt,
    PaymentGateway, PaymentServices, RefundRequest, SimulatedPaymentGateway, VoidRequest,
};
pub use status::{PaymentAction, PaymentStatus};
