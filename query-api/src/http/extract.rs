//! Extractors whose rejections are problem documents ([`QueryError`]) naming the parameter
//! at fault, so axum's plain-text rejections never reach a client.

use axum::extract::{FromRequestParts, Query, RawPathParams};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use utoipa::IntoParams;
use uuid::Uuid;

use super::cursor::{self, PageLimit};
use super::problem::QueryError;
use crate::audit::store::{LogFilter, LogPosition, StreamPosition, StreamRef};
use crate::read_model::orders::{CustomerOrderPosition, OrderStatus};

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
            .map_err(|_| QueryError::InvalidPath {
                parameter: name,
                detail: format!("{value:?} is not a UUID"),
            })
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
            Err(QueryError::InvalidPath {
                parameter: name,
                detail: format!(
                    "{value:?} is not a SKU: expected 1 to {MAX_SKU_LEN} characters from A-Z a-z 0-9 - _ ."
                ),
            })
        }
    }
}

async fn single_path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<(String, String), QueryError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|rejection| QueryError::InvalidPath {
            parameter: "path".into(),
            detail: rejection.body_text(),
        })?;
    let mut params = params.iter();
    match (params.next(), params.next()) {
        (Some((name, value)), None) => Ok((name.to_owned(), value.to_owned())),
        _ => Err(QueryError::InvalidPath {
            parameter: "path".into(),
            detail: "expected exactly one path parameter".into(),
        }),
    }
}

/// The query string as name/value pairs, consumed parameter by parameter so that a
/// repeated or unknown parameter is an error that names it (a misspelt `min_version`
/// must not silently turn a consistent read into a stale one).
#[derive(Debug)]
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn from_parts(parts: &Parts) -> Result<Self, QueryError> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| Self(pairs))
            .map_err(|rejection| QueryError::parameter("query", rejection.body_text()))
    }

    fn take(&mut self, name: &str) -> Result<Option<String>, QueryError> {
        let mut values = Vec::new();
        self.0.retain(|(key, value)| {
            let matches = key == name;
            if matches {
                values.push(value.clone());
            }
            !matches
        });
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(QueryError::parameter(name, "must be given at most once")),
        }
    }

    fn finish(self) -> Result<(), QueryError> {
        match self.0.into_iter().next() {
            None => Ok(()),
            Some((name, _)) => Err(QueryError::parameter(&name, "unknown query parameter")),
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
            .map(|value| match value.trim().parse::<i64>() {
                Ok(version) if version >= 1 => Ok(version),
                _ => Err(QueryError::parameter(
                    "min_version",
                    format!("must be an integer of 1 or more, not {value:?}"),
                )),
            })
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

/// No query parameters at all.
#[derive(Debug, Clone, Copy)]
pub struct NoParams;

impl<S: Send + Sync> FromRequestParts<S> for NoParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        QueryParams::from_parts(parts)?.finish()?;
        Ok(Self)
    }
}

/// Longest accepted `aggregate_type` or `aggregate_id` in an audit path.
const MAX_STREAM_KEY_LEN: usize = 256;

/// `/audit/streams/{aggregate_type}/{aggregate_id}/…`: any stream of the store, known
/// aggregate type or not.
#[derive(Debug, Clone)]
pub struct StreamPath {
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: String,
}

impl StreamPath {
    /// The stream it names.
    pub fn stream(&self) -> StreamRef<'_> {
        StreamRef {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for StreamPath {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| QueryError::InvalidPath {
                parameter: "path".into(),
                detail: rejection.body_text(),
            })?;
        let mut aggregate_type = None;
        let mut aggregate_id = None;
        for (name, value) in &params {
            if value.is_empty()
                || value.len() > MAX_STREAM_KEY_LEN
                || value.chars().any(char::is_control)
            {
                return Err(QueryError::InvalidPath {
                    parameter: name.to_owned(),
                    detail: format!(
                        "must be 1 to {MAX_STREAM_KEY_LEN} bytes without control characters"
                    ),
                });
            }
            match name {
                "aggregate_type" => aggregate_type = Some(value.to_owned()),
                "aggregate_id" => aggregate_id = Some(value.to_owned()),
                _ => {}
            }
        }
        match (aggregate_type, aggregate_id) {
            (Some(aggregate_type), Some(aggregate_id)) => Ok(Self {
                aggregate_type,
                aggregate_id,
            }),
            _ => Err(QueryError::InvalidPath {
                parameter: "path".into(),
                detail: "expected an aggregate type and an aggregate id".into(),
            }),
        }
    }
}

/// `?limit=&cursor=` of a stream's history.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamEventsParams {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: PageLimit,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<i64>,
}

impl<S: Send + Sync> FromRequestParts<S> for StreamEventsParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let limit = PageLimit::parse(params.take("limit")?)?;
        let cursor = params
            .take("cursor")?
            .map(|value| cursor::decode_sequence(&value))
            .transpose()?;
        params.finish()?;
        Ok(Self { limit, cursor })
    }
}

/// Filters and paging of the global event log.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditLogParams {
    /// Only events of this business flow (`metadata.correlation_id`).
    pub correlation_id: Option<String>,
    /// Only events of this type, e.g. `OrderPlaced`.
    pub event_type: Option<String>,
    /// Only events of this aggregate type: `order`, `payment`, `inventory`.
    pub aggregate_type: Option<String>,
    /// Only events of commands issued by this actor (`metadata.actor`).
    pub actor: Option<String>,
    /// Only events recorded at or after this instant (RFC 3339; encode `+` as `%2B`).
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: PageLimit,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub cursor: Option<LogPosition>,
}

impl AuditLogParams {
    /// The filters as the store takes them.
    pub fn filter(&self) -> LogFilter {
        LogFilter {
            correlation_id: self.correlation_id.clone(),
            event_type: self.event_type.clone(),
            aggregate_types: self.aggregate_type.iter().cloned().collect(),
            actor: self.actor.clone(),
            from: self.from,
            to: self.to,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditLogParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let mut text = |name: &str| -> Result<Option<String>, QueryError> {
            match params.take(name)? {
                Some(value) if value.is_empty() => {
                    Err(QueryError::parameter(name, "must not be empty"))
                }
                other => Ok(other),
            }
        };
        let correlation_id = text("correlation_id")?;
        let event_type = text("event_type")?;
        let aggregate_type = text("aggregate_type")?;
        let actor = text("actor")?;
        let from = params
            .take("from")?
            .map(|value| parse_instant("from", &value))
            .transpose()?;
        let to = params
            .take("to")?
            .map(|value| parse_instant("to", &value))
            .transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            return Err(QueryError::parameter("to", "must not be before `from`"));
        }
        let limit = PageLimit::parse(params.take("limit")?)?;
        let cursor = params
            .take("cursor")?
            .map(|value| cursor::decode_log_position(&value))
            .transpose()?;
        params.finish()?;
        Ok(Self {
            correlation_id,
            event_type,
            aggregate_type,
            actor,
            from,
            to,
            limit,
            cursor,
        })
    }
}

/// Which past state of an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After the event with this sequence.
    Version(i64),
    /// After the last event recorded at or before this instant.
    Instant(DateTime<Utc>),
}

/// `?version=N` or `?at=<RFC 3339>`: exactly one.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// The state after the event with this sequence (1 or more).
    #[param(minimum = 1)]
    pub version: Option<i64>,
    /// The state after the last event recorded at or before this instant (RFC 3339; encode
    /// `+` as `%2B`).
    pub at: Option<DateTime<Utc>>,
}

impl StateParams {
    /// The one of `version` and `at` that was given (the extractor guarantees one).
    pub fn as_of(&self) -> Option<AsOf> {
        match (self.version, self.at) {
            (Some(version), None) => Some(AsOf::Version(version)),
            (None, Some(at)) => Some(AsOf::Instant(at)),
            _ => None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for StateParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let version = params
            .take("version")?
            .map(|value| match value.trim().parse::<i64>() {
                Ok(version) if version >= 1 => Ok(version),
                _ => Err(QueryError::parameter(
                    "version",
                    format!("must be an integer of 1 or more, not {value:?}"),
                )),
            })
            .transpose()?;
        let at = params
            .take("at")?
            .map(|value| parse_instant("at", &value))
            .transpose()?;
        params.finish()?;
        let state = Self { version, at };
        match (state.version, state.at) {
            (Some(_), Some(_)) => Err(QueryError::parameter(
                "at",
                "give either `version` or `at`, not both",
            )),
            (None, None) => Err(QueryError::parameter(
                "version",
                "give `version` (a sequence) or `at` (an RFC 3339 instant)",
            )),
            _ => Ok(state),
        }
    }
}

/// `?limit=&cursor=` of the store-wide verification.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// Events to check in this call, 1 to 10000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    pub limit: VerifyLimit,
    /// `next_cursor` of the previous call.
    #[param(value_type = Option<String>)]
    pub cursor: Option<StreamPosition>,
}

impl<S: Send + Sync> FromRequestParts<S> for VerifyParams {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let limit = VerifyLimit::parse(params.take("limit")?)?;
        let cursor = params
            .take("cursor")?
            .map(|value| cursor::decode_stream_position(&value))
            .transpose()?;
        params.finish()?;
        Ok(Self { limit, cursor })
    }
}

/// A validated verification bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyLimit(u32);

impl VerifyLimit {
    /// Events checked per call when `limit` is absent.
    pub const DEFAULT: u32 = 1000;
    /// Largest accepted `limit`.
    pub const MAX: u32 = 10_000;

    /// `limit` as given (absent: [`Self::DEFAULT`]); 1 to [`Self::MAX`].
    ///
    /// # Errors
    /// [`QueryError::InvalidParameter`] naming `limit`.
    pub fn parse(value: Option<String>) -> Result<Self, QueryError> {
        let Some(value) = value else {
            return Ok(Self(Self::DEFAULT));
        };
        match value.trim().parse::<u32>() {
            Ok(limit) if (1..=Self::MAX).contains(&limit) => Ok(Self(limit)),
            _ => Err(QueryError::parameter(
                "limit",
                format!("must be an integer from 1 to {}, not {value:?}", Self::MAX),
            )),
        }
    }

    /// The bound.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// An RFC 3339 instant. A `+` offset that arrived as a space (an unencoded `+` in a query
/// string) is read as `+`.
fn parse_instant(name: &str, value: &str) -> Result<DateTime<Utc>, QueryError> {
    DateTime::parse_from_rfc3339(value)
        .or_else(|error| {
            if value.contains(' ') {
                DateTime::parse_from_rfc3339(&value.replace(' ', "+"))
            } else {
                Err(error)
            }
        })
        .map(|instant| instant.with_timezone(&Utc))
        .map_err(|error| {
            QueryError::parameter(
                name,
                format!(
                    "{value:?} is not an RFC 3339 instant such as 2024-05-01T12:00:00Z ({error})"
                ),
            )
        })
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
            QueryError::InvalidParameter { parameter, .. } => parameter,
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
