//! The pure domain of keel: the **Order**, **Payment** and **Inventory** aggregates.
//!
//! Every business rule of the platform lives here and nowhere else. The crate does no IO:
//! no database, no Kafka, no HTTP, no Avro, no clock and no random ids. Time and ids arrive
//! inside commands, and the one external dependency (the payment gateway) is a port,
//! [`payment::PaymentGateway`], handed to the aggregate as its cqrs-es `Services`.
//!
//! Each aggregate module has the same shape: `commands` (imperative, one struct per
//! command plus the enum cqrs-es dispatches), `events` (past tense), `errors`, `aggregate`
//! (where `handle` decides and `apply` only folds) and, for payments, `services`.
//!
//! | aggregate | `Aggregate::TYPE` | aggregate id |
//! |---|---|---|
//! | [`order::Order`] | `order` | order UUID |
//! | [`payment::Payment`] | `payment` | payment UUID |
//! | [`inventory::InventoryItem`] | `inventory` | the SKU |
//! | [`customer::Customer`] | `customer` | customer UUID |
//!
//! # Errors
//!
//! Every rejection is a typed error implementing [`DomainError`]: a stable
//! machine-readable [`DomainError::code`] (`"<aggregate>.<rule>"`, never reworded once
//! published) and an [`ErrorCategory`] that adapters map to a transport status without
//! knowing individual variants. A rejected command produces no event.
//!
//! # Events
//!
//! Event enums carry only business facts. Event metadata (event id, correlation and
//! causation ids, actor, occurred-at, idempotency key) travels in the cqrs-es metadata map,
//! never in the payload. Every event enum exposes `EVENT_TYPES`, generated from the enum
//! itself, so contract tests downstream can never miss a variant.

mod error;
mod macros;
mod money;
mod sku;
mod text;

#[cfg(test)]
mod test_support;

pub mod customer;
pub mod inventory;
pub mod order;
pub mod payment;

pub use error::{DomainError, ErrorCategory};

/// A command enum that can name its variant: for logs and metrics labels, without
/// serialising the command.
pub trait NamedCommand {
    /// The command's name, e.g. `"PlaceOrder"`: the variant, which is named after its struct.
    fn command_name(&self) -> &'static str;
}

/// Whether a command that lost a race (another command appended to its aggregate between
/// its load and its append) may be decided again on the fresh state. Only for commands
/// whose decision has no effect outside the aggregate: deciding twice must be the same as
/// deciding once on the state that wins.
pub trait Redecide {
    /// True when deciding `self` again is harmless.
    fn may_redecide(&self) -> bool;
}
pub use money::{Currency, CurrencyError, Money, MoneyError};
pub use sku::{Sku, SkuError};
