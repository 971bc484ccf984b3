use std::collections::BTreeMap;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{
    AuthorizePayment, CapturePayment, PaymentCommand, RefundPayment, VoidPayment,
};
use super::errors::PaymentError;
use super::events::{DeclineReason, PaymentEvent};
use super::services::{
    AuthorizationOutcome, AuthorizationRequest, CaptureRequest, GatewayError, PaymentServices,
    RefundRequest, VoidRequest,
};
use super::status::{PaymentAction, PaymentStatus};
use crate::Money;
use crate::text::{is_valid_reason, is_valid_reference};

/// Longest accepted payment-method token, in characters.
pub const MAX_PAYMENT_METHOD_CHARS: usize = 200;

/// A payment. `Default` is "never authorized": every command but [`AuthorizePayment`] is
/// then `payment.not_found`.
///
/// Invariants, true after every event: captured ≤ authorized; refunded ≤ captured; all
/// amounts share the authorization's currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    state: Option<PaymentState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PaymentState {
    payment_id: Uuid,
    order_id: Uuid,
    status: PaymentStatus,
    authorized: Money,
    authorization_code: Option<String>,
    decline_reason: Option<DeclineReason>,
    captured: Option<Money>,
    refunded: Money,
    // Kept to recognise a retried refund by its id.
    refunds: BTreeMap<Uuid, Money>,
}

impl Payment {
    /// Current status; `None` before authorization was attempted.
    pub fn status(&self) -> Option<PaymentStatus> {
        self.state.as_ref().map(|s| s.status)
    }

    /// The payment's own id, as given at authorization.
    pub fn payment_id(&self) -> Option<Uuid> {
        self.state.as_ref().map(|s| s.payment_id)
    }

    /// The order paid for.
    pub fn order_id(&self) -> Option<Uuid> {
        self.state.as_ref().map(|s| s.order_id)
    }

    /// Amount requested at authorization (held if approved).
    pub fn authorized_amount(&self) -> Option<Money> {
        self.state.as_ref().map(|s| s.authorized)
    }

    /// Amount captured, if captured.
    pub fn captured_amount(&self) -> Option<Money> {
        self.state.as_ref().and_then(|s| s.captured)
    }

    /// Sum of all refunds (zero when none).
    pub fn refunded_amount(&self) -> Option<Money> {
        self.state.as_ref().map(|s| s.refunded)
    }

    /// Why the gateway declined, if it did.
    pub fn decline_reason(&self) -> Option<DeclineReason> {
        self.state.as_ref().and_then(|s| s.decline_reason)
    }

    fn existing(&self) -> Result<&PaymentState, PaymentError> {
        self.state.as_ref().ok_or(PaymentError::NotFound)
    }

    fn for_action(&self, action: PaymentAction) -> Result<&PaymentState, PaymentError> {
        let state = self.existing()?;
        if state.status.allows(action) {
            Ok(state)
        } else {
            Err(PaymentError::InvalidTransition {
                action,
                status: state.status,
            })
        }
    }

    async fn authorize(
        &self,
        command: AuthorizePayment,
        services: &PaymentServices,
    ) -> Result<Option<PaymentEvent>, PaymentError> {
        let AuthorizePayment {
            payment_id,
            order_id,
            amount,
            payment_method,
        } = command;
        require_positive(amount)?;
        if !is_valid_reference(&payment_method, MAX_PAYMENT_METHOD_CHARS) {
            return Err(PaymentError::InvalidPaymentMethod);
        }
        if let Some(state) = &self.state {
            return Err(PaymentError::InvalidTransition {
                action: PaymentAction::Authorize,
                status: state.status,
            });
        }
        let request = AuthorizationRequest {
            payment_id,
            order_id,
            amount,
            payment_method,
            idempotency_key: AuthorizationRequest::idempotency_key_for(payment_id),
        };
        let event = match services.gateway().authorize(request).await {
            Ok(AuthorizationOutcome::Approved { authorization_code }) => {
                PaymentEvent::PaymentAuthorized {
                    payment_id,
                    order_id,
                    amount,
                    authorization_code,
                }
            }
            Ok(AuthorizationOutcome::Declined { reason }) => PaymentEvent::PaymentDeclined {
                payment_id,
                order_id,
                amount,
                reason,
            },
            Err(error) => return Err(error.into()),
        };
        Ok(Some(event))
    }

    async fn capture(
        &self,
        CapturePayment { amount }: CapturePayment,
        services: &PaymentServices,
    ) -> Result<Option<PaymentEvent>, PaymentError> {
        require_positive(amount)?;
        let state = self.for_action(PaymentAction::Capture)?;
        state.require_currency(amount)?;
        if amount.amount_minor > state.authorized.amount_minor {
            return Err(PaymentError::CaptureExceedsAuthorization {
                requested: amount,
                authorized: state.authorized,
            });
        }
        let request = CaptureRequest {
            payment_id: state.payment_id,
            authorization_code: state.authorization_code.clone().unwrap_or_default(),
            amount,
            idempotency_key: CaptureRequest::idempotency_key_for(state.payment_id),
        };
        let receipt = services.gateway().capture(request).await?;
        Ok(Some(PaymentEvent::PaymentCaptured {
            amount,
            gateway_reference: receipt.reference,
        }))
    }

    async fn void(
        &self,
        VoidPayment { reason }: VoidPayment,
        services: &PaymentServices,
    ) -> Result<Option<PaymentEvent>, PaymentError> {
        if !is_valid_reason(&reason) {
            return Err(PaymentError::InvalidReason);
        }
        let state = self.for_action(PaymentAction::Void)?;
        let request = VoidRequest {
            payment_id: state.payment_id,
            authorization_code: state.authorization_code.clone().unwrap_or_default(),
            idempotency_key: VoidRequest::idempotency_key_for(state.payment_id),
        };
        let receipt = services.gateway().void(request).await?;
        Ok(Some(PaymentEvent::PaymentVoided {
            reason,
            gateway_reference: receipt.reference,
        }))
    }

    async fn refund(
        &self,
        command: RefundPayment,
        services: &PaymentServices,
    ) -> Result<Option<PaymentEvent>, PaymentError> {
        let RefundPayment {
            refund_id,
            amount,
            reason,
        } = command;
        require_positive(amount)?;
        if !is_valid_reason(&reason) {
            return Err(PaymentError::InvalidReason);
        }
        // A retried refund is recognised before the status check: the refund that made the
        // payment fully `Refunded` must still be retryable.
        if let Some(done) = self.existing()?.refunds.get(&refund_id) {
            return if *done == amount {
                Ok(None)
            } else {
                Err(PaymentError::RefundConflict { refund_id })
            };
        }
        let state = self.for_action(PaymentAction::Refund)?;
        state.require_currency(amount)?;
        let captured = state
            .captured
            .unwrap_or(Money::zero(state.authorized.currency));
        let refundable = Money::new(
            captured
                .amount_minor
                .saturating_sub(state.refunded.amount_minor),
            captured.currency,
        );
        if amount.amount_minor > refundable.amount_minor {
            return Err(PaymentError::RefundExceedsCaptured {
                requested: amount,
                refundable,
            });
        }
        let request = RefundRequest {
            payment_id: state.payment_id,
            refund_id,
            amount,
            idempotency_key: RefundRequest::idempotency_key_for(state.payment_id, refund_id),
        };
        let receipt = services.gateway().refund(request).await?;
        Ok(Some(PaymentEvent::PaymentRefunded {
            refund_id,
            amount,
            reason,
            gateway_reference: receipt.reference,
        }))
    }
}

impl PaymentState {
    fn require_currency(&self, amount: Money) -> Result<(), PaymentError> {
        if amount.currency == self.authorized.currency {
            Ok(())
        } else {
            Err(PaymentError::CurrencyMismatch {
                expected: self.authorized.currency,
                actual: amount.currency,
            })
        }
    }
}

fn require_positive(amount: Money) -> Result<(), PaymentError> {
    if amount.is_positive() {
        Ok(())
    } else {
        Err(PaymentError::InvalidAmount)
    }
}

impl From<GatewayError> for PaymentError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::Timeout => Self::GatewayTimeout,
            GatewayError::Unavailable { detail } => Self::GatewayUnavailable { detail },
        }
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = PaymentServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let decided = match command {
            PaymentCommand::AuthorizePayment(command) => self.authorize(command, services).await,
            PaymentCommand::CapturePayment(command) => self.capture(command, services).await,
            PaymentCommand::VoidPayment(command) => self.void(command, services).await,
            PaymentCommand::RefundPayment(command) => self.refund(command, services).await,
        }?;
        if let Some(event) = decided {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let state = match event {
            PaymentEvent::PaymentAuthorized {
                payment_id,
                order_id,
                amount,
                authorization_code,
            } => {
                self.state = Some(PaymentState {
                    authorization_code: Some(authorization_code),
                    ..PaymentState::opened(payment_id, order_id, amount, PaymentStatus::Authorized)
                });
                return;
            }
            PaymentEvent::PaymentDeclined {
                payment_id,
                order_id,
                amount,
                reason,
            } => {
                self.state = Some(PaymentState {
                    decline_reason: Some(reason),
                    ..PaymentState::opened(payment_id, order_id, amount, PaymentStatus::Declined)
                });
                return;
            }
            // Every other event follows an authorization in a valid stream.
            _ => match self.state.as_mut() {
                Some(state) => state,
                None => return,
            },
        };
        match event {
            PaymentEvent::PaymentCaptured { amount, .. } => {
                state.status = PaymentStatus::Captured;
                state.captured = Some(amount);
            }
            PaymentEvent::PaymentVoided { .. } => state.status = PaymentStatus::Voided,
            PaymentEvent::PaymentRefunded {
                refund_id, amount, ..
            } => {
                state.refunds.insert(refund_id, amount);
                state.refunded.amount_minor = state
                    .refunded
                    .amount_minor
                    .saturating_add(amount.amount_minor);
                if Some(state.refunded) == state.captured {
                    state.status = PaymentStatus::Refunded;
                }
            }
            PaymentEvent::PaymentAuthorized { .. } | PaymentEvent::PaymentDeclined { .. } => {}
        }
    }
}

impl PaymentState {
    fn opened(payment_id: Uuid, order_id: Uuid, amount: Money, status: PaymentStatus) -> Self {
        Self {
            payment_id,
            order_id,
            status,
            authorized: amount,
            authorization_code: None,
            decline_reason: None,
            captured: None,
            refunded: Money::zero(amount.currency),
            refunds: BTreeMap::new(),
        }
    }
}
