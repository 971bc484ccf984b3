//! Limits on free text carried in commands, so a single event stays small enough for one
//! Kafka message and one read-model row.

/// Longest accepted reason (cancellation, adjustment, void, refund), in characters.
pub(crate) const MAX_REASON_CHARS: usize = 500;

/// A reason must say something: not blank, and bounded.
pub(crate) fn is_valid_reason(reason: &str) -> bool {
    !reason.trim().is_empty() && reason.chars().count() <= MAX_REASON_CHARS
}

/// A short external reference (tracking number, payment-method token): not blank,
/// bounded, and free of control characters that would corrupt logs.
pub(crate) fn is_valid_reference(reference: &str, max_chars: usize) -> bool {
    !reference.trim().is_empty()
        && reference.chars().count() <= max_chars
        && !reference.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_must_be_non_blank_and_bounded() {
        assert!(is_valid_reason("damaged in transit"));
        assert!(!is_valid_reason(""));
        assert!(!is_valid_reason("   "));
        assert!(is_valid_reason(&"x".repeat(MAX_REASON_CHARS)));
        assert!(!is_valid_reason(&"x".repeat(MAX_REASON_CHARS + 1)));
    }

    #[test]
    fn references_reject_control_characters() {
        assert!(is_valid_reference("1Z999AA10123456784", 10_000));
        assert!(!is_valid_reference("abc\ndef", 100));
        assert!(!is_valid_reference("abcdef", 3));
        assert!(!is_valid_reference(" ", 3));
    }
}
