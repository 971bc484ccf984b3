use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO-4217 alphabetic currency code: exactly three ASCII uppercase letters (`"EUR"`).
///
/// Only the shape is validated, not membership in the ISO list, so a currency added to the
/// standard never needs a release. Lowercase input is rejected rather than normalised: a
/// contract that silently rewrites values hides client bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// Why a string is not a [`Currency`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid currency {0:?}: expected an ISO-4217 code of three uppercase letters")]
pub struct CurrencyError(pub String);

impl Currency {
    /// Parses a code such as `"USD"`.
    ///
    /// # Errors
    /// [`CurrencyError`] unless `code` is exactly three ASCII uppercase letters.
    pub fn new(code: &str) -> Result<Self, CurrencyError> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(CurrencyError(code.to_owned())),
        }
    }

    /// The three-letter code.
    pub fn as_str(&self) -> &str {
        // The constructor admits ASCII uppercase only, which is always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = CurrencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

/// An amount of money in integer minor units (cents for EUR, yen for JPY) of one currency.
///
/// Never a float. The amount is signed so that a difference can be expressed, but each
/// command states which sign it accepts. Arithmetic is checked: it fails on currency
/// mismatch or `i64` overflow instead of wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in the currency's minor unit.
    pub amount_minor: i64,
    /// Currency of the amount.
    pub currency: Currency,
}

/// Why a [`Money`] computation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The operands have different currencies; there is no implicit conversion.
    #[error("currency mismatch: {left} vs {right}")]
    CurrencyMismatch {
        /// Left operand's currency.
        left: Currency,
        /// Right operand's currency.
        right: Currency,
    },
    /// The result does not fit in an `i64` of minor units.
    #[error("amount overflow")]
    Overflow,
}

impl Money {
    /// An amount of `amount_minor` minor units of `currency`.
    pub const fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Zero in `currency`, the neutral element for sums.
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// True when strictly greater than zero.
    pub const fn is_positive(&self) -> bool {
        self.amount_minor > 0
    }

    /// Sum of two amounts of the same currency.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] or [`MoneyError::Overflow`].
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|amount| Money::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// Difference of two amounts of the same currency.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] or [`MoneyError::Overflow`].
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_sub(other.amount_minor)
            .map(|amount| Money::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// This amount times a quantity (a line total).
    ///
    /// # Errors
    /// [`MoneyError::Overflow`].
    pub fn checked_mul(self, quantity: u32) -> Result<Money, MoneyError> {
        self.amount_minor
            .checked_mul(i64::from(quantity))
            .map(|amount| Money::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.amount_minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::new("EUR").unwrap()
    }

    #[test]
    fn currency_accepts_three_uppercase_letters_only() {
        assert_eq!(eur().as_str(), "EUR");
        for bad in ["", "EU", "EURO", "eur", "E1R", "ÉUR", "EU "] {
            assert_eq!(
                Currency::new(bad),
                Err(CurrencyError(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn currency_serde_validates() {
        assert_eq!(serde_json::to_string(&eur()).unwrap(), "\"EUR\"");
        assert_eq!(
            serde_json::from_str::<Currency>("\"USD\"")
                .unwrap()
                .as_str(),
            "USD"
        );
        assert!(serde_json::from_str::<Currency>("\"usd\"").is_err());
    }

    #[test]
    fn money_arithmetic_is_checked() {
        let usd = Currency::new("USD").unwrap();
        let a = Money::new(150, eur());
        assert_eq!(
            a.checked_add(Money::new(50, eur())),
            Ok(Money::new(200, eur()))
        );
        assert_eq!(
            a.checked_sub(Money::new(200, eur())),
            Ok(Money::new(-50, eur()))
        );
        assert_eq!(a.checked_mul(3), Ok(Money::new(450, eur())));
        assert_eq!(
            a.checked_add(Money::new(1, usd)),
            Err(MoneyError::CurrencyMismatch {
                left: eur(),
                right: usd
            })
        );
        assert_eq!(
            Money::new(i64::MAX, eur()).checked_add(Money::new(1, eur())),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::new(i64::MAX, eur()).checked_mul(2),
            Err(MoneyError::Overflow)
        );
        assert!(a.is_positive());
        assert!(!Money::zero(eur()).is_positive());
    }
}
