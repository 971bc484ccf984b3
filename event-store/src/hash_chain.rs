//! The per-stream hash chain, recomputed in Rust so that verifying the store does not trust
//! any function stored in it. The SQL twin (and the trigger that seals every append) is in
//! `migrations/0011_hash_chain.sql`; `tests/hash_chain.rs` proves both agree on real
//! appends:
//!
//! ```text
//! hash(n)   = sha256(hash(n - 1) || canonical(n)),  hash(0) = 32 zero bytes
//! canonical = 0x01 || text(aggregate_type) || text(aggregate_id) || int8(sequence)
//!          || text(event_type) || text(event_version) || uuid(event_id)
//!          || int8(recorded_at in µs since the Unix epoch)
//!          || text(payload) || text(metadata)          (the stored json text)
//! text(t)   = int4(UTF-8 byte length) || UTF-8 bytes;  int4/int8 big-endian
//! ```

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::stream::StreamRef;

/// Bytes of a chain hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// A chain hash.
pub type ChainHash = [u8; HASH_LEN];

/// The "hash" before the first event of every stream.
pub const GENESIS: ChainHash = [0; HASH_LEN];

/// First byte of the canonical encoding; a new encoding gets a new version.
pub const FORMAT_VERSION: u8 = 1;

/// What the chain covers of one stored event.
#[derive(Debug, Clone, Copy)]
pub struct SealedContent<'a> {
    /// `aggregate_type`.
    pub aggregate_type: &'a str,
    /// `aggregate_id`.
    pub aggregate_id: &'a str,
    /// `sequence` (1-based).
    pub sequence: i64,
    /// `event_type`.
    pub event_type: &'a str,
    /// `event_version`.
    pub event_version: &'a str,
    /// `event_id`.
    pub event_id: Uuid,
    /// `recorded_at` (PostgreSQL keeps microseconds).
    pub recorded_at: DateTime<Utc>,
    /// `payload` exactly as stored (the `json` column's text).
    pub payload: &'a str,
    /// `metadata` exactly as stored.
    pub metadata: &'a str,
}

impl SealedContent<'_> {
    /// The unambiguous byte encoding the chain hashes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let texts = [
            self.aggregate_type,
            self.aggregate_id,
            self.event_type,
            self.event_version,
            self.payload,
            self.metadata,
        ];
        let mut bytes =
            Vec::with_capacity(1 + 8 + 16 + 8 + texts.iter().map(|t| 4 + t.len()).sum::<usize>());
        bytes.push(FORMAT_VERSION);
        push_text(&mut bytes, self.aggregate_type);
        push_text(&mut bytes, self.aggregate_id);
        bytes.extend_from_slice(&self.sequence.to_be_bytes());
        push_text(&mut bytes, self.event_type);
        push_text(&mut bytes, self.event_version);
        bytes.extend_from_slice(self.event_id.as_bytes());
        bytes.extend_from_slice(&self.recorded_at.timestamp_micros().to_be_bytes());
        push_text(&mut bytes, self.payload);
        push_text(&mut bytes, self.metadata);
        bytes
    }

    /// This event's link: `sha256(prev || canonical bytes)`.
    pub fn chain_hash(&self, prev: &ChainHash) -> ChainHash {
        let mut hasher = Sha256::new();
        hasher.update(prev);
        hasher.update(self.canonical_bytes());
        hasher.finalize().into()
    }
}

fn push_text(bytes: &mut Vec<u8>, text: &str) {
    // A text longer than 4 GiB cannot be stored in a PostgreSQL column (1 GB limit), so the
    // length always fits; saturate rather than wrap if that ever changes.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(text.as_bytes());
}

/// A stored event as the hash chain sees it, with its predecessor's stored hash.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ChainRow {
    /// `aggregate_type`.
    pub aggregate_type: String,
    /// `aggregate_id`.
    pub aggregate_id: String,
    /// `sequence`.
    pub sequence: i64,
    /// `event_type`.
    pub event_type: String,
    /// `event_version`.
    pub event_version: String,
    /// `event_id`.
    pub event_id: Uuid,
    /// `global_position`.
    pub global_position: i64,
    /// `recorded_at`.
    pub recorded_at: DateTime<Utc>,
    /// `payload`, the stored json text.
    pub payload: String,
    /// `metadata`, the stored json text.
    pub metadata: String,
    /// The stored link.
    pub hash: Option<Vec<u8>>,
    /// Whether event `sequence - 1` of the stream exists (`true` for sequence 1).
    pub has_predecessor: bool,
    /// The predecessor's stored link (`None` for sequence 1, or when it is missing).
    pub prev_hash: Option<Vec<u8>>,
}

impl ChainRow {
    /// What the chain covers of this row.
    pub fn content(&self) -> SealedContent<'_> {
        SealedContent {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

const CHAIN_SELECT: &str = "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
     e.event_version, e.event_id, e.global_position, e.recorded_at, e.payload::text AS payload, \
     e.metadata::text AS metadata, e.hash, \
     (e.sequence = 1 OR p.sequence IS NOT NULL) AS has_predecessor, p.hash AS prev_hash \
     FROM events e LEFT JOIN events p \
       ON p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id \
      AND p.sequence = e.sequence - 1";

/// Up to `limit` chain rows of one stream after sequence `after`.
///
/// # Errors
/// Database errors.
pub async fn stream_chain<'e>(
    executor: impl PgExecutor<'e>,
    stream: StreamRef<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<ChainRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{CHAIN_SELECT} WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence > $3 \
         ORDER BY e.sequence LIMIT $4"
    ))
    .bind(stream.aggregate_type)
    .bind(stream.aggregate_id)
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// A place in the store's stream order: `(aggregate_type, aggregate_id, sequence)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamPosition {
    /// `aggregate_type`.
    pub aggregate_type: String,
    /// `aggregate_id`.
    pub aggregate_id: String,
    /// `sequence`.
    pub sequence: i64,
}

/// Up to `limit` chain rows of every stream after `after`, by stream, then sequence.
///
/// # Errors
/// Database errors.
pub async fn all_chains<'e>(
    executor: impl PgExecutor<'e>,
    after: Option<&StreamPosition>,
    limit: i64,
) -> Result<Vec<ChainRow>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(CHAIN_SELECT);
    if let Some(after) = after {
        query
            .push(" WHERE (e.aggregate_type, e.aggregate_id, e.sequence) > (")
            .push_bind(after.aggregate_type.clone())
            .push(", ")
            .push_bind(after.aggregate_id.clone())
            .push(", ")
            .push_bind(after.sequence)
            .push(")");
    }
    query
        .push(" ORDER BY e.aggregate_type, e.aggregate_id, e.sequence LIMIT ")
        .push_bind(limit);
    query.build_query_as().fetch_all(executor).await
}

/// Lower-case hex, as the API shows hashes.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content<'a>(payload: &'a str, metadata: &'a str) -> SealedContent<'a> {
        SealedContent {
            aggregate_type: "order",
            aggregate_id: "a",
            sequence: 1,
            event_type: "X",
            event_version: "1",
            event_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            recorded_at: DateTime::from_timestamp_micros(1_714_564_800_123_456).unwrap(),
            payload,
            metadata,
        }
    }

    #[test]
    fn canonical_bytes_are_length_prefixed_big_endian() {
        let bytes = content("{}", "é").canonical_bytes();
        let mut expected = vec![1u8];
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"order");
        expected.extend_from_slice(&[0, 0, 0, 1, b'a']);
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, b'X', 0, 0, 0, 1, b'1']);
        expected.extend_from_slice(&0x0123_4567_89ab_cdef_0123_4567_89ab_cdef_u128.to_be_bytes());
        expected.extend_from_slice(&1_714_564_800_123_456i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
        expected.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = content("ab", "c");
        let b = content("a", "bc");
        assert_ne!(a.chain_hash(&GENESIS), b.chain_hash(&GENESIS));
    }

    #[test]
    fn the_link_depends_on_the_predecessor() {
        let event = content("{}", "{}");
        let first = event.chain_hash(&GENESIS);
        assert_ne!(event.chain_hash(&first), first);
    }

    /// Pins the encoding to what the SQL function `events_chain_hash` returns for the same
    /// row (computed with PostgreSQL 15); `tests/hash_chain.rs` checks it against the
    /// trigger on real appends too.
    #[test]
    fn matches_the_database_function() {
        let hash = content(r#"{"b": 1,  "a":"é\n"}"#, r#"{"actor": "u"}"#).chain_hash(&GENESIS);
        assert_eq!(to_hex(&hash), PINNED_BY_POSTGRES);
    }

    const PINNED_BY_POSTGRES: &str =
        "c8c315b684b349108e3ccbb2f8c3d735244180658ba072407cd29b3aeb9689f2";

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
