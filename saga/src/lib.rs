//! The order fulfilment saga: a process manager that consumes order, inventory and payment
//! events from Kafka (consumer group `keel-saga`) and drives every placed order to
//! confirmed — or compensates — by sending commands to the command API over HTTP.
//!
//! # The flow
//!
//! ```text
//!  OrderPlaced ─► Reserving ──all StockReserved──► Authorizing ──PaymentAuthorized──► Completing
//!   (no payment      │  reserve every line            │  authorize the total          │ confirm, capture,
//!    method:         │                                │  (payment id = v5(order))     │ commit every line
//!    cancel)         │ out of stock / deadline /      │ declined / refused /          ▼
//!                    │ order cancelled                │ deadline / order cancelled  Completed
//!                    ▼                                ▼                               │ OrderCancelled
//!               Compensating ◄────────────────────────┘                               ▼
//!                 release what is held, void an authorization,                   Refunding
//!                 cancel the order with the reason                                 │ refund the capture,
//!                    │ all released, order cancelled, nothing authorized           │ return the stock
//!                    ▼                                                             ▼
//!                 Cancelled                                                      Refunded
//! ```
//!
//! The pure state machine is [`machine::Fulfilment`]; its inputs are observed events, the
//! command API's refusals (a refused command records no event, e.g. insufficient stock) and
//! passed deadlines. Once the payment is authorized the flow is past the point of no return:
//! confirm, capture and commit are retried until they succeed, with no deadline; a refusal
//! there parks the saga as `failed` for an operator. A cancellation of the confirmed order
//! is handled once completion settles: refund the captured amount and put the committed
//! units back on hand (`AdjustStock`, positive delta, with the reason) — committed units
//! have left the reservation books, so releasing is no longer possible.
//!
//! Anything that arrives after compensation started is undone as well: a reservation that
//! was in flight is released, an authorization that was in flight is voided.
//!
//! # Exactly-once effect over at-least-once delivery
//!
//! - An event is acted on only if its sequence is the next one of its aggregate
//!   (`saga_checkpoints`, as the projectors do), in the transaction that applies the
//!   transition; redeliveries are skipped. `saga_processed_events` guards the same by
//!   event id and records why the saga did what it did.
//! - Events come in batches, like the projector's (`KEEL_SAGA_BATCH_SIZE`,
//!   `KEEL_SAGA_BATCH_LINGER_MS`): one transaction and three checkpoint statements per
//!   batch, so an event the saga has no use for costs it nearly nothing ([`intake`]). A
//!   batch that fails is applied again one event per transaction.
//! - A transition and the commands it decides are written in one transaction
//!   (`saga_commands`, a small outbox); the dispatcher sends them afterwards, in order per
//!   saga, under the saga's row lock, until each is accepted or refused.
//! - Every command carries `Idempotency-Key: saga:<causing event id>:<step>`. A crash
//!   after the command API recorded a command but before the saga noted it means the
//!   command is sent again with the same key, and the command API replays its first
//!   answer instead of acting twice. Payment and refund ids are UUIDv5 of the order, so a
//!   retried authorization hits the same payment aggregate and the same gateway key.
//!
//! So a saga killed between two steps — say after reserving, before authorizing — resumes
//! in its successor: the authorization is already queued, the reservations are not redone.
//!
//! # Audit trail
//!
//! Every command carries `X-Correlation-Id` = the `OrderPlaced` event's correlation id,
//! `X-Causation-Id` = the event that caused the step, and `X-Actor: saga:order-fulfilment`,
//! so the event store's metadata shows the whole flow under one correlation id. It also
//! carries the causing event's W3C `traceparent`, stored with the queued command
//! (`saga_commands.traceparent`), so the flow's events stay in the caller's trace although
//! the dispatcher sends them later, outside the consumer's span.
//!
//! # Documented choices
//!
//! - **Gateway down.** The command API guards the gateway (`crate::gateway`): timeout per
//!   call, retries with backoff and jitter, and a circuit breaker that fails fast with 503.
//!   The saga treats a 503 as transient: it *waits* — resends the authorization with
//!   exponential backoff and full jitter — until the step's deadline, then compensates
//!   ("payment authorization timed out (payment.gateway_unavailable)"). A short outage
//!   costs a delay, a long one a cancelled order with its stock released, never a stuck
//!   reservation.
//! - **Timeouts.** Reserving and authorizing each have a deadline
//!   (`KEEL_SAGA_STEP_TIMEOUT_MS`), stored in `saga_instances.deadline`; a periodic sweep
//!   compensates sagas past it. Steps after authorization have none (see above).
//! - **Replays never trigger the saga.** A projection rebuild reads the event store, not
//!   Kafka, and writes only read models, so it cannot reach the saga, which consumes Kafka
//!   only, in its own consumer group (projector groups resetting their offsets do not move
//!   it). As defence in depth, a message with header `replay: true` is ignored.
//! - **Where a new group starts.** `earliest` by default (nothing published is missed);
//!   `KEEL_SAGA_START_FROM=latest` when deploying onto topics with history that must not
//!   be fulfilled again.

pub mod client;
pub mod config;
pub mod decode;
pub mod intake;
pub mod machine;
pub mod runner;
pub mod store;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

pub use config::{SagaConfig, StartFrom};
pub use machine::{Fulfilment, SAGA_ACTOR, SagaCommand, SagaStatus, payment_id_for};
pub use runner::{DispatchHook, SagaRunner, StartError};

/// The saga's own tables (`migrations/`: instances, queued commands with their trace
/// context, checkpoints, processed events). Its versions (20–29) share `public._sqlx_migrations` with the event store's
/// (1–19), so each migrator ignores the other's (`ignore_missing`); version 20 kept its
/// number and bytes when it moved here, so databases migrated before keep their checksum.
pub static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!()
};

/// Applies [`MIGRATOR`]; concurrent callers are serialized by sqlx's advisory lock.
///
/// # Errors
/// The database is unreachable, or a migration fails.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}
