//! The read models' keyset cursors (`o1` a customer's orders, `s1` the stock listing),
//! framed by [`ops::params::cursor`]: the position of a page's last entry, so the next page
//! starts strictly after it however many rows were inserted in between.

use chrono::DateTime;
use ops::params::cursor::{self, invalid};
pub use ops::params::{DEFAULT_LIMIT, MAX_LIMIT, PageLimit};
use uuid::Uuid;

use super::problem::QueryError;
use read_model::orders::CustomerOrderPosition;

const CUSTOMER_ORDER_KIND: &str = "o1";
const SKU_KIND: &str = "s1";

/// The cursor after `position` in a customer's orders.
pub fn encode_customer_order(position: &CustomerOrderPosition) -> String {
    cursor::encode(
        CUSTOMER_ORDER_KIND,
        &format!(
            "{}:{}",
            position.created_at.timestamp_micros(),
            position.order_id.simple()
        ),
    )
}

/// The position a customer-orders cursor names.
///
/// # Errors
/// [`QueryError::Request`] naming `cursor`.
pub fn decode_customer_order(cursor: &str) -> Result<CustomerOrderPosition, QueryError> {
    let body = cursor::decode(CUSTOMER_ORDER_KIND, cursor)?;
    let Some((micros, order_id)) = body.split_once(':') else {
        return Err(invalid().into());
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
    cursor::encode(SKU_KIND, sku)
}

/// The SKU a stock cursor names.
///
/// # Errors
/// [`QueryError::Request`] naming `cursor`.
pub fn decode_sku(cursor: &str) -> Result<String, QueryError> {
    let sku = cursor::decode(SKU_KIND, cursor)?;
    if sku.is_empty() {
        return Err(invalid().into());
    }
    Ok(sku)
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
        assert!(
            decode_sku(&cursor::encode(
                CUSTOMER_ORDER_KIND,
                &format!("1:{}", Uuid::nil().simple())
            ))
            .is_err()
        );
        for bad in [
            "",
            "!!!",
            "bzE6eDp5",
            &cursor::encode(CUSTOMER_ORDER_KIND, "1:not-a-uuid"),
            &cursor::encode(SKU_KIND, ""),
        ] {
            assert!(decode_customer_order(bad).is_err(), "{bad}");
            assert!(decode_sku(bad).is_err(), "{bad}");
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
