//! A customer's personal data on an order, its validation, its sealed (encrypted) form and
//! the port that seals it and tells whether the platform still holds a customer's key.
//!
//! The domain never sees a key or a cipher: [`PersonalDataVault`] is implemented outside
//! this crate (the event store's key table, `docs/adr/0009-crypto-shredding.md`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted email address, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest accepted address line or city, in characters.
pub const MAX_ADDRESS_LINE_CHARS: usize = 200;
/// Longest accepted postal code, in characters.
pub const MAX_POSTAL_CODE_CHARS: usize = 20;

/// Who receives the order and where: personal data, sealed before it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerDetails {
    /// Full name; non-blank, at most [`MAX_NAME_CHARS`], no control characters.
    pub name: String,
    /// Email address: `local@domain.tld`, at most [`MAX_EMAIL_CHARS`].
    pub email: String,
    /// Where the order goes.
    pub shipping_address: ShippingAddress,
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddress {
    /// Street and number; non-blank.
    pub line1: String,
    /// Anything else (flat, building); if present non-blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City; non-blank.
    pub city: String,
    /// Postal code; non-blank, at most [`MAX_POSTAL_CODE_CHARS`].
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, upper case (`DE`, `FR`).
    pub country: String,
}

/// A field of [`CustomerDetails`] that breaks its rule: the field's path and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidCustomerDetails {
    /// Path of the field, e.g. `customer_details.email`.
    pub field: &'static str,
    /// The rule it breaks.
    pub reason: &'static str,
}

impl CustomerDetails {
    /// Checks every field's shape.
    ///
    /// # Errors
    /// The first [`InvalidCustomerDetails`] found, in field order.
    pub fn validate(&self) -> Result<(), InvalidCustomerDetails> {
        check_text("customer_details.name", &self.name, MAX_NAME_CHARS)?;
        check_email(&self.email)?;
        let address = &self.shipping_address;
        check_text(
            "customer_details.shipping_address.line1",
            &address.line1,
            MAX_ADDRESS_LINE_CHARS,
        )?;
        if let Some(line2) = &address.line2 {
            check_text(
                "customer_details.shipping_address.line2",
                line2,
                MAX_ADDRESS_LINE_CHARS,
            )?;
        }
        check_text(
            "customer_details.shipping_address.city",
            &address.city,
            MAX_ADDRESS_LINE_CHARS,
        )?;
        check_text(
            "customer_details.shipping_address.postal_code",
            &address.postal_code,
            MAX_POSTAL_CODE_CHARS,
        )?;
        let country = &address.country;
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(InvalidCustomerDetails {
                field: "customer_details.shipping_address.country",
                reason: "must be an ISO 3166-1 alpha-2 code in upper case",
            });
        }
        Ok(())
    }
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), InvalidCustomerDetails> {
    let reason = if value.trim().is_empty() {
        "must not be blank"
    } else if value.chars().count() > max {
        "is too long"
    } else if value.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(InvalidCustomerDetails { field, reason })
}

/// `local@domain` with a dot in the domain: the shape a mail can be sent to, not a full
/// RFC 5322 parse (quoted local parts and address literals are refused).
fn check_email(email: &str) -> Result<(), InvalidCustomerDetails> {
    let invalid = |reason| InvalidCustomerDetails {
        field: "customer_details.email",
        reason,
    };
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(invalid("is too long"));
    }
    let shape = "must look like name@example.com";
    if email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(shape));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid(shape));
    };
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if local.is_empty()
        || local.chars().count() > 64
        || local.contains('"')
        || !domain.contains('.')
        || domain.contains('@')
        || !labels_ok
    {
        return Err(invalid(shape));
    }
    Ok(())
}

/// [`CustomerDetails`] encrypted under one of the customer's data keys: all that events,
/// snapshots and messages ever hold of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPersonalData {
    /// The data key that opens it.
    pub key_id: Uuid,
    /// `nonce ‖ ciphertext ‖ tag` (stored as base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Whether the platform holds a key for a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerKeyState {
    /// No key was ever created: the platform holds no personal data of the customer.
    Unknown,
    /// At least one key can still open the customer's data.
    Live,
    /// Every key of the customer was destroyed.
    Destroyed,
}

/// The vault could not do its work; nothing was recorded and retrying may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("personal data vault: {0}")]
pub struct VaultError(pub String);

/// Seals personal data under the customer's current data key (creating it on first use),
/// and tells what keys the platform still holds.
#[async_trait]
pub trait PersonalDataVault: Send + Sync + std::fmt::Debug {
    /// `details` encrypted under `customer_id`'s live data key.
    ///
    /// # Errors
    /// [`VaultError`] when the key table is unreachable or no master key is configured.
    async fn seal(
        &self,
        customer_id: Uuid,
        details: &CustomerDetails,
    ) -> Result<SealedPersonalData, VaultError>;

    /// The state of `customer_id`'s keys.
    ///
    /// # Errors
    /// [`VaultError`] when the key table is unreachable.
    async fn key_state(&self, customer_id: Uuid) -> Result<CustomerKeyState, VaultError>;
}

/// A vault that holds no keys: it refuses to seal and knows no customer. For services
/// that never see personal data.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVault;

#[async_trait]
impl PersonalDataVault for NoVault {
    async fn seal(&self, _: Uuid, _: &CustomerDetails) -> Result<SealedPersonalData, VaultError> {
        Err(VaultError("no master key is configured".into()))
    }

    async fn key_state(&self, _: Uuid) -> Result<CustomerKeyState, VaultError> {
        Ok(CustomerKeyState::Unknown)
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::details;

    #[test]
    fn well_formed_details_pass() {
        assert_eq!(details().validate(), Ok(()));
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for bad in [
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada@@example.com",
            "ada @example.com",
            "ada@exa mple.com",
            "ada@example..com",
            "ada@-example.com",
            "ada@example.com\n",
        ] {
            let mut d = details();
            d.email = bad.into();
            let error = d.validate().unwrap_err();
            assert_eq!(error.field, "customer_details.email", "{bad:?}");
        }
        let mut long = details();
        long.email = format!("{}@example.com", "a".repeat(250));
        assert_eq!(long.validate().unwrap_err().reason, "is too long");
    }

    #[test]
    fn text_fields_are_bounded_and_free_of_control_characters() {
        let mut d = details();
        d.name = "Ada\u{7}".into();
        assert_eq!(
            d.validate().unwrap_err(),
            InvalidCustomerDetails {
                field: "customer_details.name",
                reason: "must not contain control characters"
            }
        );
        let mut d = details();
        d.name = "x".repeat(MAX_NAME_CHARS + 1);
        assert_eq!(d.validate().unwrap_err().reason, "is too long");
        let mut d = details();
        d.shipping_address.line2 = Some("  ".into());
        assert_eq!(
            d.validate().unwrap_err().field,
            "customer_details.shipping_address.line2"
        );
        let mut d = details();
        d.shipping_address.country = "gb".into();
        assert_eq!(
            d.validate().unwrap_err().field,
            "customer_details.shipping_address.country"
        );
    }

    #[test]
    fn sealed_data_is_base64_in_json() {
        let sealed = SealedPersonalData {
            key_id: Uuid::from_u128(1),
            ciphertext: vec![0, 1, 2, 255],
        };
        let json = serde_json::to_value(&sealed).unwrap();
        assert_eq!(json["ciphertext"], "AAEC/w==");
        assert_eq!(
            serde_json::from_value::<SealedPersonalData>(json).unwrap(),
            sealed
        );
    }
}
