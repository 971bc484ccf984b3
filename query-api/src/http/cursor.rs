//! Keyset pagination: page sizes and opaque cursors.
//!
//! A cursor is the position of the last entry of a page (its sort key), base64url without
//! padding, so the next page starts strictly after it however many rows were inserted in
//! between: no entry is skipped or repeated because of them. Cursors carry a kind and
//! format version (`o1`, `s1`, `h1`, `g1`, `v1`) so a cursor of another listing, or of a future format, is
//! rejected as invalid rather than misread.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use uuid::Uuid;

use super::problem::QueryError;
use crate::audit::store::{LogPosition, StreamPosition};
use crate::read_model::orders::CustomerOrderPosition;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest accepted `limit`.
pub const MAX_LIMIT: u32 = 200;

const CUSTOMER_ORDER_KIND: &str = "o1";
const SKU_KIND: &str = "s1";
const SEQUENCE_KIND: &str = "h1";
const LOG_POSITION_KIND: &str = "g1";
const STREAM_POSITION_KIND: &str = "v1";

/// A validated `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// `limit` as given (absent: [`DEFAULT_LIMIT`]); 1 to [`MAX_LIMIT`].
    ///
    /// # Errors
    /// [`QueryError::InvalidParameter`] naming `limit`.
    pub fn parse(value: Option<String>) -> Result<Self, QueryError> {
        let Some(value) = value else {
            return Ok(Self(DEFAULT_LIMIT));
        };
        match value.trim().parse::<u32>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(Self(limit)),
            _ => Err(QueryError::parameter(
                "limit",
                format!("must be an integer from 1 to {MAX_LIMIT}, not {value:?}"),
            )),
        }
    }

    /// The page size.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch(self) -> i64 {
        i64::from(self.0) + 1
    }
}

/// The cursor after `position` in a customer's orders.
pub fn encode_customer_order(position: &CustomerOrderPosition) -> String {
    encode(&format!(
        "{CUSTOMER_ORDER_KIND}:{}:{}",
        position.created_at.timestamp_micros(),
        position.order_id.simple()
    ))
}

/// The position a customer-orders cursor names.
///
/// # Errors
/// [`QueryError::InvalidParameter`] naming `cursor`.
pub fn decode_customer_order(cursor: &str) -> Result<CustomerOrderPosition, QueryError> {
    let text = decode(cursor)?;
    let mut parts = text.splitn(3, ':');
    let (Some(CUSTOMER_ORDER_KIND), Some(micros), Some(order_id)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let created_at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    let order_id = Uuid::try_parse(order_id).map_err(|_| invalid())?;
    Ok(CustomerOrderPosition {
        created_at,
        order_id,
    })
}

/// The cursor after `sku` in the stock listing.
pub fn encode_sku(sku: &str) -> String {
    encode(&format!("{SKU_KIND}:{sku}"))
}

/// The SKU a stock cursor names.
///
/// # Errors
/// [`QueryError::InvalidParameter`] naming `cursor`.
pub fn decode_sku(cursor: &str) -> Result<String, QueryError> {
    let text = decode(cursor)?;
    match text.split_once(':') {
        Some((SKU_KIND, sku)) if !sku.is_empty() => Ok(sku.to_owned()),
        _ => Err(invalid()),
    }
}

/// The cursor after `sequence` in a stream's history.
pub fn encode_sequence(sequence: i64) -> String {
    encode(&format!("{SEQUENCE_KIND}:{sequence}"))
}

/// The sequence a stream-history cursor names.
///
/// # Errors
/// [`QueryError::InvalidParameter`] naming `cursor`.
pub fn decode_sequence(cursor: &str) -> Result<i64, QueryError> {
    let text = decode(cursor)?;
    match text.split_once(':') {
        Some((SEQUENCE_KIND, sequence)) => sequence
            .parse::<i64>()
            .ok()
            .filter(|sequence| *sequence >= 1)
            .ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

/// The cursor after `position` in the global event log.
pub fn encode_log_position(position: LogPosition) -> String {
    encode(&format!(
        "{LOG_POSITION_KIND}:{}:{}",
        position.transaction_id, position.global_position
    ))
}

/// The position a global-log cursor names.
///
/// # Errors
/// [`QueryError::InvalidParameter`] naming `cursor`.
pub fn decode_log_position(cursor: &str) -> Result<LogPosition, QueryError> {
    let text = decode(cursor)?;
    let mut parts = text.splitn(3, ':');
    let (Some(LOG_POSITION_KIND), Some(transaction_id), Some(global_position)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    match (
        transaction_id.parse::<i64>(),
        global_position.parse::<i64>(),
    ) {
        (Ok(transaction_id), Ok(global_position)) if transaction_id >= 0 => Ok(LogPosition {
            transaction_id,
            global_position,
        }),
        _ => Err(invalid()),
    }
}

/// The cursor after `position` in the store-wide verification (stream, then sequence).
pub fn encode_stream_position(position: &StreamPosition) -> String {
    encode(&format!(
        "{STREAM_POSITION_KIND}:{}:{}:{}{}",
        position.sequence,
        position.aggregate_type.len(),
        position.aggregate_type,
        position.aggregate_id
    ))
}

/// The position a verification cursor names.
///
/// # Errors
/// [`QueryError::InvalidParameter`] naming `cursor`.
pub fn decode_stream_position(cursor: &str) -> Result<StreamPosition, QueryError> {
    let text = decode(cursor)?;
    let mut parts = text.splitn(4, ':');
    let (Some(STREAM_POSITION_KIND), Some(sequence), Some(type_len), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let sequence = sequence.parse::<i64>().map_err(|_| invalid())?;
    let type_len = type_len.parse::<usize>().map_err(|_| invalid())?;
    if type_len == 0 || type_len >= rest.len() || !rest.is_char_boundary(type_len) {
        return Err(invalid());
    }
    let (aggregate_type, aggregate_id) = rest.split_at(type_len);
    Ok(StreamPosition {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        sequence,
    })
}

fn encode(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn decode(cursor: &str) -> Result<String, QueryError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)
}

fn invalid() -> QueryError {
    QueryError::parameter(
        "cursor",
        "not a cursor of this listing; pass `next_cursor` of the previous page unchanged",
    )
}

#[cfg(test)]
// Tests make their own ids and instants (`clippy.toml` bans that in the code under test).
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn customer_order_cursors_round_trip() {
        let position = CustomerOrderPosition {
            created_at: DateTime::from_timestamp_micros(1_714_564_800_123_456).unwrap(),
            order_id: Uuid::new_v4(),
        };
        let cursor = encode_customer_order(&position);
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{cursor}"
        );
        assert_eq!(decode_customer_order(&cursor).unwrap(), position);
    }

    #[test]
    fn sku_cursors_round_trip() {
        assert_eq!(decode_sku(&encode_sku("SKU-1.a_b")).unwrap(), "SKU-1.a_b");
    }

    #[test]
    fn foreign_and_malformed_cursors_are_rejected() {
        let sku_cursor = encode_sku("SKU-1");
        assert!(decode_customer_order(&sku_cursor).is_err());
        assert!(decode_sku(&encode(&format!("o1:1:{}", Uuid::nil().simple()))).is_err());
        for bad in [
            "",
            "!!!",
            "bzE6eDp5",
            &encode("o1:1:not-a-uuid"),
            &encode("s1:"),
        ] {
            assert!(decode_customer_order(bad).is_err(), "{bad}");
            assert!(decode_sku(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn audit_cursors_round_trip_and_reject_each_other() {
        assert_eq!(decode_sequence(&encode_sequence(42)).unwrap(), 42);
        let position = LogPosition {
            transaction_id: 7_000_000_001,
            global_position: 12,
        };
        assert_eq!(
            decode_log_position(&encode_log_position(position)).unwrap(),
            position
        );
        let stream = StreamPosition {
            aggregate_type: "inventory".into(),
            aggregate_id: "SKU:1:x".into(),
            sequence: 9,
        };
        let cursor = encode_stream_position(&stream);
        assert_eq!(decode_stream_position(&cursor).unwrap(), stream);

        assert!(decode_sequence(&cursor).is_err());
        assert!(decode_log_position(&encode_sequence(1)).is_err());
        assert!(decode_stream_position(&encode_log_position(position)).is_err());
        for bad in ["h1:0", "h1:x", "g1:1", "g1:-1:2", "v1:1:0:ab", "v1:1:5:ab"] {
            let cursor = encode(bad);
            assert!(
                decode_sequence(&cursor).is_err()
                    && decode_log_position(&cursor).is_err()
                    && decode_stream_position(&cursor).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), DEFAULT_LIMIT);
        assert_eq!(PageLimit::parse(Some("200".into())).unwrap().get(), 200);
        for bad in ["0", "201", "-1", "ten", ""] {
            assert!(PageLimit::parse(Some(bad.into())).is_err(), "{bad}");
        }
    }
}
