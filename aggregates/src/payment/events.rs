use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Money;
use crate::macros::domain_events;

/// Why a gateway refused an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeclineReason {
    /// Generic refusal by the issuer.
    CardDeclined,
    /// Not enough funds or credit.
    InsufficientFunds,
    /// The payment method has expired.
    ExpiredCard,
}

impl DeclineReason {
    /// Every reason, for exhaustive mapping tests.
    pub const ALL: [DeclineReason; 3] = [
        Self::CardDeclined,
        Self::InsufficientFunds,
        Self::ExpiredCard,
    ];

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::ExpiredCard => "expired_card",
        }
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

domain_events! {
    /// Facts about one payment. Every amount is in the authorization's currency.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum PaymentEvent {
        /// The gateway holds `amount` for `order_id` under `authorization_code`.
        PaymentAuthorized {
            payment_id: Uuid,
            order_id: Uuid,
            amount: Money,
            authorization_code: String,
        },
        /// The gateway refused to authorize `amount` for `order_id`.
        PaymentDeclined {
            payment_id: Uuid,
            order_id: Uuid,
            amount: Money,
            reason: DeclineReason,
        },
        /// `amount` was taken from the authorization.
        PaymentCaptured { amount: Money, gateway_reference: String },
        /// The authorization was released without capture.
        PaymentVoided { reason: String, gateway_reference: String },
        /// `amount` of the captured funds was returned as refund `refund_id`.
        PaymentRefunded {
            refund_id: Uuid,
            amount: Money,
            reason: String,
            gateway_reference: String,
        },
    }
}
