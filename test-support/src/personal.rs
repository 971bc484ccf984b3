//! Personal data for the crypto-shredding tests (ADR 0009): values unique to one test, so a
//! search of raw bytes (rows, `bytea` columns, Kafka messages) for them cannot hit another
//! test's.

use serde_json::{Value, json};
use uuid::Uuid;

/// A customer's personal values, each carrying a random tag.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub email: String,
    pub line1: String,
    pub postal_code: String,
}

impl Person {
    /// Fresh values.
    pub fn new() -> Self {
        let tag = Uuid::new_v4().simple().to_string();
        Self {
            name: format!("Ada Lovelace {}", &tag[..8]),
            email: format!("ada.{}@example.com", &tag[8..16]),
            line1: format!("{} St James's Square", &tag[16..24]),
            postal_code: format!("SW{}", &tag[24..30]),
        }
    }

    /// The `customer_details` of a create-order request.
    pub fn details(&self) -> Value {
        json!({
            "name": self.name,
            "email": self.email,
            "shipping_address": self.address(),
        })
    }

    /// The shipping address as the request sends it and the order view shows it.
    pub fn address(&self) -> Value {
        json!({
            "line1": self.line1,
            "line2": "Flat 2",
            "city": "London",
            "postal_code": self.postal_code,
            "country": "GB"
        })
    }

    /// The values no stored or published byte may contain in clear.
    pub fn values(&self) -> [&str; 4] {
        [&self.name, &self.email, &self.line1, &self.postal_code]
    }

    /// Panics if `haystack` holds any of the values; `place` names it in the message.
    pub fn assert_absent(&self, haystack: &[u8], place: &str) {
        for value in self.values() {
            let needle = value.as_bytes();
            assert!(
                !haystack.windows(needle.len()).any(|w| w == needle),
                "{value:?} found in clear in {place}"
            );
        }
    }
}

impl Default for Person {
    fn default() -> Self {
        Self::new()
    }
}
