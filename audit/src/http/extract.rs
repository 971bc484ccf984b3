//! The audit routes' extractors, on [`ops::params`]: every rejection is a 400 problem
//! document naming the path or query parameter at fault.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use ops::params::{
    PageLimit, ParameterError, QueryParams, parse_instant, parse_limit, parse_positive,
    raw_path_params,
};
use utoipa::IntoParams;

use super::cursor;
use crate::store::{LogFilter, LogPosition, StreamPosition, StreamRef};

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
    type Rejection = ParameterError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let mut aggregate_type = None;
        let mut aggregate_id = None;
        for (name, value) in raw_path_params(parts, state).await? {
            if value.is_empty()
                || value.len() > MAX_STREAM_KEY_LEN
                || value.chars().any(char::is_control)
            {
                return Err(ParameterError::path(
                    &name,
                    format!("must be 1 to {MAX_STREAM_KEY_LEN} bytes without control characters"),
                ));
            }
            match name.as_str() {
                "aggregate_type" => aggregate_type = Some(value),
                "aggregate_id" => aggregate_id = Some(value),
                _ => {}
            }
        }
        match (aggregate_type, aggregate_id) {
            (Some(aggregate_type), Some(aggregate_id)) => Ok(Self {
                aggregate_type,
                aggregate_id,
            }),
            _ => Err(ParameterError::path(
                "path",
                "expected an aggregate type and an aggregate id",
            )),
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
    type Rejection = ParameterError;

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
    type Rejection = ParameterError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let correlation_id = params.take_non_empty("correlation_id")?;
        let event_type = params.take_non_empty("event_type")?;
        let aggregate_type = params.take_non_empty("aggregate_type")?;
        let actor = params.take_non_empty("actor")?;
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
            return Err(ParameterError::parameter("to", "must not be before `from`"));
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
    type Rejection = ParameterError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = QueryParams::from_parts(parts)?;
        let version = params
            .take("version")?
            .map(|value| parse_positive("version", &value))
            .transpose()?;
        let at = params
            .take("at")?
            .map(|value| parse_instant("at", &value))
            .transpose()?;
        params.finish()?;
        let state = Self { version, at };
        match (state.version, state.at) {
            (Some(_), Some(_)) => Err(ParameterError::parameter(
                "at",
                "give either `version` or `at`, not both",
            )),
            (None, None) => Err(ParameterError::parameter(
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
    type Rejection = ParameterError;

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
    /// [`ParameterError::InvalidParameter`] naming `limit`.
    pub fn parse(value: Option<String>) -> Result<Self, ParameterError> {
        parse_limit(value, Self::DEFAULT, Self::MAX).map(Self)
    }

    /// The bound.
    pub fn get(self) -> u32 {
        self.0
    }
}
