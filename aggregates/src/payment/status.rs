use std::fmt;

use serde::{Deserialize, Serialize};

/// Lifecycle of a payment. `Declined`, `Voided` and `Refunded` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// Funds are held on the customer's account.
    Authorized,
    /// The gateway refused the authorization. Terminal.
    Declined,
    /// The hold was released before capture. Terminal.
    Voided,
    /// Funds were taken; refunds may follow.
    Captured,
    /// Everything captured was refunded. Terminal.
    Refunded,
}

/// What a command tries to do; named in
/// [`PaymentError::InvalidTransition`](super::PaymentError::InvalidTransition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentAction {
    /// [`AuthorizePayment`](super::AuthorizePayment).
    Authorize,
    /// [`CapturePayment`](super::CapturePayment).
    Capture,
    /// [`VoidPayment`](super::VoidPayment).
    Void,
    /// [`RefundPayment`](super::RefundPayment).
    Refund,
}

impl PaymentStatus {
    /// Every status, for exhaustive tests.
    pub const ALL: [PaymentStatus; 5] = [
        Self::Authorized,
        Self::Declined,
        Self::Voided,
        Self::Captured,
        Self::Refunded,
    ];

    /// The status machine for an existing payment (authorizing is only possible before the
    /// first event, so no existing status allows it).
    pub fn allows(self, action: PaymentAction) -> bool {
        use PaymentAction as A;
        use PaymentStatus as S;
        matches!(
            (self, action),
            (S::Authorized, A::Capture | A::Void) | (S::Captured, A::Refund)
        )
    }

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::Declined => "declined",
            Self::Voided => "voided",
            Self::Captured => "captured",
            Self::Refunded => "refunded",
        }
    }
}

impl PaymentAction {
    /// Every action, for exhaustive tests.
    pub const ALL: [PaymentAction; 4] = [Self::Authorize, Self::Capture, Self::Void, Self::Refund];

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PaymentAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
