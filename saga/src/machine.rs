//! The fulfilment state machine: pure, no IO. Given a saga instance and an input (an
//! observed event, a rejected command, a passed deadline) it updates the instance and says
//! which commands to issue. `store` persists both in one transaction; `runner` feeds it.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use aggregates::order::OrderLine;
use aggregates::payment::DeclineReason;
use aggregates::{Money, Sku};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `X-Actor` of every command the saga issues (and so the `actor` of its events).
pub const SAGA_ACTOR: &str = "saga:order-fulfilment";

/// UUIDv5 namespace of the ids the saga derives. Never change it: a saga restarted after an
/// upgrade must derive the same payment and refund ids as before.
const SAGA_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_656c_2d73_6167_612d_6675_6c66_0001);

/// The payment of `order_id`: derived, so a retried authorization reaches the same payment
/// aggregate (and the same gateway idempotency key) instead of opening a second one.
pub fn payment_id_for(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&SAGA_ID_NAMESPACE, format!("payment:{order_id}").as_bytes())
}

/// The refund of a confirmed order that is cancelled: one per order, derived likewise.
pub fn refund_id_for(order_id: Uuid) -> Uuid {
    Uuid::new_v5(&SAGA_ID_NAMESPACE, format!("refund:{order_id}").as_bytes())
}

/// Where a fulfilment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Reservations requested for every line; waiting for all of them (deadline).
    Reserving,
    /// Every line reserved; authorization requested (deadline).
    Authorizing,
    /// Authorized: confirm, capture and commit requested; past the point of no return.
    Completing,
    /// Confirmed, captured, reservations committed.
    Completed,
    /// Undoing: releasing reservations, voiding, cancelling the order.
    Compensating,
    /// Compensated: the order is cancelled and nothing is held. Terminal.
    Cancelled,
    /// A completed order was cancelled: refund and stock return requested.
    Refunding,
    /// Refunded and stock returned. Terminal.
    Refunded,
    /// A step after the point of no return was refused; needs an operator. Terminal.
    Failed,
}

impl SagaStatus {
    /// Every status, for gauges that must show the empty ones as 0.
    pub const ALL: [Self; 9] = [
        Self::Reserving,
        Self::Authorizing,
        Self::Completing,
        Self::Completed,
        Self::Compensating,
        Self::Cancelled,
        Self::Refunding,
        Self::Refunded,
        Self::Failed,
    ];

    /// Stable lowercase name (the `status` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserving => "reserving",
            Self::Authorizing => "authorizing",
            Self::Completing => "completing",
            Self::Completed => "completed",
            Self::Compensating => "compensating",
            Self::Cancelled => "cancelled",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the saga knows about the payment, from payment events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentProgress {
    /// No outcome observed.
    None,
    /// Funds held.
    Authorized,
    /// Refused by the gateway.
    Declined,
    /// Funds taken.
    Captured,
    /// Hold released.
    Voided,
    /// Captured funds returned.
    Refunded,
}

/// A command the saga sends to the command API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SagaCommand {
    /// `POST /inventory/{sku}/reservations`.
    ReserveStock {
        /// SKU.
        sku: Sku,
        /// Units.
        quantity: u32,
    },
    /// `POST /inventory/{sku}/reservations/{order_id}/release`.
    ReleaseReservation {
        /// SKU.
        sku: Sku,
    },
    /// `POST /inventory/{sku}/reservations/{order_id}/commit`.
    CommitReservation {
        /// SKU.
        sku: Sku,
    },
    /// `POST /inventory/{sku}/adjustments` with a positive delta: committed units come back.
    ReturnStock {
        /// SKU.
        sku: Sku,
        /// Units returned.
        quantity: u32,
        /// Audit reason.
        reason: String,
    },
    /// `POST /payments` for the order's derived payment id.
    AuthorizePayment {
        /// Amount (the order total).
        amount: Money,
        /// Payment-method token.
        payment_method: String,
    },
    /// `POST /payments/{payment_id}/capture`.
    CapturePayment {
        /// Amount (the order total).
        amount: Money,
    },
    /// `POST /payments/{payment_id}/void`.
    VoidPayment {
        /// Why.
        reason: String,
    },
    /// `POST /payments/{payment_id}/refunds`.
    RefundPayment {
        /// Derived refund id.
        refund_id: Uuid,
        /// Amount (everything captured).
        amount: Money,
        /// Why.
        reason: String,
    },
    /// `POST /orders/{order_id}/confirm`.
    ConfirmOrder,
    /// `POST /orders/{order_id}/cancel`.
    CancelOrder {
        /// Why (kept in the order's audit trail).
        reason: String,
    },
}

impl SagaCommand {
    /// The step name in idempotency keys and logs: unique per command within one cause.
    pub fn step(&self) -> String {
        match self {
            Self::ReserveStock { sku, .. } => format!("reserve:{sku}"),
            Self::ReleaseReservation { sku } => format!("release:{sku}"),
            Self::CommitReservation { sku } => format!("commit:{sku}"),
            Self::ReturnStock { sku, .. } => format!("return:{sku}"),
            Self::AuthorizePayment { .. } => "authorize".into(),
            Self::CapturePayment { .. } => "capture".into(),
            Self::VoidPayment { .. } => "void".into(),
            Self::RefundPayment { .. } => "refund".into(),
            Self::ConfirmOrder => "confirm".into(),
            Self::CancelOrder { .. } => "cancel".into(),
        }
    }
}

/// A command together with the event that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCommand {
    /// What to do.
    pub command: SagaCommand,
    /// The event that caused it: the command's `X-Causation-Id`.
    pub causation_id: Uuid,
}

impl IssuedCommand {
    /// `saga:<causing event id>:<step>`. A retry, a redelivered event or a restarted saga
    /// derives the same key, so the command API replays instead of acting twice.
    pub fn idempotency_key(&self) -> String {
        format!("saga:{}:{}", self.causation_id, self.command.step())
    }
}

/// An event the saga reacts to (decoded from Kafka by `runner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The order is confirmed.
    OrderConfirmed,
    /// The order is cancelled (by the saga or by anyone else).
    OrderCancelled {
        /// Why.
        reason: String,
    },
    /// `sku` is reserved for the order.
    StockReserved {
        /// SKU.
        sku: Sku,
    },
    /// The order's reservation of `sku` is released.
    ReservationReleased {
        /// SKU.
        sku: Sku,
    },
    /// The order's reservation of `sku` is committed.
    ReservationCommitted {
        /// SKU.
        sku: Sku,
    },
    /// The payment is authorized.
    PaymentAuthorized,
    /// The payment is declined.
    PaymentDeclined {
        /// Why.
        reason: DeclineReason,
    },
    /// The payment is captured.
    PaymentCaptured,
    /// The payment is voided.
    PaymentVoided,
    /// (Part of) the payment is refunded.
    PaymentRefunded,
}

/// Everything that moves a saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An event of the flow, with its id (the causation of whatever it triggers).
    Event {
        /// The event's id.
        event_id: Uuid,
        /// The event.
        event: Observed,
    },
    /// The command API refused a command for good (4xx other than a concurrency conflict).
    /// A refused command records no event, so this is the only way the saga learns of it.
    Rejected {
        /// The refused command.
        command: SagaCommand,
        /// The problem's `code`, e.g. `inventory.insufficient_stock`.
        code: String,
    },
    /// The current step's deadline passed.
    DeadlinePassed {
        /// Code of the last transient failure of the step's command, if any.
        last_error: Option<String>,
    },
}

/// What a transition asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Commands to issue, in order.
    pub commands: Vec<IssuedCommand>,
    /// Whether commands issued earlier and not yet sent are to be dropped (the flow turned
    /// to compensation, so forward steps must not go out any more).
    pub supersede_pending: bool,
}

/// One line of the order, as the saga needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaLine {
    /// SKU.
    pub sku: Sku,
    /// Units.
    pub quantity: u32,
}

/// The facts of `OrderPlaced` the saga starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    /// The order.
    pub order_id: Uuid,
    /// `OrderPlaced`'s event id: the cause of the first commands.
    pub event_id: Uuid,
    /// `OrderPlaced`'s correlation id: carried by every command of the flow.
    pub correlation_id: Uuid,
    /// The lines.
    pub lines: Vec<OrderLine>,
    /// The total.
    pub total: Money,
    /// The payment-method token, if the customer gave one.
    pub payment_method: Option<String>,
}

/// Longest reason the order accepts; longer texts are cut.
const MAX_REASON_CHARS: usize = 500;

/// One order's fulfilment: the persisted saga instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fulfilment {
    /// The order.
    pub order_id: Uuid,
    /// The flow's correlation id.
    pub correlation_id: Uuid,
    /// The derived payment id.
    pub payment_id: Uuid,
    /// The order's lines.
    pub lines: Vec<SagaLine>,
    /// The order's total.
    pub total: Money,
    /// Payment-method token.
    pub payment_method: Option<String>,
    /// Where the flow stands.
    pub status: SagaStatus,
    /// Why the flow is compensating, refunding or failed.
    pub reason: Option<String>,
    /// The event that started the current step (causation of what a deadline triggers).
    pub step_cause: Uuid,
    /// When the current step times out.
    pub deadline: Option<DateTime<Utc>>,
    /// SKUs whose reservation for the order is held (observed, not yet released/committed).
    pub reserved: BTreeSet<Sku>,
    /// SKUs whose reservation was committed.
    pub committed: BTreeSet<Sku>,
    /// SKUs with a release issued and not yet observed (or refused).
    pub releasing: BTreeSet<Sku>,
    /// Reservations were requested for every line.
    #[serde(default)]
    pub reservations_requested: bool,
    /// SKUs whose reservation the command API refused (nothing held there).
    #[serde(default)]
    pub reserve_refused: BTreeSet<Sku>,
    /// The payment, as observed.
    pub payment: PaymentProgress,
    /// A void was issued.
    pub void_issued: bool,
    /// `OrderConfirmed` observed.
    pub order_confirmed: bool,
    /// `OrderCancelled` observed (or cancelling was refused because it already was).
    pub order_cancelled: bool,
    /// A cancellation of the confirmed order, handled once completion settles:
    /// `(reason, cancelling event id)`.
    pub cancellation: Option<(String, Uuid)>,
}

impl Fulfilment {
    /// A saga for a placed order, and its first commands: reserve every line — or, without
    /// a payment method for a non-zero total, cancel straight away.
    pub fn start(
        placed: PlacedOrder,
        now: DateTime<Utc>,
        step_timeout: Duration,
    ) -> (Self, Decision) {
        let mut saga = Self {
            order_id: placed.order_id,
            correlation_id: placed.correlation_id,
            payment_id: payment_id_for(placed.order_id),
            lines: placed
                .lines
                .iter()
                .map(|line| SagaLine {
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                })
                .collect(),
            total: placed.total,
            payment_method: placed.payment_method,
            status: SagaStatus::Reserving,
            reason: None,
            step_cause: placed.event_id,
            deadline: None,
            reserved: BTreeSet::new(),
            committed: BTreeSet::new(),
            releasing: BTreeSet::new(),
            reservations_requested: false,
            reserve_refused: BTreeSet::new(),
            payment: PaymentProgress::None,
            void_issued: false,
            order_confirmed: false,
            order_cancelled: false,
            cancellation: None,
        };
        let mut decision = Decision::default();
        if saga.needs_payment() && saga.payment_method.is_none() {
            saga.compensate("no payment method", placed.event_id, true, &mut decision);
            return (saga, decision);
        }
        saga.deadline = Some(deadline(now, step_timeout));
        saga.reservations_requested = true;
        for line in &saga.lines {
            decision.commands.push(IssuedCommand {
                command: SagaCommand::ReserveStock {
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                },
                causation_id: placed.event_id,
            });
        }
        (saga, decision)
    }

    /// Whether the flow has reached an end (it may still react to late events).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status,
            SagaStatus::Cancelled | SagaStatus::Refunded | SagaStatus::Failed
        )
    }

    fn all_lines_reserved(&self) -> bool {
        self.lines
            .iter()
            .all(|line| self.reserved.contains(&line.sku))
    }

    fn needs_payment(&self) -> bool {
        self.total.is_positive()
    }

    /// Applies `input` at `now`; returns the commands to issue.
    pub fn handle(&mut self, input: Input, now: DateTime<Utc>, step_timeout: Duration) -> Decision {
        let mut decision = Decision::default();
        match input {
            Input::Event { event_id, event } => {
                self.observe(&event);
                self.react(event_id, event, now, step_timeout, &mut decision);
            }
            Input::Rejected { command, code } => self.rejected(command, &code, &mut decision),
            Input::DeadlinePassed { last_error } => {
                let step = match self.status {
                    SagaStatus::Reserving => "stock reservation",
                    SagaStatus::Authorizing => "payment authorization",
                    _ => {
                        self.deadline = None;
                        return decision;
                    }
                };
                let reason = match last_error {
                    Some(code) => format!("{step} timed out ({code})"),
                    None => format!("{step} timed out"),
                };
                self.compensate(&reason, self.step_cause, true, &mut decision);
            }
        }
        decision
    }

    /// Bookkeeping every status shares: what is held, what the payment and order are.
    fn observe(&mut self, event: &Observed) {
        match event {
            Observed::StockReserved { sku } => {
                self.reserved.insert(sku.clone());
            }
            Observed::ReservationReleased { sku } => {
                self.reserved.remove(sku);
                self.releasing.remove(sku);
            }
            Observed::ReservationCommitted { sku } => {
                self.reserved.remove(sku);
                self.committed.insert(sku.clone());
            }
            Observed::PaymentAuthorized => self.payment = PaymentProgress::Authorized,
            Observed::PaymentDeclined { .. } => self.payment = PaymentProgress::Declined,
            Observed::PaymentCaptured => self.payment = PaymentProgress::Captured,
            Observed::PaymentVoided => self.payment = PaymentProgress::Voided,
            Observed::PaymentRefunded => self.payment = PaymentProgress::Refunded,
            Observed::OrderConfirmed => self.order_confirmed = true,
            Observed::OrderCancelled { .. } => self.order_cancelled = true,
        }
    }

    fn react(
        &mut self,
        event_id: Uuid,
        event: Observed,
        now: DateTime<Utc>,
        step_timeout: Duration,
        decision: &mut Decision,
    ) {
        match (self.status, event) {
            (SagaStatus::Reserving, Observed::StockReserved { .. })
                if self.all_lines_reserved() =>
            {
                if self.needs_payment() {
                    self.status = SagaStatus::Authorizing;
                    self.step_cause = event_id;
                    self.deadline = Some(deadline(now, step_timeout));
                    decision.commands.push(IssuedCommand {
                        command: SagaCommand::AuthorizePayment {
                            amount: self.total,
                            payment_method: self.payment_method.clone().unwrap_or_default(),
                        },
                        causation_id: event_id,
                    });
                } else {
                    self.complete(event_id, decision);
                }
            }
            (SagaStatus::Authorizing, Observed::PaymentAuthorized) => {
                self.complete(event_id, decision);
            }
            (SagaStatus::Authorizing, Observed::PaymentDeclined { reason }) => {
                self.compensate(
                    &format!("payment declined: {reason}"),
                    event_id,
                    true,
                    decision,
                );
            }
            (
                SagaStatus::Reserving | SagaStatus::Authorizing,
                Observed::OrderCancelled { reason },
            ) => {
                self.compensate(&reason, event_id, false, decision);
            }
            (SagaStatus::Completing, Observed::OrderCancelled { reason }) => {
                if self.order_confirmed {
                    // Cancelled after confirmation: refund once completion settles.
                    self.cancellation = Some((reason, event_id));
                    self.settle_completion(decision);
                } else {
                    // Cancelled before our confirmation landed (which will be refused).
                    self.compensate(&reason, event_id, false, decision);
                }
            }
            (SagaStatus::Completing, _) => self.settle_completion(decision),
            (SagaStatus::Completed, Observed::OrderCancelled { reason }) => {
                self.cancellation = Some((reason, event_id));
                self.settle_completion(decision);
            }
            (SagaStatus::Refunding, Observed::PaymentRefunded) => {
                self.status = SagaStatus::Refunded;
            }
            (SagaStatus::Compensating | SagaStatus::Cancelled, event) => {
                self.undo_late(event_id, &event, decision);
                self.settle_compensation();
            }
            _ => {}
        }
    }

    /// Authorized (or nothing to pay): confirm, capture and commit, from `cause`.
    fn complete(&mut self, cause: Uuid, decision: &mut Decision) {
        self.status = SagaStatus::Completing;
        self.step_cause = cause;
        self.deadline = None;
        let issue = |command| IssuedCommand {
            command,
            causation_id: cause,
        };
        // Confirm first: if the order was cancelled meanwhile, the refusal turns the flow
        // to compensation before any money is taken.
        decision.commands.push(issue(SagaCommand::ConfirmOrder));
        if self.needs_payment() {
            decision
                .commands
                .push(issue(SagaCommand::CapturePayment { amount: self.total }));
        }
        for line in &self.lines {
            decision
                .commands
                .push(issue(SagaCommand::CommitReservation {
                    sku: line.sku.clone(),
                }));
        }
    }

    fn settle_completion(&mut self, decision: &mut Decision) {
        if self.status == SagaStatus::Completing {
            let paid = !self.needs_payment() || self.payment == PaymentProgress::Captured;
            let committed = self
                .lines
                .iter()
                .all(|line| self.committed.contains(&line.sku));
            if !(self.order_confirmed && paid && committed) {
                return;
            }
            self.status = SagaStatus::Completed;
        }
        if self.status != SagaStatus::Completed {
            return;
        }
        let Some((reason, cause)) = self.cancellation.clone() else {
            return;
        };
        // A confirmed order was cancelled: money back, committed stock back on the shelf.
        self.status = SagaStatus::Refunding;
        self.reason = Some(reason.clone());
        self.step_cause = cause;
        if self.needs_payment() {
            decision.commands.push(IssuedCommand {
                command: SagaCommand::RefundPayment {
                    refund_id: refund_id_for(self.order_id),
                    amount: self.total,
                    reason: reason.clone(),
                },
                causation_id: cause,
            });
        }
        for line in &self.lines {
            decision.commands.push(IssuedCommand {
                command: SagaCommand::ReturnStock {
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    reason: clip(&format!(
                        "returned to stock: order {} cancelled after confirmation",
                        self.order_id
                    )),
                },
                causation_id: cause,
            });
        }
        if !self.needs_payment() {
            self.status = SagaStatus::Refunded;
        }
    }

    /// Turns the flow to compensation: drop forward steps not yet sent, release what is
    /// held, void an authorization, cancel the order (unless it already is).
    fn compensate(
        &mut self,
        reason: &str,
        cause: Uuid,
        cancel_order: bool,
        decision: &mut Decision,
    ) {
        let reason = clip(reason);
        self.status = SagaStatus::Compensating;
        self.reason = Some(reason.clone());
        self.step_cause = cause;
        self.deadline = None;
        decision.supersede_pending = true;
        // Release what is observed held, and every line whose reservation may be in flight
        // (accepted by the command API, its event not seen yet): the release reaches the
        // inventory after the reservation, as commands of a saga go out in order. A release
        // of a reservation that never happened is refused and counts as done.
        let mut to_release = self.reserved.clone();
        if self.reservations_requested {
            to_release.extend(
                self.lines
                    .iter()
                    .map(|line| line.sku.clone())
                    .filter(|sku| !self.reserve_refused.contains(sku)),
            );
        }
        for sku in to_release {
            self.release(sku, cause, decision);
        }
        if self.payment == PaymentProgress::Authorized {
            self.void(&reason, cause, decision);
        }
        if cancel_order && !self.order_cancelled {
            decision.commands.push(IssuedCommand {
                command: SagaCommand::CancelOrder { reason },
                causation_id: cause,
            });
        }
        self.settle_compensation();
    }

    fn release(&mut self, sku: Sku, cause: Uuid, decision: &mut Decision) {
        if self.releasing.insert(sku.clone()) {
            decision.commands.push(IssuedCommand {
                command: SagaCommand::ReleaseReservation { sku },
                causation_id: cause,
            });
        }
    }

    fn void(&mut self, reason: &str, cause: Uuid, decision: &mut Decision) {
        if !self.void_issued {
            self.void_issued = true;
            decision.commands.push(IssuedCommand {
                command: SagaCommand::VoidPayment {
                    reason: clip(reason),
                },
                causation_id: cause,
            });
        }
    }

    /// After compensation started, whatever arrives late is undone too: a reservation that
    /// was in flight is released, an authorization that was in flight is voided.
    fn undo_late(&mut self, event_id: Uuid, event: &Observed, decision: &mut Decision) {
        let reason = self
            .reason
            .clone()
            .unwrap_or_else(|| "order fulfilment compensated".into());
        match event {
            Observed::StockReserved { sku } => self.release(sku.clone(), event_id, decision),
            Observed::PaymentAuthorized => self.void(&reason, event_id, decision),
            _ => {}
        }
    }

    fn settle_compensation(&mut self) {
        if !matches!(
            self.status,
            SagaStatus::Compensating | SagaStatus::Cancelled
        ) {
            return;
        }
        let done = self.order_cancelled
            && self.reserved.is_empty()
            && self.releasing.is_empty()
            && self.payment != PaymentProgress::Authorized;
        self.status = if done {
            SagaStatus::Cancelled
        } else {
            SagaStatus::Compensating
        };
    }

    fn rejected(&mut self, command: SagaCommand, code: &str, decision: &mut Decision) {
        match (self.status, command) {
            (SagaStatus::Reserving, SagaCommand::ReserveStock { sku, .. }) => {
                self.reserve_refused.insert(sku.clone());
                let reason = if code == "inventory.insufficient_stock" {
                    format!("out of stock: {sku}")
                } else {
                    format!("stock reservation failed for {sku}: {code}")
                };
                self.compensate(&reason, self.step_cause, true, decision);
            }
            (SagaStatus::Authorizing, SagaCommand::AuthorizePayment { .. }) => {
                self.compensate(
                    &format!("payment authorization failed: {code}"),
                    self.step_cause,
                    true,
                    decision,
                );
            }
            (SagaStatus::Completing, SagaCommand::ConfirmOrder) => {
                self.compensate(
                    &format!("order could not be confirmed: {code}"),
                    self.step_cause,
                    true,
                    decision,
                );
            }
            (SagaStatus::Compensating | SagaStatus::Cancelled, command) => {
                // Refusals here mean "already so": nothing held, already cancelled, already
                // voided. The flow must not wait for an event that will never come.
                match command {
                    SagaCommand::ReleaseReservation { sku } => {
                        self.releasing.remove(&sku);
                        self.reserved.remove(&sku);
                    }
                    SagaCommand::CancelOrder { .. } => self.order_cancelled = true,
                    SagaCommand::VoidPayment { .. } => self.payment = PaymentProgress::Voided,
                    _ => {}
                }
                self.settle_compensation();
            }
            (
                SagaStatus::Completing | SagaStatus::Refunding,
                SagaCommand::CapturePayment { .. }
                | SagaCommand::CommitReservation { .. }
                | SagaCommand::RefundPayment { .. }
                | SagaCommand::ReturnStock { .. },
            ) => {
                self.status = SagaStatus::Failed;
                self.reason = Some(clip(&format!(
                    "a step past confirmation was refused: {code}"
                )));
            }
            _ => {}
        }
    }
}

fn deadline(now: DateTime<Utc>, timeout: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX)
}

fn clip(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use aggregates::Currency;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::new("EUR").unwrap())
    }

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    const ORDER: u128 = 0x0de7;
    const PLACED: u128 = 1;

    fn placed(payment_method: Option<&str>, total: i64) -> PlacedOrder {
        PlacedOrder {
            order_id: id(ORDER),
            event_id: id(PLACED),
            correlation_id: id(0xc0),
            lines: vec![
                OrderLine {
                    sku: sku("A"),
                    quantity: 2,
                    unit_price: eur(total / 4),
                },
                OrderLine {
                    sku: sku("B"),
                    quantity: 1,
                    unit_price: eur(total / 2),
                },
            ],
            total: eur(total),
            payment_method: payment_method.map(str::to_owned),
        }
    }

    fn started() -> Fulfilment {
        Fulfilment::start(placed(Some("tok_visa"), 1000), now(), TIMEOUT).0
    }

    fn event(saga: &mut Fulfilment, event_id: u128, event: Observed) -> Decision {
        saga.handle(
            Input::Event {
                event_id: id(event_id),
                event,
            },
            now(),
            TIMEOUT,
        )
    }

    fn commands(decision: &Decision) -> Vec<SagaCommand> {
        decision
            .commands
            .iter()
            .map(|c| c.command.clone())
            .collect()
    }

    fn reserved(sku_name: &str) -> Observed {
        Observed::StockReserved { sku: sku(sku_name) }
    }

    fn authorizing() -> Fulfilment {
        let mut saga = started();
        event(&mut saga, 10, reserved("A"));
        event(&mut saga, 11, reserved("B"));
        assert_eq!(saga.status, SagaStatus::Authorizing);
        saga
    }

    fn completed() -> Fulfilment {
        let mut saga = authorizing();
        event(&mut saga, 20, Observed::PaymentAuthorized);
        event(&mut saga, 21, Observed::OrderConfirmed);
        event(&mut saga, 22, Observed::PaymentCaptured);
        event(
            &mut saga,
            23,
            Observed::ReservationCommitted { sku: sku("A") },
        );
        event(
            &mut saga,
            24,
            Observed::ReservationCommitted { sku: sku("B") },
        );
        assert_eq!(saga.status, SagaStatus::Completed);
        saga
    }

    #[test]
    fn placing_reserves_every_line_under_a_deadline() {
        let (saga, decision) = Fulfilment::start(placed(Some("tok_visa"), 1000), now(), TIMEOUT);
        assert_eq!(saga.status, SagaStatus::Reserving);
        assert_eq!(saga.deadline, Some(now() + chrono::Duration::seconds(30)));
        assert_eq!(saga.payment_id, payment_id_for(id(ORDER)));
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::ReserveStock {
                    sku: sku("A"),
                    quantity: 2
                },
                SagaCommand::ReserveStock {
                    sku: sku("B"),
                    quantity: 1
                },
            ]
        );
        assert!(
            decision
                .commands
                .iter()
                .all(|c| c.causation_id == id(PLACED))
        );
        assert_eq!(
            decision.commands[0].idempotency_key(),
            format!("saga:{}:reserve:A", id(PLACED))
        );
    }

    #[test]
    fn without_a_payment_method_the_order_is_cancelled_and_nothing_reserved() {
        let (saga, decision) = Fulfilment::start(placed(None, 1000), now(), TIMEOUT);
        assert_eq!(saga.status, SagaStatus::Compensating);
        assert_eq!(
            commands(&decision),
            [SagaCommand::CancelOrder {
                reason: "no payment method".into()
            }]
        );
    }

    #[test]
    fn the_happy_path_authorizes_then_confirms_captures_and_commits() {
        let mut saga = started();
        assert!(event(&mut saga, 10, reserved("A")).commands.is_empty());
        let decision = event(&mut saga, 11, reserved("B"));
        assert_eq!(saga.status, SagaStatus::Authorizing);
        assert_eq!(
            commands(&decision),
            [SagaCommand::AuthorizePayment {
                amount: eur(1000),
                payment_method: "tok_visa".into()
            }]
        );
        assert_eq!(decision.commands[0].causation_id, id(11));

        let decision = event(&mut saga, 20, Observed::PaymentAuthorized);
        assert_eq!(saga.status, SagaStatus::Completing);
        assert_eq!(saga.deadline, None, "past the point of no return");
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::ConfirmOrder,
                SagaCommand::CapturePayment { amount: eur(1000) },
                SagaCommand::CommitReservation { sku: sku("A") },
                SagaCommand::CommitReservation { sku: sku("B") },
            ]
        );
        event(&mut saga, 21, Observed::OrderConfirmed);
        event(&mut saga, 22, Observed::PaymentCaptured);
        event(
            &mut saga,
            23,
            Observed::ReservationCommitted { sku: sku("A") },
        );
        assert_eq!(saga.status, SagaStatus::Completing);
        let decision = event(
            &mut saga,
            24,
            Observed::ReservationCommitted { sku: sku("B") },
        );
        assert_eq!(saga.status, SagaStatus::Completed);
        assert!(decision.commands.is_empty());
    }

    #[test]
    fn an_out_of_stock_line_releases_what_was_reserved_and_cancels() {
        let mut saga = started();
        event(&mut saga, 10, reserved("A"));
        let decision = saga.handle(
            Input::Rejected {
                command: SagaCommand::ReserveStock {
                    sku: sku("B"),
                    quantity: 1,
                },
                code: "inventory.insufficient_stock".into(),
            },
            now(),
            TIMEOUT,
        );
        assert_eq!(saga.status, SagaStatus::Compensating);
        assert!(decision.supersede_pending);
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::ReleaseReservation { sku: sku("A") },
                SagaCommand::CancelOrder {
                    reason: "out of stock: B".into()
                },
            ]
        );
        event(
            &mut saga,
            30,
            Observed::ReservationReleased { sku: sku("A") },
        );
        assert_eq!(saga.status, SagaStatus::Compensating);
        event(
            &mut saga,
            31,
            Observed::OrderCancelled {
                reason: "out of stock: B".into(),
            },
        );
        assert_eq!(saga.status, SagaStatus::Cancelled);
    }

    #[test]
    fn an_out_of_stock_line_releases_a_reservation_not_yet_seen() {
        let mut saga = started();
        let decision = saga.handle(
            Input::Rejected {
                command: SagaCommand::ReserveStock {
                    sku: sku("A"),
                    quantity: 2,
                },
                code: "inventory.insufficient_stock".into(),
            },
            now(),
            TIMEOUT,
        );
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::ReleaseReservation { sku: sku("B") },
                SagaCommand::CancelOrder {
                    reason: "out of stock: A".into()
                },
            ]
        );
        // B had not been sent (superseded): its release is refused, which settles it.
        saga.handle(
            Input::Rejected {
                command: SagaCommand::ReleaseReservation { sku: sku("B") },
                code: "inventory.reservation_not_found".into(),
            },
            now(),
            TIMEOUT,
        );
        event(
            &mut saga,
            30,
            Observed::OrderCancelled {
                reason: "out of stock: A".into(),
            },
        );
        assert_eq!(saga.status, SagaStatus::Cancelled);
    }

    #[test]
    fn a_decline_releases_everything_and_cancels_with_the_reason() {
        let mut saga = authorizing();
        let decision = event(
            &mut saga,
            20,
            Observed::PaymentDeclined {
                reason: DeclineReason::CardDeclined,
            },
        );
        assert_eq!(saga.status, SagaStatus::Compensating);
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::ReleaseReservation { sku: sku("A") },
                SagaCommand::ReleaseReservation { sku: sku("B") },
                SagaCommand::CancelOrder {
                    reason: "payment declined: card_declined".into()
                },
            ]
        );
        assert!(decision.commands.iter().all(|c| c.causation_id == id(20)));
    }

    #[test]
    fn a_passed_deadline_compensates_the_step_naming_the_last_error() {
        let mut saga = authorizing();
        let decision = saga.handle(
            Input::DeadlinePassed {
                last_error: Some("payment.gateway_unavailable".into()),
            },
            now(),
            TIMEOUT,
        );
        assert_eq!(saga.status, SagaStatus::Compensating);
        assert!(
            decision.supersede_pending,
            "the pending authorization is dropped"
        );
        assert_eq!(
            commands(&decision).last(),
            Some(&SagaCommand::CancelOrder {
                reason: "payment authorization timed out (payment.gateway_unavailable)".into()
            })
        );
        assert!(
            decision.commands.iter().all(|c| c.causation_id == id(11)),
            "caused by the event that started the step"
        );

        // An authorization that was in flight and lands late is voided.
        let decision = event(&mut saga, 40, Observed::PaymentAuthorized);
        assert!(matches!(
            commands(&decision)[..],
            [SagaCommand::VoidPayment { .. }]
        ));
        for (n, name) in [(41, "A"), (42, "B")] {
            event(
                &mut saga,
                n,
                Observed::ReservationReleased { sku: sku(name) },
            );
        }
        event(
            &mut saga,
            43,
            Observed::OrderCancelled { reason: "x".into() },
        );
        assert_eq!(saga.status, SagaStatus::Compensating, "void outstanding");
        event(&mut saga, 44, Observed::PaymentVoided);
        assert_eq!(saga.status, SagaStatus::Cancelled);
    }

    #[test]
    fn a_reservation_deadline_releases_what_may_be_in_flight_too() {
        let mut saga = started();
        event(&mut saga, 10, reserved("A"));
        let decision = saga.handle(Input::DeadlinePassed { last_error: None }, now(), TIMEOUT);
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::ReleaseReservation { sku: sku("A") },
                SagaCommand::ReleaseReservation { sku: sku("B") },
                SagaCommand::CancelOrder {
                    reason: "stock reservation timed out".into()
                },
            ]
        );
        // B's reservation lands late: its release is already queued behind it.
        assert!(event(&mut saga, 12, reserved("B")).commands.is_empty());
        event(
            &mut saga,
            13,
            Observed::ReservationReleased { sku: sku("A") },
        );
        event(
            &mut saga,
            14,
            Observed::OrderCancelled { reason: "x".into() },
        );
        assert_eq!(saga.status, SagaStatus::Compensating, "B still held");
        event(
            &mut saga,
            15,
            Observed::ReservationReleased { sku: sku("B") },
        );
        assert_eq!(saga.status, SagaStatus::Cancelled);
    }

    #[test]
    fn a_reservation_seen_after_its_release_is_released_again() {
        let mut saga = authorizing();
        event(
            &mut saga,
            20,
            Observed::PaymentDeclined {
                reason: DeclineReason::CardDeclined,
            },
        );
        event(
            &mut saga,
            21,
            Observed::ReservationReleased { sku: sku("A") },
        );
        let decision = event(&mut saga, 22, reserved("A"));
        assert_eq!(
            commands(&decision),
            [SagaCommand::ReleaseReservation { sku: sku("A") }]
        );
        assert_eq!(decision.commands[0].causation_id, id(22));
    }

    #[test]
    fn deadlines_do_not_apply_past_authorization() {
        let mut saga = completed();
        let decision = saga.handle(Input::DeadlinePassed { last_error: None }, now(), TIMEOUT);
        assert_eq!(decision, Decision::default());
        assert_eq!(saga.status, SagaStatus::Completed);
    }

    #[test]
    fn cancelling_a_completed_order_refunds_and_returns_the_stock() {
        let mut saga = completed();
        let decision = event(
            &mut saga,
            50,
            Observed::OrderCancelled {
                reason: "customer changed their mind".into(),
            },
        );
        assert_eq!(saga.status, SagaStatus::Refunding);
        let returned = |name: &str, quantity| SagaCommand::ReturnStock {
            sku: sku(name),
            quantity,
            reason: format!(
                "returned to stock: order {} cancelled after confirmation",
                id(ORDER)
            ),
        };
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::RefundPayment {
                    refund_id: refund_id_for(id(ORDER)),
                    amount: eur(1000),
                    reason: "customer changed their mind".into()
                },
                returned("A", 2),
                returned("B", 1),
            ]
        );
        event(&mut saga, 51, Observed::PaymentRefunded);
        assert_eq!(saga.status, SagaStatus::Refunded);
    }

    #[test]
    fn a_cancellation_while_completing_waits_for_completion_then_refunds() {
        let mut saga = authorizing();
        event(&mut saga, 20, Observed::PaymentAuthorized);
        event(&mut saga, 21, Observed::OrderConfirmed);
        let decision = event(
            &mut saga,
            22,
            Observed::OrderCancelled {
                reason: "late".into(),
            },
        );
        assert!(decision.commands.is_empty());
        assert_eq!(saga.status, SagaStatus::Completing);
        event(&mut saga, 23, Observed::PaymentCaptured);
        event(
            &mut saga,
            24,
            Observed::ReservationCommitted { sku: sku("A") },
        );
        let decision = event(
            &mut saga,
            25,
            Observed::ReservationCommitted { sku: sku("B") },
        );
        assert_eq!(saga.status, SagaStatus::Refunding);
        assert_eq!(decision.commands.len(), 3);
        assert!(decision.commands.iter().all(|c| c.causation_id == id(22)));
    }

    #[test]
    fn a_cancellation_before_confirmation_voids_and_releases() {
        let mut saga = authorizing();
        event(&mut saga, 20, Observed::PaymentAuthorized);
        let decision = event(
            &mut saga,
            21,
            Observed::OrderCancelled {
                reason: "oops".into(),
            },
        );
        assert_eq!(saga.status, SagaStatus::Compensating);
        assert!(
            decision.supersede_pending,
            "capture and commits must not go out"
        );
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::ReleaseReservation { sku: sku("A") },
                SagaCommand::ReleaseReservation { sku: sku("B") },
                SagaCommand::VoidPayment {
                    reason: "oops".into()
                },
            ],
            "the order is already cancelled"
        );
        // The confirmation sent before is refused; that changes nothing now.
        let decision = saga.handle(
            Input::Rejected {
                command: SagaCommand::ConfirmOrder,
                code: "order.invalid_transition".into(),
            },
            now(),
            TIMEOUT,
        );
        assert!(decision.commands.is_empty());
    }

    #[test]
    fn a_refused_confirmation_compensates() {
        let mut saga = authorizing();
        event(&mut saga, 20, Observed::PaymentAuthorized);
        let decision = saga.handle(
            Input::Rejected {
                command: SagaCommand::ConfirmOrder,
                code: "order.invalid_transition".into(),
            },
            now(),
            TIMEOUT,
        );
        assert_eq!(saga.status, SagaStatus::Compensating);
        assert!(decision.supersede_pending);
        assert!(commands(&decision).contains(&SagaCommand::VoidPayment {
            reason: "order could not be confirmed: order.invalid_transition".into()
        }));
    }

    #[test]
    fn refusals_during_compensation_mean_already_done() {
        let mut saga = authorizing();
        event(
            &mut saga,
            20,
            Observed::PaymentDeclined {
                reason: DeclineReason::ExpiredCard,
            },
        );
        for name in ["A", "B"] {
            saga.handle(
                Input::Rejected {
                    command: SagaCommand::ReleaseReservation { sku: sku(name) },
                    code: "inventory.reservation_not_found".into(),
                },
                now(),
                TIMEOUT,
            );
        }
        assert_eq!(saga.status, SagaStatus::Compensating);
        saga.handle(
            Input::Rejected {
                command: SagaCommand::CancelOrder {
                    reason: "payment declined: expired_card".into(),
                },
                code: "order.invalid_transition".into(),
            },
            now(),
            TIMEOUT,
        );
        assert_eq!(saga.status, SagaStatus::Cancelled);
    }

    #[test]
    fn a_refused_capture_needs_an_operator() {
        let mut saga = authorizing();
        event(&mut saga, 20, Observed::PaymentAuthorized);
        saga.handle(
            Input::Rejected {
                command: SagaCommand::CapturePayment { amount: eur(1000) },
                code: "payment.invalid_transition".into(),
            },
            now(),
            TIMEOUT,
        );
        assert_eq!(saga.status, SagaStatus::Failed);
        assert!(saga.is_terminal());
    }

    #[test]
    fn a_free_order_needs_no_payment() {
        let (mut saga, _) = Fulfilment::start(placed(None, 0), now(), TIMEOUT);
        assert_eq!(saga.status, SagaStatus::Reserving);
        event(&mut saga, 10, reserved("A"));
        let decision = event(&mut saga, 11, reserved("B"));
        assert_eq!(saga.status, SagaStatus::Completing);
        assert_eq!(
            commands(&decision),
            [
                SagaCommand::ConfirmOrder,
                SagaCommand::CommitReservation { sku: sku("A") },
                SagaCommand::CommitReservation { sku: sku("B") },
            ]
        );
    }

    #[test]
    fn replaying_the_same_inputs_gives_the_same_keys() {
        let first = Fulfilment::start(placed(Some("tok_visa"), 1000), now(), TIMEOUT).1;
        let again = Fulfilment::start(placed(Some("tok_visa"), 1000), now(), TIMEOUT).1;
        let keys = |d: &Decision| {
            d.commands
                .iter()
                .map(IssuedCommand::idempotency_key)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&first), keys(&again));
        assert_eq!(payment_id_for(id(1)), payment_id_for(id(1)));
        assert_ne!(payment_id_for(id(1)), payment_id_for(id(2)));
        assert_ne!(payment_id_for(id(1)), refund_id_for(id(1)));
    }

    #[test]
    fn commands_round_trip_through_json() {
        let command = SagaCommand::RefundPayment {
            refund_id: id(9),
            amount: eur(5),
            reason: "r".into(),
        };
        let json = serde_json::to_value(&command).unwrap();
        assert_eq!(json["kind"], "refund_payment");
        assert_eq!(
            serde_json::from_value::<SagaCommand>(json).unwrap(),
            command
        );
        let saga = completed();
        let stored = serde_json::to_value(&saga).unwrap();
        assert_eq!(serde_json::from_value::<Fulfilment>(stored).unwrap(), saga);
    }
}
