//! The audit listings' keyset cursors (`h1` a stream's history, `g1` the global log, `v1`
//! the store-wide verification), framed by [`ops::params::cursor`].

use ops::params::ParameterError;
use ops::params::cursor::{self, invalid};

use crate::store::{LogPosition, StreamPosition};

const SEQUENCE_KIND: &str = "h1";
const LOG_POSITION_KIND: &str = "g1";
const STREAM_POSITION_KIND: &str = "v1";

/// The cursor after `sequence` in a stream's history.
pub fn encode_sequence(sequence: i64) -> String {
    cursor::encode(SEQUENCE_KIND, &sequence.to_string())
}

/// The sequence a stream-history cursor names.
///
/// # Errors
/// [`ParameterError::InvalidParameter`] naming `cursor`.
pub fn decode_sequence(cursor: &str) -> Result<i64, ParameterError> {
    cursor::decode(SEQUENCE_KIND, cursor)?
        .parse::<i64>()
        .ok()
        .filter(|sequence| *sequence >= 1)
        .ok_or_else(invalid)
}

/// The cursor after `position` in the global event log.
pub fn encode_log_position(position: LogPosition) -> String {
    cursor::encode(
        LOG_POSITION_KIND,
        &format!("{}:{}", position.transaction_id, position.global_position),
    )
}

/// The position a global-log cursor names.
///
/// # Errors
/// [`ParameterError::InvalidParameter`] naming `cursor`.
pub fn decode_log_position(cursor: &str) -> Result<LogPosition, ParameterError> {
    let body = cursor::decode(LOG_POSITION_KIND, cursor)?;
    let Some((transaction_id, global_position)) = body.split_once(':') else {
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
    cursor::encode(
        STREAM_POSITION_KIND,
        &format!(
            "{}:{}:{}{}",
            position.sequence,
            position.aggregate_type.len(),
            position.aggregate_type,
            position.aggregate_id
        ),
    )
}

/// The position a verification cursor names.
///
/// # Errors
/// [`ParameterError::InvalidParameter`] naming `cursor`.
pub fn decode_stream_position(cursor: &str) -> Result<StreamPosition, ParameterError> {
    let body = cursor::decode(STREAM_POSITION_KIND, cursor)?;
    let mut parts = body.splitn(3, ':');
    let (Some(sequence), Some(type_len), Some(rest)) = (parts.next(), parts.next(), parts.next())
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

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

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
        for bad in [
            "h1:0",
            "h1:x",
            "g1:1",
            "g1:-1:2",
            "v1:1:0:ab",
            "v1:1:5:ab",
            "",
            "!!!",
        ] {
            let cursor = URL_SAFE_NO_PAD.encode(bad);
            assert!(
                decode_sequence(&cursor).is_err()
                    && decode_log_position(&cursor).is_err()
                    && decode_stream_position(&cursor).is_err(),
                "{bad}"
            );
        }
    }
}
