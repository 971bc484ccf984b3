//! The read models' extractors, on [`ops::params`]: their rejections are problem documents
//! ([`QueryError`]) naming the parameter at fault, so axum's plain-text rejections never
//! reach a client. The audit routes have their own, in the `audit` crate.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use ops::params::NoParams;
use ops::params::{ParameterError, QueryParams, parse_positive, single_path_param};
use utoipa::IntoParams;
use uuid::Uuid;

use super::cursor::{self, PageLimit};
use super::problem::QueryError;
use read_model::orders::{CustomerOrderPosition, OrderStatus};

/// Longest SKU (the inventory aggregate's rule).
const MAX_SKU_LEN: usize = 64;

/// The route's single path parameter, a UUID (`/orders/{order_id}`, …).
#[derive(Debug, Clone, Copy)]
pub struct UuidPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for UuidPath {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (name, value) = single_path_param(parts, state).await?;
        Uuid::parse_str(&value)
            .map(Self)
            .map_err(|_| ParameterError::path(&name, format!("{value:?} is not a UUID")).into())
    }
}

/// The route's single path parameter, a SKU (`/stock/{sku}`): 1 to 64 characters from
/// `A-Z a-z 0-9 - _ .`, as the inventory aggregate accepts them.
#[derive(Debug, Clone)]
pub struct SkuPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SkuPath {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (name, value) = single_path_param(parts, state).await?;
        let valid = !value.is_empty()
            && value.len() <= MAX_SKU_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid {
            Ok(Self(value))
        } else {
            Err(ParameterError::path(
                &name,
                format!(
                    "{value:?} is not a SKU: expected 1 to {MAX_SKU_LEN} characters from A-Z a-z 0-9 - _ ."
                ),
            )
            .into())
        }
    }
}

/// `?min_version=N` of the single-aggregate reads.
#[derive(Debug, Clone, Copy, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// Read-your-writes: the aggregate version a command returned (1 or more). The answer
    /// waits, bounded, until the read model has reached it, and is 503
    /// `not_yet_consistent` with `Retry-After` if it does not in time. A row that does not
    /// exist yet is waited for too.
    #[param(minimum = 1)]
    pub min_version: Option<i64>,
}

impl<S: Send + Sync> FromRequestParts<S> for ConsistencyParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let min_version = params
            .take("min_version")?
            .map(|value| parse_positive("min_version", &value))
            .transpose()?;
        params.finish()?;
        Ok(Self { min_version })
    }
}

/// `?status=&limit=&cursor=` of `/customers/{customer_id}/orders`.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerOrdersParams {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: PageLimit,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<CustomerOrderPosition>,
}

impl<S: Send + Sync> FromRequestParts<S> for CustomerOrdersParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let status = params
            .take("status")?
            .map(|value| {
                value
                    .parse::<OrderStatus>()
                    .map_err(|error| QueryError::parameter("status", error.to_string()))
            })
            .transpose()?;
        let limit = PageLimit::parse(params.take("limit")?)?;
        let cursor = params
            .take("cursor")?
            .map(|value| cursor::decode_customer_order(&value))
            .transpose()?;
        params.finish()?;
        Ok(Self {
            status,
            limit,
            cursor,
        })
    }
}

/// `?limit=&cursor=` of `/stock`.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StockParams {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: PageLimit,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for StockParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let limit = PageLimit::parse(params.take("limit")?)?;
        let cursor = params
            .take("cursor")?
            .map(|value| cursor::decode_sku(&value))
            .transpose()?;
        params.finish()?;
        Ok(Self { limit, cursor })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(uri: &str) -> Parts {
        Request::builder().uri(uri).body(()).unwrap().into_parts().0
    }

    async fn consistency(uri: &str) -> Result<ConsistencyParams, QueryError> {
        ConsistencyParams::from_request_parts(&mut parts(uri), &()).await
    }

    fn parameter_of(error: QueryError) -> String {
        match error {
            QueryError::Request(ParameterError::InvalidParameter { parameter, .. }) => parameter,
            other => panic!("expected an invalid parameter, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn min_version_must_be_positive() {
        assert_eq!(consistency("/x").await.unwrap().min_version, None);
        assert_eq!(
            consistency("/x?min_version=3").await.unwrap().min_version,
            Some(3)
        );
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            let error = consistency(&format!("/x?min_version={bad}"))
                .await
                .unwrap_err();
            assert_eq!(parameter_of(error), "min_version", "{bad}");
        }
    }

    #[tokio::test]
    async fn repeated_and_unknown_parameters_are_named() {
        let error = consistency("/x?min_version=1&min_version=2")
            .await
            .unwrap_err();
        assert_eq!(parameter_of(error), "min_version");
        let error = consistency("/x?min_versoin=1").await.unwrap_err();
        assert_eq!(parameter_of(error), "min_versoin");
    }
}
