//! The queries on the read models (schema `read_model`, owned and migrated by the
//! `projections` crate) and the views they return, which are also the API's bodies.
//!
//! Reads only: this crate never writes a read model. Each view that supports
//! read-your-writes has a cheap `*_version` probe for [`crate::changes::VersionWaiter`].

pub mod orders;
pub mod payments;
pub mod projections;
pub mod stock;

use serde::Serialize;
use utoipa::ToSchema;

/// An amount of money in integer minor units; never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Money {
    /// Amount in the currency's minor unit (cents for EUR).
    #[schema(example = 1999)]
    pub amount_minor: i64,
    /// ISO-4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
}

impl Money {
    fn new(amount_minor: i64, currency: &str) -> Self {
        Self {
            amount_minor,
            currency: currency.to_owned(),
        }
    }
}
