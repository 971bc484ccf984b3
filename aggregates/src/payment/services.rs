use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::events::DeclineReason;
use crate::Money;

/// Port to a payment service provider; the payment aggregate's only way to move money.
///
/// # Idempotency
///
/// Every request carries an `idempotency_key` that adapters must forward to the provider, so
/// a retried command (after a timeout, a crash, a concurrency conflict) never moves money
/// twice. Keys are derived from the payment id:
///
/// | call | key |
/// |---|---|
/// | authorize | `<payment_id>` |
/// | capture | `<payment_id>:capture` |
/// | void | `<payment_id>:void` |
/// | refund | `<payment_id>:refund:<refund_id>` |
///
/// The payment id alone would make a provider treat the capture as a replay of the
/// authorization, hence the per-operation suffix; refunds add their own id because one
/// payment may have several.
///
/// # Failure semantics
///
/// `Ok` is an answer from the provider (for authorization that includes a decline).
/// `Err` means no answer: the outcome is unknown or nothing happened, and the aggregate
/// records nothing.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Hold `request.amount` on the payment method.
    async fn authorize(
        &self,
        request: AuthorizationRequest,
    ) -> Result<AuthorizationOutcome, GatewayError>;

    /// Take `request.amount` from an authorization.
    async fn capture(&self, request: CaptureRequest) -> Result<GatewayReceipt, GatewayError>;

    /// Release an authorization.
    async fn void(&self, request: VoidRequest) -> Result<GatewayReceipt, GatewayError>;

    /// Return `request.amount` of captured funds.
    async fn refund(&self, request: RefundRequest) -> Result<GatewayReceipt, GatewayError>;
}

/// Input of [`PaymentGateway::authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The payment.
    pub payment_id: Uuid,
    /// The order paid for, for the provider's records.
    pub order_id: Uuid,
    /// Amount to hold; positive.
    pub amount: Money,
    /// Opaque payment-method token.
    pub payment_method: String,
    /// `<payment_id>`.
    pub idempotency_key: String,
}

/// The provider's answer to an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationOutcome {
    /// Funds are held; `authorization_code` identifies the hold for capture and void.
    Approved {
        /// Provider's handle on the hold.
        authorization_code: String,
    },
    /// The provider refused.
    Declined {
        /// Why.
        reason: DeclineReason,
    },
}

/// Input of [`PaymentGateway::capture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// The payment.
    pub payment_id: Uuid,
    /// The hold to capture from.
    pub authorization_code: String,
    /// Amount to take; positive, at most the authorized amount.
    pub amount: Money,
    /// `<payment_id>:capture`.
    pub idempotency_key: String,
}

/// Input of [`PaymentGateway::void`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidRequest {
    /// The payment.
    pub payment_id: Uuid,
    /// The hold to release.
    pub authorization_code: String,
    /// `<payment_id>:void`.
    pub idempotency_key: String,
}

/// Input of [`PaymentGateway::refund`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The payment.
    pub payment_id: Uuid,
    /// Caller-chosen refund identity.
    pub refund_id: Uuid,
    /// Amount to return; positive, at most what is still refundable.
    pub amount: Money,
    /// `<payment_id>:refund:<refund_id>`.
    pub idempotency_key: String,
}

/// The provider's confirmation of a capture, void or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayReceipt {
    /// Provider's reference for reconciliation.
    pub reference: String,
}

/// The provider gave no usable answer. Always transient from the domain's point of view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No answer in time; the operation may or may not have happened at the provider.
    #[error("payment gateway timed out")]
    Timeout,
    /// The provider could not be reached or answered with a server error.
    #[error("payment gateway unavailable: {detail}")]
    Unavailable {
        /// Diagnostic detail for logs.
        detail: String,
    },
}

impl AuthorizationRequest {
    pub(crate) fn idempotency_key_for(payment_id: Uuid) -> String {
        payment_id.to_string()
    }
}

impl CaptureRequest {
    pub(crate) fn idempotency_key_for(payment_id: Uuid) -> String {
        format!("{payment_id}:capture")
    }
}

impl VoidRequest {
    pub(crate) fn idempotency_key_for(payment_id: Uuid) -> String {
        format!("{payment_id}:void")
    }
}

impl RefundRequest {
    pub(crate) fn idempotency_key_for(payment_id: Uuid, refund_id: Uuid) -> String {
        format!("{payment_id}:refund:{refund_id}")
    }
}

/// The payment aggregate's cqrs-es `Services`: the gateway it talks to.
#[derive(Clone)]
pub struct PaymentServices {
    gateway: Arc<dyn PaymentGateway>,
}

impl PaymentServices {
    /// Services backed by `gateway`.
    pub fn new(gateway: Arc<dyn PaymentGateway>) -> Self {
        Self { gateway }
    }

    /// Services backed by an always-answering [`SimulatedPaymentGateway`].
    pub fn simulated() -> Self {
        Self::new(Arc::new(SimulatedPaymentGateway::new()))
    }

    /// The gateway.
    pub fn gateway(&self) -> &dyn PaymentGateway {
        self.gateway.as_ref()
    }
}

impl fmt::Debug for PaymentServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentServices").finish_non_exhaustive()
    }
}

/// A deterministic, in-memory payment gateway for development, tests and demos. It does no
/// IO, keeps no state and answers from the request alone, so the same request always gets
/// the same answer.
///
/// # Triggers (authorization, by payment-method token)
///
/// | token | outcome |
/// |---|---|
/// | `tok_decline` | `Declined(CardDeclined)` |
/// | `tok_insufficient_funds` | `Declined(InsufficientFunds)` |
/// | `tok_expired_card` | `Declined(ExpiredCard)` |
/// | `tok_timeout` | `Err(GatewayError::Timeout)` |
/// | `tok_unavailable` | `Err(GatewayError::Unavailable)` |
/// | anything else (e.g. `tok_visa`) | `Approved`, code `sim_auth_<payment id, simple form>` |
///
/// Capture, void and refund always succeed, with references `sim_capture_<payment id>`,
/// `sim_void_<payment id>` and `sim_refund_<refund id>`, unless the simulator was built with
/// [`SimulatedPaymentGateway::failing`], in which case **every** call returns that error
/// (an outage).
#[derive(Debug, Clone, Default)]
pub struct SimulatedPaymentGateway {
    outage: Option<GatewayError>,
}

impl SimulatedPaymentGateway {
    /// Token that is declined as [`DeclineReason::CardDeclined`].
    pub const TOKEN_DECLINE: &'static str = "tok_decline";
    /// Token that is declined as [`DeclineReason::InsufficientFunds`].
    pub const TOKEN_INSUFFICIENT_FUNDS: &'static str = "tok_insufficient_funds";
    /// Token that is declined as [`DeclineReason::ExpiredCard`].
    pub const TOKEN_EXPIRED_CARD: &'static str = "tok_expired_card";
    /// Token whose authorization times out.
    pub const TOKEN_TIMEOUT: &'static str = "tok_timeout";
    /// Token whose authorization finds the gateway unavailable.
    pub const TOKEN_UNAVAILABLE: &'static str = "tok_unavailable";
    /// A token that is always approved.
    pub const TOKEN_APPROVE: &'static str = "tok_visa";

    /// A healthy simulator: answers according to the trigger table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A simulator in an outage: every call fails with `error`.
    pub fn failing(error: GatewayError) -> Self {
        Self {
            outage: Some(error),
        }
    }

    fn available(&self) -> Result<(), GatewayError> {
        self.outage.clone().map_or(Ok(()), Err)
    }
}

#[async_trait]
impl PaymentGateway for SimulatedPaymentGateway {
    async fn authorize(
        &self,
        request: AuthorizationRequest,
    ) -> Result<AuthorizationOutcome, GatewayError> {
        self.available()?;
        let declined = |reason| Ok(AuthorizationOutcome::Declined { reason });
        match request.payment_method.as_str() {
            Self::TOKEN_DECLINE => declined(DeclineReason::CardDeclined),
            Self::TOKEN_INSUFFICIENT_FUNDS => declined(DeclineReason::InsufficientFunds),
            Self::TOKEN_EXPIRED_CARD => declined(DeclineReason::ExpiredCard),
            Self::TOKEN_TIMEOUT => Err(GatewayError::Timeout),
            Self::TOKEN_UNAVAILABLE => Err(GatewayError::Unavailable {
                detail: "simulated outage".into(),
            }),
            _ => Ok(AuthorizationOutcome::Approved {
                authorization_code: format!("sim_auth_{}", request.payment_id.simple()),
            }),
        }
    }

    async fn capture(&self, request: CaptureRequest) -> Result<GatewayReceipt, GatewayError> {
        self.available()?;
        Ok(GatewayReceipt {
            reference: format!("sim_capture_{}", request.payment_id.simple()),
        })
    }

    async fn void(&self, request: VoidRequest) -> Result<GatewayReceipt, GatewayError> {
        self.available()?;
        Ok(GatewayReceipt {
            reference: format!("sim_void_{}", request.payment_id.simple()),
        })
    }

    async fn refund(&self, request: RefundRequest) -> Result<GatewayReceipt, GatewayError> {
        self.available()?;
        Ok(GatewayReceipt {
            reference: format!("sim_refund_{}", request.refund_id.simple()),
        })
    }
}
