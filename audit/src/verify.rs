//! Verifying hash chains: recompute every event's link from its stored content and compare
//! it with the link sealed at append time.
//!
//! Each event is checked against its predecessor's *stored* link. Up to the first mismatch
//! that is the same as recomputing the chain from the genesis, so the first event reported
//! is the first whose content (or link) no longer matches; and checks need no state across
//! pages. An event rewritten in place is reported itself; if its link was rewritten to
//! match as well, its successor is reported (its stored link still covers the old one).
//! Events removed from the end of a stream leave no trace in the chain itself.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::{self, ChainRow, StreamPosition, StreamRef};
use event_store::hash_chain::{self as hash, ChainHash, GENESIS, HASH_LEN};

/// Rows read per query while verifying a whole stream.
const STREAM_BATCH: i64 = 1000;

/// Why an event fails verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MismatchReason {
    /// The recomputed link differs from the stored one: the event's content, or its link,
    /// was changed after the append.
    HashMismatch,
    /// The event has no stored link.
    HashMissing,
    /// Event `sequence - 1` of the stream is gone, so the chain is cut.
    PredecessorMissing,
}

/// The first event that does not match its link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Mismatch {
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: String,
    /// The event's position in its stream.
    pub sequence: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's global position.
    pub global_position: i64,
    /// When the event was (reportedly) appended.
    pub recorded_at: DateTime<Utc>,
    /// What is wrong.
    pub reason: MismatchReason,
    /// The link recomputed from the stored content and the predecessor's stored link (hex);
    /// `null` when the predecessor is missing.
    pub expected_hash: Option<String>,
    /// The link stored with the event (hex); `null` when there is none.
    pub stored_hash: Option<String>,
}

/// The outcome of checking a run of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Events checked and found intact (those before the first mismatch).
    pub verified: u64,
    /// The first event that failed, if any; checking stops there.
    pub first_mismatch: Option<Mismatch>,
    /// The last event checked and found intact.
    pub last_verified: Option<StreamPosition>,
}

impl Verification {
    /// Whether every event checked is intact.
    pub fn is_intact(&self) -> bool {
        self.first_mismatch.is_none()
    }

    fn empty() -> Self {
        Self {
            verified: 0,
            first_mismatch: None,
            last_verified: None,
        }
    }

    /// Checks `rows` (in stream order) until the first mismatch.
    fn check_all(&mut self, rows: &[ChainRow]) {
        for row in rows {
            if let Err(mismatch) = check(row) {
                self.first_mismatch = Some(*mismatch);
                return;
            }
            self.verified += 1;
            self.last_verified = Some(StreamPosition {
                aggregate_type: row.aggregate_type.clone(),
                aggregate_id: row.aggregate_id.clone(),
                sequence: row.sequence,
            });
        }
    }
}

/// Checks one event against its predecessor's stored link.
///
/// # Errors
/// The [`Mismatch`] describing the event.
pub fn check(row: &ChainRow) -> Result<(), Box<Mismatch>> {
    let stored = row.hash.as_deref().map(hash::to_hex);
    let mismatch = |reason, expected_hash| {
        Box::new(Mismatch {
            aggregate_type: row.aggregate_type.clone(),
            aggregate_id: row.aggregate_id.clone(),
            sequence: row.sequence,
            event_id: row.event_id,
            global_position: row.global_position,
            recorded_at: row.recorded_at,
            reason,
            expected_hash,
            stored_hash: stored.clone(),
        })
    };
    let prev: Option<ChainHash> = if row.sequence == 1 {
        Some(GENESIS)
    } else if row.has_predecessor {
        // A predecessor whose own link is missing or malformed is reported there first;
        // here it can only make this link differ too.
        Some(as_chain_hash(row.prev_hash.as_deref()).unwrap_or(GENESIS))
    } else {
        None
    };
    let Some(prev) = prev else {
        return Err(mismatch(MismatchReason::PredecessorMissing, None));
    };
    let expected = row.content().chain_hash(&prev);
    let expected_hex = Some(hash::to_hex(&expected));
    match row.hash.as_deref() {
        None => Err(mismatch(MismatchReason::HashMissing, expected_hex)),
        Some(stored) if stored == expected.as_slice() => Ok(()),
        Some(_) => Err(mismatch(MismatchReason::HashMismatch, expected_hex)),
    }
}

fn as_chain_hash(bytes: Option<&[u8]>) -> Option<ChainHash> {
    bytes.and_then(|bytes| <[u8; HASH_LEN]>::try_from(bytes).ok())
}

/// Verifies every event of one stream. `None` if the stream has no events.
///
/// # Errors
/// Database errors.
pub async fn verify_stream(
    pool: &PgPool,
    stream: StreamRef<'_>,
) -> Result<Option<Verification>, sqlx::Error> {
    let mut verification = Verification::empty();
    let mut after = 0;
    loop {
        let rows = store::stream_chain(pool, stream, after, STREAM_BATCH).await?;
        if rows.is_empty() {
            break;
        }
        verification.check_all(&rows);
        if !verification.is_intact() || rows.len() < STREAM_BATCH as usize {
            break;
        }
        after = rows.last().map_or(after, |row| row.sequence);
    }
    if verification.verified == 0 && verification.is_intact() {
        return Ok(None);
    }
    Ok(Some(verification))
}

/// A bounded run of the verification of every stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeVerification {
    /// What was checked.
    pub verification: Verification,
    /// Where the next run starts, if events remain after this one and no mismatch stopped it.
    pub resume_after: Option<StreamPosition>,
}

/// Verifies up to `limit` events of all streams after `after` (stream by stream, in
/// sequence order).
///
/// # Errors
/// Database errors.
pub async fn verify_range(
    pool: &PgPool,
    after: Option<&StreamPosition>,
    limit: u32,
) -> Result<RangeVerification, sqlx::Error> {
    // One more than asked, to learn whether another run is needed.
    let mut rows = store::all_chains(pool, after, i64::from(limit) + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut verification = Verification::empty();
    verification.check_all(&rows);
    let resume_after = if more && verification.is_intact() {
        verification.last_verified.clone()
    } else {
        None
    };
    Ok(RangeVerification {
        verification,
        resume_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sequence: i64, prev: Option<ChainHash>) -> ChainRow {
        let mut row = ChainRow {
            aggregate_type: "order".into(),
            aggregate_id: "o-1".into(),
            sequence,
            event_type: "OrderCreated".into(),
            event_version: "1".into(),
            event_id: Uuid::from_u128(sequence as u128),
            global_position: sequence * 10,
            recorded_at: DateTime::from_timestamp_micros(1_714_564_800_000_000 + sequence).unwrap(),
            payload: format!(r#"{{"n": {sequence}}}"#),
            metadata: "{}".into(),
            hash: None,
            has_predecessor: sequence == 1 || prev.is_some(),
            prev_hash: prev.map(|p| p.to_vec()),
        };
        let expected = row.content().chain_hash(&prev.unwrap_or(GENESIS));
        row.hash = Some(expected.to_vec());
        row
    }

    fn chain(len: i64) -> Vec<ChainRow> {
        let mut rows: Vec<ChainRow> = Vec::new();
        for sequence in 1..=len {
            let prev = rows
                .last()
                .map(|r| <[u8; 32]>::try_from(r.hash.clone().unwrap().as_slice()).unwrap());
            rows.push(row(sequence, prev));
        }
        rows
    }

    fn first_failure(rows: &[ChainRow]) -> Option<Mismatch> {
        let mut verification = Verification::empty();
        verification.check_all(rows);
        verification.first_mismatch
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(5);
        let mut verification = Verification::empty();
        verification.check_all(&rows);
        assert!(verification.is_intact());
        assert_eq!(verification.verified, 5);
        assert_eq!(verification.last_verified.unwrap().sequence, 5);
    }

    #[test]
    fn altered_content_is_pinpointed() {
        let mut rows = chain(5);
        rows[2].payload = r#"{"n": 300}"#.into();
        let mismatch = first_failure(&rows).unwrap();
        assert_eq!(mismatch.sequence, 3);
        assert_eq!(mismatch.reason, MismatchReason::HashMismatch);
        assert_eq!(
            mismatch.stored_hash.as_deref(),
            Some(hash::to_hex(rows[2].hash.as_ref().unwrap())).as_deref()
        );
        assert_ne!(mismatch.expected_hash, mismatch.stored_hash);
    }

    #[test]
    fn a_resealed_event_is_caught_at_its_successor() {
        let mut rows = chain(5);
        rows[2].payload = r#"{"n": 300}"#.into();
        let prev = <[u8; 32]>::try_from(rows[1].hash.clone().unwrap().as_slice()).unwrap();
        let resealed = rows[2].content().chain_hash(&prev).to_vec();
        rows[2].hash = Some(resealed.clone());
        rows[3].prev_hash = Some(resealed);
        let mismatch = first_failure(&rows).unwrap();
        assert_eq!(mismatch.sequence, 4);
    }

    #[test]
    fn a_removed_event_cuts_the_chain() {
        let mut rows = chain(4);
        rows.remove(1);
        rows[1].has_predecessor = false;
        rows[1].prev_hash = None;
        let mismatch = first_failure(&rows).unwrap();
        assert_eq!(mismatch.sequence, 3);
        assert_eq!(mismatch.reason, MismatchReason::PredecessorMissing);
        assert_eq!(mismatch.expected_hash, None);
    }

    #[test]
    fn a_missing_link_is_reported() {
        let mut rows = chain(2);
        rows[0].hash = None;
        let mismatch = first_failure(&rows).unwrap();
        assert_eq!(mismatch.sequence, 1);
        assert_eq!(mismatch.reason, MismatchReason::HashMissing);
    }
}
