//! Strict request parameters for GET routes: every rejection is a 400 problem document
//! that names the path or query parameter at fault, so axum's plain-text rejections never
//! reach a client, and a misspelt or repeated parameter is refused instead of ignored (a
//! misspelt `min_version` must not silently turn a consistent read into a stale one).
//!
//! - [`QueryParams`]: the query string, taken parameter by parameter, then `finish`ed;
//!   [`NoParams`] for a route that takes none.
//! - [`single_path_param`], [`raw_path_params`]: the route's path parameters.
//! - [`PageLimit`], [`parse_limit`], [`parse_positive`], [`parse_instant`]: typed values.
//! - [`cursor`]: the framing of opaque keyset cursors (a kind tag, base64url).
//!
//! Each API keeps its own extractors on top of these and its own error type, which wraps
//! [`ParameterError`].

use axum::extract::{FromRequestParts, Query, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::problem::Problem;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest accepted `limit`.
pub const MAX_LIMIT: u32 = 200;

/// A path or query parameter that cannot be used: a 400 that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// A path segment does not parse (not a UUID, not a SKU, …).
    #[error("{parameter}: {detail}")]
    InvalidPath {
        /// The path parameter.
        parameter: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A query parameter is malformed, out of range, repeated or unknown.
    #[error("{parameter}: {detail}")]
    InvalidParameter {
        /// The query parameter.
        parameter: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl ParameterError {
    /// An unusable query parameter.
    pub fn parameter(parameter: &str, detail: impl Into<String>) -> Self {
        Self::InvalidParameter {
            parameter: parameter.to_owned(),
            detail: detail.into(),
        }
    }

    /// An unusable path parameter.
    pub fn path(parameter: &str, detail: impl Into<String>) -> Self {
        Self::InvalidPath {
            parameter: parameter.to_owned(),
            detail: detail.into(),
        }
    }

    /// The parameter it names.
    pub fn parameter_name(&self) -> &str {
        match self {
            Self::InvalidPath { parameter, .. } | Self::InvalidParameter { parameter, .. } => {
                parameter
            }
        }
    }

    /// The problem document: 400 `request.invalid_path` or `request.invalid_parameter`,
    /// with `parameter`.
    pub fn problem(&self) -> Problem {
        let (code, title, parameter) = match self {
            Self::InvalidPath { parameter, .. } => {
                ("request.invalid_path", "Invalid path parameter", parameter)
            }
            Self::InvalidParameter { parameter, .. } => (
                "request.invalid_parameter",
                "Invalid query parameter",
                parameter,
            ),
        };
        Problem::new(StatusCode::BAD_REQUEST, code, title, self.to_string())
            .with_parameter(parameter.clone())
    }
}

impl IntoResponse for ParameterError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

/// The query string as name/value pairs, consumed parameter by parameter so that a
/// repeated or unknown parameter is an error that names it.
#[derive(Debug)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// The request's query string.
    ///
    /// # Errors
    /// A query string that does not decode, naming `query`.
    pub fn from_parts(parts: &Parts) -> Result<Self, ParameterError> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| Self(pairs))
            .map_err(|rejection| ParameterError::parameter("query", rejection.body_text()))
    }

    /// Takes `name` out: its value, or `None` when absent.
    ///
    /// # Errors
    /// `name` given more than once.
    pub fn take(&mut self, name: &str) -> Result<Option<String>, ParameterError> {
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
            _ => Err(ParameterError::parameter(
                name,
                "must be given at most once",
            )),
        }
    }

    /// Takes `name` out; a present but empty value is an error.
    ///
    /// # Errors
    /// `name` repeated or empty.
    pub fn take_non_empty(&mut self, name: &str) -> Result<Option<String>, ParameterError> {
        match self.take(name)? {
            Some(value) if value.is_empty() => {
                Err(ParameterError::parameter(name, "must not be empty"))
            }
            other => Ok(other),
        }
    }

    /// Ends the parsing: every parameter must have been taken.
    ///
    /// # Errors
    /// The first parameter left, as unknown.
    pub fn finish(self) -> Result<(), ParameterError> {
        match self.0.into_iter().next() {
            None => Ok(()),
            Some((name, _)) => Err(ParameterError::parameter(&name, "unknown query parameter")),
        }
    }
}

/// A route that takes no query parameters at all: any is refused as unknown.
#[derive(Debug, Clone, Copy)]
pub struct NoParams;

impl<S: Send + Sync> FromRequestParts<S> for NoParams {
    type Rejection = ParameterError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        QueryParams::from_parts(parts)?.finish()?;
        Ok(Self)
    }
}

/// The route's path parameters, as name/value pairs.
///
/// # Errors
/// Path parameters that do not decode, naming `path`.
pub async fn raw_path_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Vec<(String, String)>, ParameterError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|rejection| ParameterError::path("path", rejection.body_text()))?;
    Ok(params
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

/// The route's single path parameter: its name and value.
///
/// # Errors
/// Not exactly one path parameter, or one that does not decode, naming `path`.
pub async fn single_path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<(String, String), ParameterError> {
    let mut params = raw_path_params(parts, state).await?.into_iter();
    match (params.next(), params.next()) {
        (Some(param), None) => Ok(param),
        _ => Err(ParameterError::path(
            "path",
            "expected exactly one path parameter",
        )),
    }
}

/// A validated page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// `limit` as given (absent: [`DEFAULT_LIMIT`]); 1 to [`MAX_LIMIT`].
    ///
    /// # Errors
    /// [`ParameterError::InvalidParameter`] naming `limit`.
    pub fn parse(value: Option<String>) -> Result<Self, ParameterError> {
        parse_limit(value, DEFAULT_LIMIT, MAX_LIMIT).map(Self)
    }

    /// The page size.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch(self) -> i64 {
        i64::from(self.0) + 1
    }
}

/// A `limit` from 1 to `max` (absent: `default`).
///
/// # Errors
/// [`ParameterError::InvalidParameter`] naming `limit`.
pub fn parse_limit(value: Option<String>, default: u32, max: u32) -> Result<u32, ParameterError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<u32>() {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(ParameterError::parameter(
            "limit",
            format!("must be an integer from 1 to {max}, not {value:?}"),
        )),
    }
}

/// An integer of 1 or more (a version, a sequence).
///
/// # Errors
/// [`ParameterError::InvalidParameter`] naming `name`.
pub fn parse_positive(name: &str, value: &str) -> Result<i64, ParameterError> {
    match value.trim().parse::<i64>() {
        Ok(number) if number >= 1 => Ok(number),
        _ => Err(ParameterError::parameter(
            name,
            format!("must be an integer of 1 or more, not {value:?}"),
        )),
    }
}

/// An RFC 3339 instant. A `+` offset that arrived as a space (an unencoded `+` in a query
/// string) is read as `+`.
///
/// # Errors
/// [`ParameterError::InvalidParameter`] naming `name`.
pub fn parse_instant(name: &str, value: &str) -> Result<DateTime<Utc>, ParameterError> {
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
            ParameterError::parameter(
                name,
                format!(
                    "{value:?} is not an RFC 3339 instant such as 2024-05-01T12:00:00Z ({error})"
                ),
            )
        })
}

/// Opaque keyset cursors. A cursor is the position of the last entry of a page (its sort
/// key) behind a kind and format tag (`o1`, `g1`, …), base64url without padding, so the
/// next page starts strictly after it however many rows were inserted in between, and a
/// cursor of another listing, or of a future format, is rejected rather than misread.
pub mod cursor {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::ParameterError;

    /// The cursor of kind `kind` holding `body`.
    pub fn encode(kind: &str, body: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{kind}:{body}"))
    }

    /// The body of a cursor of kind `kind`.
    ///
    /// # Errors
    /// Not base64url, not UTF-8, or another kind: [`invalid`].
    pub fn decode(kind: &str, cursor: &str) -> Result<String, ParameterError> {
        let text = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(invalid)?;
        match text.split_once(':') {
            Some((found, body)) if found == kind => Ok(body.to_owned()),
            _ => Err(invalid()),
        }
    }

    /// The rejection of a cursor that is not one of this listing, naming `cursor`.
    pub fn invalid() -> ParameterError {
        ParameterError::parameter(
            "cursor",
            "not a cursor of this listing; pass `next_cursor` of the previous page unchanged",
        )
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(uri: &str) -> Parts {
        Request::builder().uri(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn repeated_and_unknown_parameters_are_named() {
        let mut params = QueryParams::from_parts(&parts("/x?a=1&a=2")).unwrap();
        assert_eq!(params.take("a").unwrap_err().parameter_name(), "a");
        let mut params = QueryParams::from_parts(&parts("/x?a=1&b=2")).unwrap();
        assert_eq!(params.take("a").unwrap().as_deref(), Some("1"));
        assert_eq!(params.finish().unwrap_err().parameter_name(), "b");
        let mut params = QueryParams::from_parts(&parts("/x?a=")).unwrap();
        assert_eq!(
            params.take_non_empty("a").unwrap_err().parameter_name(),
            "a"
        );
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), DEFAULT_LIMIT);
        assert_eq!(PageLimit::parse(Some("200".into())).unwrap().get(), 200);
        assert_eq!(PageLimit::parse(Some("7".into())).unwrap().fetch(), 8);
        for bad in ["0", "201", "-1", "ten", ""] {
            assert!(PageLimit::parse(Some(bad.into())).is_err(), "{bad}");
        }
        assert_eq!(parse_limit(Some("10000".into()), 1000, 10_000), Ok(10_000));
        assert!(parse_limit(Some("10001".into()), 1000, 10_000).is_err());
    }

    #[test]
    fn positives_and_instants() {
        assert_eq!(parse_positive("v", " 3 "), Ok(3));
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            assert_eq!(parse_positive("v", bad).unwrap_err().parameter_name(), "v");
        }
        let plus = parse_instant("at", "2024-05-01T14:00:00 02:00").unwrap();
        assert_eq!(plus, parse_instant("at", "2024-05-01T12:00:00Z").unwrap());
        assert!(parse_instant("at", "yesterday").is_err());
    }

    #[test]
    fn cursors_carry_their_kind() {
        let cursor = cursor::encode("s1", "SKU-1:x");
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{cursor}"
        );
        assert_eq!(cursor::decode("s1", &cursor).unwrap(), "SKU-1:x");
        assert!(cursor::decode("o1", &cursor).is_err());
        for bad in ["", "!!!", "czE"] {
            assert!(cursor::decode("s1", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problems_name_the_parameter() {
        let problem = ParameterError::parameter("limit", "too big").problem();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.code, "request.invalid_parameter");
        assert_eq!(problem.parameter.as_deref(), Some("limit"));
        assert_eq!(
            ParameterError::path("sku", "bad").problem().code,
            "request.invalid_path"
        );
    }
}
