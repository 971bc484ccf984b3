//! The projections: which topics each one reads and how it folds an event into its tables.
//!
//! Each projection runs as its own consumer group, owns its tables and only those, and is
//! rebuilt on its own. An `apply` runs inside the projector's batch transaction, after the
//! checkpoint check: it sees each event of an aggregate once, in sequence order.
//!
//! The apply code names its tables unqualified and the transaction decides which schema
//! they resolve in ([`crate::db::enter_schema`]): `read_model` for the live projector, a
//! shadow schema for a rebuild ([`crate::replay`]). Both run the very same statements.

mod orders;
mod payments;
mod stock;

use std::fmt;
use std::str::FromStr;

use event_store::customer_keys::Keyring;
use schemas::AggregateKind;
use sqlx::PgConnection;

use crate::event::ProjectedEvent;

/// What the rebuild's set-based fold of `orders` shares with the live apply.
pub(crate) use orders::{Personal, open_details};
pub(crate) use stock::deltas as stock_deltas;

/// A read model built from the event topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    /// Order view (lines, totals, status, stock reservations, payments, the customer's
    /// personal data until they are forgotten) and orders by customer. Reads every topic:
    /// reservations and payments name their order, forget events their customer.
    Orders,
    /// Stock levels per SKU (on hand, reserved, available). Reads the inventory topic.
    Stock,
    /// Payments by id and by order. Reads the payment topic.
    Payments,
}

impl Projection {
    /// Every projection.
    pub const ALL: [Projection; 3] = [Self::Orders, Self::Stock, Self::Payments];

    /// Stable name: checkpoints, dead letters, consumer groups and notifications use it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Stock => "stock",
            Self::Payments => "payments",
        }
    }

    /// The aggregate types whose topics this projection reads.
    pub fn sources(self) -> &'static [AggregateKind] {
        match self {
            Self::Orders => &[
                AggregateKind::Order,
                AggregateKind::Inventory,
                AggregateKind::Payment,
                AggregateKind::Customer,
            ],
            Self::Stock => &[AggregateKind::Inventory],
            Self::Payments => &[AggregateKind::Payment],
        }
    }

    /// The tables this projection owns, referenced tables before the tables referencing
    /// them (a rebuild creates them in this order).
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Self::Orders => &[
                "order_view",
                "order_view_lines",
                "order_reservations",
                "order_payments",
                "customer_orders",
            ],
            Self::Stock => &["stock_levels"],
            Self::Payments => &["payments"],
        }
    }

    /// A small number unique to this projection (its advisory lock key).
    pub fn ordinal(self) -> i32 {
        match self {
            Self::Orders => 1,
            Self::Stock => 2,
            Self::Payments => 3,
        }
    }

    /// Folds `event` into this projection's tables, as resolved by the transaction's
    /// `search_path` (see the module docs). `keys` opens sealed personal data (the key
    /// table is read on `connection`, ADR 0009); without it, personal data shows as
    /// `unavailable`.
    ///
    /// # Errors
    /// [`ApplyError`]: a database error, or an event the read model cannot take.
    pub async fn apply(
        self,
        connection: &mut PgConnection,
        event: &ProjectedEvent,
        keys: Option<&Keyring>,
    ) -> Result<(), ApplyError> {
        match self {
            Self::Orders => orders::apply(connection, event, keys).await,
            Self::Stock => stock::apply(connection, event).await,
            Self::Payments => payments::apply(connection, event).await,
        }
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Projection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown projection {s:?}: expected orders, stock or payments"))
    }
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The database refused a statement, or is unreachable (see [`ApplyError::failure`]).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event does not fit the read model: it refers to an aggregate the projection has
    /// never seen, or carries values out of range.
    #[error("{0}")]
    Inconsistent(String),
}

/// What a failed apply says about the event, and so what the projector does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database is unreachable or not in shape (connection lost, missing table,
    /// permissions, shutting down): nothing is wrong with the event or its aggregate. The
    /// whole batch waits it out and nothing is dead-lettered.
    Outage,
    /// The event's aggregate cannot be applied now but may be later: a row lock held too
    /// long, a deadlock or serialization failure, a constraint or a reference the read
    /// model does not satisfy yet (another topic may still deliver it). The aggregate is
    /// held for a retry, off the hot path; the others flow on.
    MayPass,
    /// The event can never be applied (SQLSTATE class 22, data exception: a value out of
    /// range, a malformed text): it is dead-lettered at once.
    Permanent,
}

impl ApplyError {
    /// Classifies the failure (see [`Failure`]).
    pub fn failure(&self) -> Failure {
        match self {
            Self::Inconsistent(_) => Failure::MayPass,
            Self::Database(error) => database_failure(error),
        }
    }
}

/// Classifies a database error raised by a statement of one event's apply.
pub fn database_failure(error: &sqlx::Error) -> Failure {
    let sqlx::Error::Database(db) = error else {
        return Failure::Outage;
    };
    match db.code().as_deref() {
        Some(code) if code.starts_with("22") => Failure::Permanent,
        // Integrity constraints; lock_not_available (lock_timeout), query_canceled
        // (statement_timeout), serialization_failure, deadlock_detected.
        Some(code) if code.starts_with("23") => Failure::MayPass,
        Some("55P03" | "57014" | "40001" | "40P01") => Failure::MayPass,
        _ => Failure::Outage,
    }
}

/// Whether the database refused a statement because of the values it carried (SQLSTATE
/// class 22 or 23), as opposed to being unreachable or not in shape.
pub fn is_data_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

fn inconsistent(message: impl Into<String>) -> ApplyError {
    ApplyError::Inconsistent(message.into())
}

/// The event's aggregate id as a UUID (orders and payments are identified by one).
fn aggregate_uuid(event: &ProjectedEvent) -> Result<uuid::Uuid, ApplyError> {
    uuid::Uuid::parse_str(&event.metadata.aggregate_id).map_err(|e| {
        inconsistent(format!(
            "{} id {:?} is not a UUID: {e}",
            event.metadata.aggregate_type, event.metadata.aggregate_id
        ))
    })
}

/// Fails with [`ApplyError::Inconsistent`] when an update found no row.
fn expect_row(rows_affected: u64, event: &ProjectedEvent, what: &str) -> Result<(), ApplyError> {
    if rows_affected == 0 {
        Err(inconsistent(format!(
            "{} of {} {} (sequence {}) refers to {what} the read model does not hold",
            event.event.event_type(),
            event.metadata.aggregate_type,
            event.metadata.aggregate_id,
            event.metadata.sequence
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::source::source_types;

    #[test]
    fn the_read_model_catalog_names_each_projection_as_the_projector_does() {
        let catalog: Vec<(&str, Vec<&str>, i32)> = read_model::catalog::PROJECTIONS
            .iter()
            .map(|entry| (entry.name, entry.sources.to_vec(), entry.lock_key))
            .collect();
        let projector: Vec<(&str, Vec<&str>, i32)> = Projection::ALL
            .iter()
            .map(|p| (p.name(), source_types(*p), p.ordinal()))
            .collect();
        assert_eq!(catalog, projector);
    }
}
