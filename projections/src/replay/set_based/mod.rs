//! Set-based rebuild: a slice of events is folded in memory, row by row, and every touched
//! row is written once with one multi-row statement per table, instead of one or more
//! statements per event. It must end exactly where the live projector's apply code ends
//! (the rebuild tests compare both, row for row), so each fold repeats that code's rules:
//! which event may create a row, which finds none, the tables' CHECK constraints after
//! every event, and the columns each event stamps.
//!
//! A fold starts from the stored rows of the slice's keys (read once per slice) and holds
//! each row's state in memory. That needs every row to depend on the events of one source
//! aggregate only, so that the slice's order between aggregates does not matter:
//! - [`stock`]: one row per SKU.
//! - [`payments`]: one row per payment; refunds are folded into typed values and their JSON
//!   is built by PostgreSQL, with the live statement's expression.
//! - [`orders`]: an order's view, lines and listing row depend on its order's events, a
//!   reservation on its SKU's, an order payment on its payment's. The exception is
//!   `CustomerForgotten`, which erases rows of other aggregates: the fold writes what it
//!   holds, the live code applies that event, and a new fold starts after it.
//!
//! The rows of an aggregate with no event applied before the slice cannot be stored yet,
//! so a fold reads only the rows of the others ([`Prior`]): a first rebuild meets most
//! aggregates in one slice and reads almost nothing.
//!
//! An event the live code would refuse is refused by the fold, before anything is
//! written. The fold does not report it itself: it rolls back to a savepoint and hands the
//! slice to the live code, event by event, which refuses the same event with its own error
//! ([`ReplayError::Refused`]). The same happens when PostgreSQL refuses the folded rows for
//! their values (a text the fold cannot check, such as one with a NUL character). So a
//! refusal reads the same whichever way a rebuild runs, and a fold that refused wrongly
//! costs time, never rows.

mod orders;
mod payments;
mod stock;

use std::collections::{HashMap, HashSet};

use event_store::customer_keys::Keyring;
use sqlx::PgConnection;
use tracing::warn;

use super::ReplayError;
use super::apply::apply_one;
use super::source::StoredEvent;
use crate::Projection;
use crate::event::AggregateKey;
use crate::projection::is_data_error;

/// The aggregates with an event applied before a slice: ids by aggregate type, so that a
/// lookup per event borrows the event's own strings instead of building a key.
#[derive(Debug, Default)]
pub(super) struct AppliedBefore(HashMap<String, HashSet<String>>);

impl AppliedBefore {
    /// Those of `checkpoints` past sequence 0.
    pub(super) fn of<'k>(
        checkpoints: impl IntoIterator<Item = (&'k AggregateKey, &'k i64)>,
    ) -> Self {
        let mut applied = Self::default();
        for (key, _) in checkpoints
            .into_iter()
            .filter(|(_, sequence)| **sequence > 0)
        {
            applied
                .0
                .entry(key.aggregate_type.clone())
                .or_default()
                .insert(key.aggregate_id.clone());
        }
        applied
    }

    fn contains(&self, stored: &StoredEvent) -> bool {
        let metadata = &stored.event.metadata;
        self.0
            .get(metadata.aggregate_type.as_str())
            .is_some_and(|ids| ids.contains(metadata.aggregate_id.as_str()))
    }
}

/// Which aggregates' rows the tables may hold when a fold starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Prior<'a> {
    /// Only those of the aggregates with an event applied before the slice.
    Applied(&'a AppliedBefore),
    /// Any aggregate's (after an event the live code applied within the slice).
    Any,
}

impl Prior<'_> {
    /// Whether the tables may hold rows of the aggregate of `stored`, so a fold must read
    /// them.
    fn may_hold_rows_of(self, stored: &StoredEvent) -> bool {
        match self {
            Self::Applied(applied) => applied.contains(stored),
            Self::Any => true,
        }
    }
}

/// Folds `events` (in apply order: each aggregate's events in sequence order, gaps already
/// filled) into the tables the transaction's `search_path` resolves. `keys` opens sealed
/// personal data as the live apply does; `prior` says whose rows may be stored already.
pub(super) async fn apply(
    connection: &mut PgConnection,
    projection: Projection,
    events: &[&StoredEvent],
    keys: Option<&Keyring>,
    prior: Prior<'_>,
) -> Result<(), ReplayError> {
    match projection {
        Projection::Orders => orders::apply(connection, events, keys, prior).await,
        Projection::Stock | Projection::Payments => {
            fold_or_live(connection, projection, events, keys, prior).await
        }
    }
}

/// Folds `events` and writes the result; when the fold refuses an event, or PostgreSQL
/// refuses the folded rows for their values, rolls that back and applies the events with
/// the live code instead, which has the last word: it refuses the same event with its own
/// error ([`ReplayError::Refused`]), or, should the fold have been wrong to refuse, applies
/// what it accepts.
async fn fold_or_live(
    connection: &mut PgConnection,
    projection: Projection,
    events: &[&StoredEvent],
    keys: Option<&Keyring>,
    prior: Prior<'_>,
) -> Result<(), ReplayError> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query("SAVEPOINT set_based")
        .execute(&mut *connection)
        .await?;
    let folded = match projection {
        Projection::Stock => stock::fold_and_write(connection, events, prior).await,
        Projection::Payments => payments::fold_and_write(connection, events, prior).await,
        Projection::Orders => orders::fold_and_write(connection, events, keys, prior).await,
    };
    let refused = match folded {
        Ok(()) => None,
        Err(Unfolded::Refused(refusal)) => {
            let stored = events[refusal.index];
            Some(format!(
                "{} {} #{}: {}",
                stored.event.metadata.aggregate_type,
                stored.event.metadata.aggregate_id,
                stored.event.sequence(),
                refusal.reason
            ))
        }
        Err(Unfolded::Rows(error)) => Some(error.to_string()),
        Err(Unfolded::Failed(error)) => return Err(error),
    };
    if let Some(reason) = refused {
        warn!(
            projection = projection.name(),
            reason, "the set-based fold refused its slice; applying it event by event"
        );
        sqlx::query("ROLLBACK TO SAVEPOINT set_based")
            .execute(&mut *connection)
            .await?;
        for stored in events {
            apply_one(connection, projection, stored, keys).await?;
        }
    }
    sqlx::query("RELEASE SAVEPOINT set_based")
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Why a fold wrote nothing (its statements, if any, are rolled back).
#[derive(Debug)]
enum Unfolded {
    /// The fold refused an event.
    Refused(Refusal),
    /// PostgreSQL refused a statement for the values it carried (SQLSTATE class 22 or 23).
    Rows(sqlx::Error),
    /// Anything else: the rebuild stops.
    Failed(ReplayError),
}

impl From<sqlx::Error> for Unfolded {
    fn from(error: sqlx::Error) -> Self {
        if is_data_error(&error) {
            Self::Rows(error)
        } else {
            Self::Failed(ReplayError::Database(error))
        }
    }
}

impl From<Refusal> for Unfolded {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

/// Why a fold refused an event: its index in the slice and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    index: usize,
    reason: String,
}

impl Refusal {
    fn new(index: usize, reason: impl Into<String>) -> Self {
        Self {
            index,
            reason: reason.into(),
        }
    }
}

/// What the live code says when an event refers to a row the read model does not hold
/// (`projection::expect_row`).
fn no_row(stored: &StoredEvent, what: &str) -> String {
    let metadata = &stored.event.metadata;
    format!(
        "{} of {} {} (sequence {}) refers to {what} the read model does not hold",
        stored.event.event.event_type(),
        metadata.aggregate_type,
        metadata.aggregate_id,
        metadata.sequence
    )
}

/// The event's aggregate id as a UUID, refused as the live code refuses it.
fn aggregate_uuid(stored: &StoredEvent) -> Result<uuid::Uuid, String> {
    let metadata = &stored.event.metadata;
    uuid::Uuid::parse_str(&metadata.aggregate_id).map_err(|e| {
        format!(
            "{} id {:?} is not a UUID: {e}",
            metadata.aggregate_type, metadata.aggregate_id
        )
    })
}

#[cfg(test)]
// Tests make their own ids and instants (`clippy.toml` bans that in the code under test).
#[allow(clippy::disallowed_methods)]
pub(super) mod testing {
    use std::collections::HashMap;

    use aggregates::{Currency, Money};
    use chrono::{DateTime, TimeZone, Utc};
    use schemas::EventMetadata;
    use uuid::Uuid;

    use crate::event::{ProjectedEvent, SourceEvent};
    use crate::replay::source::{LogPosition, StoredEvent};

    pub(crate) fn eur(amount_minor: i64) -> Money {
        Money::new(amount_minor, Currency::new("EUR").unwrap())
    }

    pub(crate) fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    /// Event `sequence` of `aggregate_type` `id`, occurred at [`at`]`(second)`.
    pub(crate) fn stored_event(
        aggregate_type: &str,
        id: &str,
        sequence: u64,
        second: u32,
        event: SourceEvent,
    ) -> StoredEvent {
        let map = HashMap::from([
            ("event_id".to_owned(), Uuid::new_v4().to_string()),
            ("correlation_id".to_owned(), Uuid::new_v4().to_string()),
            ("actor".to_owned(), "test".to_owned()),
            ("occurred_at".to_owned(), at(second).to_rfc3339()),
        ]);
        StoredEvent {
            position: LogPosition {
                transaction_id: 1,
                global_position: i64::try_from(sequence).unwrap(),
            },
            event: ProjectedEvent {
                metadata: EventMetadata::from_map(aggregate_type, id, sequence, &map).unwrap(),
                event,
            },
        }
    }
}
