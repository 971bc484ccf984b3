//! The Confluent wire format: how a registry-aware Kafka message value is framed.
//!
//! ```text
//! byte 0     magic byte, always 0
//! bytes 1-4  schema id, big-endian (as assigned by the registry)
//! bytes 5-   the Avro binary datum
//! ```
//!
//! Pure byte handling: looking the schema id up is the registry client's job.

/// First byte of every framed message.
pub const MAGIC_BYTE: u8 = 0;

/// Bytes before the datum: magic byte and schema id.
pub const HEADER_LEN: usize = 5;

/// Why bytes are not a Confluent frame. Such a message is poison: retrying cannot fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the 5-byte header.
    #[error("frame of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// The first byte is not [`MAGIC_BYTE`]: not Confluent-framed (plain JSON, another format).
    #[error("invalid magic byte {found:#04x}, expected 0x00")]
    InvalidMagicByte {
        /// The byte found.
        found: u8,
    },
}

/// Frames `datum` for `schema_id`.
pub fn encode_frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + datum.len());
    frame.push(MAGIC_BYTE);
    frame.extend_from_slice(&schema_id.to_be_bytes());
    frame.extend_from_slice(datum);
    frame
}

/// Splits a frame into its schema id and datum (borrowed, no copy).
///
/// # Errors
/// [`FrameError`] for a frame shorter than the header or with another magic byte.
pub fn decode_frame(frame: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    let Some((header, datum)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::TooShort { len: frame.len() });
    };
    let [magic, id @ ..] = *header;
    if magic != MAGIC_BYTE {
        return Err(FrameError::InvalidMagicByte { found: magic });
    }
    Ok((u32::from_be_bytes(id), datum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_magic_byte_big_endian_id_and_datum() {
        assert_eq!(
            encode_frame(0x0102_0304, &[0xAA, 0xBB]),
            [0, 1, 2, 3, 4, 0xAA, 0xBB]
        );
    }

    #[test]
    fn round_trips() {
        for (id, datum) in [(0, &[][..]), (1, &[1, 2, 3][..]), (u32::MAX, &[0; 64][..])] {
            let frame = encode_frame(id, datum);
            assert_eq!(decode_frame(&frame), Ok((id, datum)));
        }
    }

    #[test]
    fn rejects_short_frames() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                decode_frame(&vec![0; len]),
                Err(FrameError::TooShort { len })
            );
        }
    }

    #[test]
    fn rejects_other_magic_bytes() {
        assert_eq!(
            decode_frame(b"{\"json\":1}"),
            Err(FrameError::InvalidMagicByte { found: b'{' })
        );
        assert_eq!(
            decode_frame(&[1, 0, 0, 0, 1]),
            Err(FrameError::InvalidMagicByte { found: 1 })
        );
    }
}
