use std::fmt;

use serde::{Deserialize, Serialize};

/// A stock-keeping unit: the identity of an inventory item and the product on an order line.
///
/// 1 to [`Sku::MAX_LEN`] characters from `A-Z a-z 0-9 - _ .`, so it is safe as a Kafka key,
/// a URL path segment and a database key without escaping. Case is significant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

/// Why a string is not a [`Sku`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SKU {0:?}: expected 1 to 64 characters from A-Z a-z 0-9 - _ .")]
pub struct SkuError(pub String);

impl Sku {
    /// Longest accepted SKU.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a SKU.
    ///
    /// # Errors
    /// [`SkuError`] when empty, too long, or containing other characters.
    pub fn new(value: impl Into<String>) -> Result<Self, SkuError> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid {
            Ok(Self(value))
        } else {
            Err(SkuError(value))
        }
    }

    /// The SKU text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Sku {
    type Error = SkuError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Sku> for String {
    fn from(value: Sku) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_validation() {
        assert_eq!(Sku::new("ABC-123_x.1").unwrap().as_str(), "ABC-123_x.1");
        assert!(Sku::new("A".repeat(Sku::MAX_LEN)).is_ok());
        for bad in [
            String::new(),
            "A".repeat(Sku::MAX_LEN + 1),
            "a b".into(),
            "a/b".into(),
            "é".into(),
        ] {
            assert!(Sku::new(bad.clone()).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Sku>("\"\"").is_err());
    }
}
