//! Extractors whose rejections are problem documents ([`RequestError`]), so axum's
//! plain-text rejections never reach a client.

use aggregates::Sku;
use axum::body::Bytes;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ops::auth::Principal;
use schemas::http_headers;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::problem::{FieldError, RequestError};
use crate::store::ExpectedVersion;
use crate::store::idempotency::{IdempotencyKey, IdempotentRequest};
use ops::ids::IdSource;

/// `X-Correlation-Id`: read (a UUID) or generated, echoed on every response.
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static(http_headers::CORRELATION_ID);
/// `X-Causation-Id`: the message that caused this command (a UUID), optional.
pub const X_CAUSATION_ID: HeaderName = HeaderName::from_static(http_headers::CAUSATION_ID);
/// `X-Actor`: who issues the command (until authentication provides it).
pub const X_ACTOR: HeaderName = HeaderName::from_static(http_headers::ACTOR);
/// `Idempotency-Key`: makes a retried command safe.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(http_headers::IDEMPOTENCY_KEY);
/// `Idempotent-Replayed: true` marks a response replayed for a repeated key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// W3C trace context.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

pub use ops::auth::ANONYMOUS_ACTOR;
/// Longest accepted `X-Actor`.
pub const MAX_ACTOR_CHARS: usize = 200;

/// A JSON body deserialized into `T`, with precise errors.
///
/// An empty body counts as `{}`, so commands without fields need no body. A non-empty body
/// must be `application/json` (or `application/*+json`).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = RequestError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = json_content_type(request.headers());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    RequestError::PayloadTooLarge {
                        limit: body_limit_hint(&rejection.body_text()),
                    }
                } else {
                    RequestError::UnreadableBody
                }
            })?;
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else if is_json {
            &body
        } else {
            return Err(RequestError::UnsupportedMediaType);
        };
        parse_json(body).map(ApiJson)
    }
}

fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(Ok(value)) = headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

// axum reports the limit only in its message; the number is informative, not essential.
fn body_limit_hint(message: &str) -> usize {
    message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|digits| digits.parse().ok())
        .next_back()
        .unwrap_or(0)
}

/// Parses `body` as `T`: syntax errors become [`RequestError::MalformedJson`], shape errors
/// [`RequestError::InvalidBody`] naming the field by JSON pointer.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    // serde would also accept a struct written as an array of its field values; a command
    // body is always an object.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| matches!(b, b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'))
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(RequestError::InvalidBody {
            errors: vec![FieldError {
                pointer: String::new(),
                detail: "expected a JSON object".into(),
            }],
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let pointer = pointer_of(error.path());
        classify(error.into_inner(), pointer)
    })?;
    deserializer
        .end()
        .map_err(|error| classify(error, String::new()))?;
    Ok(value)
}

fn classify(error: serde_json::Error, pointer: String) -> RequestError {
    match error.classify() {
        serde_json::error::Category::Data => {
            let detail = without_position(&error);
            RequestError::InvalidBody {
                errors: vec![FieldError {
                    pointer: with_named_field(pointer, &detail),
                    detail,
                }],
            }
        }
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => RequestError::MalformedJson {
            detail: error.to_string(),
        },
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&escape_pointer(key));
            }
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// serde reports a missing or unknown field at the enclosing object; point at the field.
fn with_named_field(pointer: String, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match named {
        Some(field) if !pointer.ends_with(&format!("/{}", escape_pointer(field))) => {
            format!("{pointer}/{}", escape_pointer(field))
        }
        _ => pointer,
    }
}

fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if error.line() == 0 {
        return message;
    }
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&suffix)
        .map_or(message.clone(), str::to_owned)
}

/// Path parameters: one UUID.
#[derive(Debug, Clone, Copy)]
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let [id] = raw_params::<S, 1>(parts, state).await?;
        Ok(Self(parse_uuid(&id)?))
    }
}

/// Path parameters: a UUID and a SKU (`/orders/{order_id}/lines/{sku}`).
#[derive(Debug, Clone)]
pub struct IdSkuPath(pub Uuid, pub Sku);

impl<S: Send + Sync> FromRequestParts<S> for IdSkuPath {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let [id, sku] = raw_params::<S, 2>(parts, state).await?;
        Ok(Self(parse_uuid(&id)?, parse_sku(sku)?))
    }
}

/// Path parameters: one SKU (`/inventory/{sku}/…`).
#[derive(Debug, Clone)]
pub struct SkuPath(pub Sku);

impl<S: Send + Sync> FromRequestParts<S> for SkuPath {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let [sku] = raw_params::<S, 1>(parts, state).await?;
        Ok(Self(parse_sku(sku)?))
    }
}

/// Path parameters: a SKU and a UUID (`/inventory/{sku}/reservations/{order_id}/…`).
#[derive(Debug, Clone)]
pub struct SkuIdPath(pub Sku, pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for SkuIdPath {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let [sku, id] = raw_params::<S, 2>(parts, state).await?;
        Ok(Self(parse_sku(sku)?, parse_uuid(&id)?))
    }
}

async fn raw_params<S: Send + Sync, const N: usize>(
    parts: &mut Parts,
    state: &S,
) -> Result<[String; N], RequestError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|rejection| RequestError::InvalidPath {
            detail: rejection.body_text(),
        })?;
    let values: Vec<String> = params.iter().map(|(_, value)| value.to_owned()).collect();
    values
        .try_into()
        .map_err(|values: Vec<String>| RequestError::InvalidPath {
            detail: format!("expected {N} path parameters, got {}", values.len()),
        })
}

fn parse_uuid(value: &str) -> Result<Uuid, RequestError> {
    Uuid::parse_str(value).map_err(|_| RequestError::InvalidPath {
        detail: format!("{value:?} is not a UUID"),
    })
}

fn parse_sku(value: String) -> Result<Sku, RequestError> {
    Sku::new(value).map_err(|error| RequestError::InvalidPath {
        detail: error.to_string(),
    })
}

/// The correlation id of the current request (set by [`correlate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationId(pub Uuid);

/// Middleware: takes `X-Correlation-Id` (a UUID) or generates one, makes it available to
/// handlers and logs, and echoes it on the response, error responses included.
pub async fn correlate(
    State(ids): State<Arc<dyn IdSource>>,
    mut request: Request,
    next: Next,
) -> Response {
    let given = request.headers().get(&X_CORRELATION_ID).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|text| Uuid::parse_str(text.trim()).ok())
    });
    let (id, mut response) = match given {
        Some(None) => {
            let response = RequestError::InvalidHeader {
                name: "X-Correlation-Id",
                detail: "must be a UUID".into(),
            }
            .into_response();
            (ids.new_id(), response)
        }
        Some(Some(_)) | None => {
            let id = given.flatten().unwrap_or_else(|| ids.new_id());
            request.extensions_mut().insert(CorrelationId(id));
            (id, next.run(request).await)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(X_CORRELATION_ID, value);
    }
    response
}

/// The command-related headers of a request, validated.
#[derive(Debug, Clone)]
pub struct CommandHeaders {
    /// From [`correlate`].
    pub correlation_id: Uuid,
    /// `X-Causation-Id`.
    pub causation_id: Option<Uuid>,
    /// The token's subject; without authentication `X-Actor`, or [`ANONYMOUS_ACTOR`].
    pub actor: String,
    /// `If-Match`.
    pub expected_version: Option<ExpectedVersion>,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<IdempotencyKey>,
    /// `traceparent`, when well-formed (an invalid one is ignored, as W3C prescribes).
    pub traceparent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        let correlation_id = parts
            .extensions
            .get::<CorrelationId>()
            .map(|c| c.0)
            .ok_or_else(|| RequestError::InvalidHeader {
                name: "X-Correlation-Id",
                detail: "missing correlation id".into(),
            })?;
        let causation_id = text_header(headers, &X_CAUSATION_ID, "X-Causation-Id")?
            .map(|text| {
                Uuid::parse_str(text.trim()).map_err(|_| RequestError::InvalidHeader {
                    name: "X-Causation-Id",
                    detail: "must be a UUID".into(),
                })
            })
            .transpose()?;
        // With authentication on, the verified token says who acts and X-Actor is ignored;
        // without it (local development), the caller names itself.
        let actor = match parts.extensions.get::<Principal>() {
            Some(principal) => principal.subject.clone(),
            None => match text_header(headers, &X_ACTOR, "X-Actor")? {
                None => ANONYMOUS_ACTOR.to_owned(),
                Some(actor) => validate_actor(actor.trim())?,
            },
        };
        let expected_version = text_header(headers, &header::IF_MATCH, "If-Match")?
            .map(parse_if_match)
            .transpose()?;
        let idempotency_key = text_header(headers, &IDEMPOTENCY_KEY, "Idempotency-Key")?
            .map(|text| {
                IdempotencyKey::new(text.trim()).map_err(|error| RequestError::InvalidHeader {
                    name: "Idempotency-Key",
                    detail: error.to_string(),
                })
            })
            .transpose()?;
        // With traces exported, the request's own span (a child of the caller's) is what
        // the events carry on; otherwise the caller's context is passed through as it came.
        let traceparent = ops::telemetry::current_traceparent().or_else(|| {
            headers
                .get(&TRACEPARENT)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| is_traceparent(value))
                .map(str::to_owned)
        });
        Ok(Self {
            correlation_id,
            causation_id,
            actor,
            expected_version,
            idempotency_key,
            traceparent,
        })
    }
}

impl CommandHeaders {
    /// A server-chosen id for a new aggregate or sub-entity: derived from the idempotency
    /// key when there is one (so concurrent retries agree on it), fresh otherwise.
    pub fn new_id(&self, purpose: &str, ids: &dyn IdSource) -> Uuid {
        match &self.idempotency_key {
            Some(key) => key.derive_id(purpose, &self.actor),
            None => ids.new_id(),
        }
    }

    /// The aggregate a create addresses: the client's id, else [`Self::new_id`]; and whether
    /// the id was drawn fresh for this request (no client id, no key to derive it from),
    /// so that nothing can be stored under it yet.
    pub fn id_for_create(
        &self,
        given: Option<Uuid>,
        purpose: &str,
        ids: &dyn IdSource,
    ) -> (Uuid, bool) {
        match given {
            Some(id) => (id, false),
            None => (self.new_id(purpose, ids), self.idempotency_key.is_none()),
        }
    }

    /// The idempotency key with the fingerprint of this request, if a key was sent.
    pub fn idempotent_request(
        &self,
        fingerprint: impl FnOnce() -> crate::store::idempotency::Fingerprint,
    ) -> Option<IdempotentRequest> {
        self.idempotency_key.clone().map(|key| IdempotentRequest {
            key,
            fingerprint: fingerprint(),
        })
    }
}

fn text_header<'a>(
    headers: &'a HeaderMap,
    header: &HeaderName,
    name: &'static str,
) -> Result<Option<&'a str>, RequestError> {
    let mut values = headers.get_all(header).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RequestError::InvalidHeader {
            name,
            detail: "must be sent once".into(),
        });
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| RequestError::InvalidHeader {
            name,
            detail: "must be visible ASCII".into(),
        })
}

fn validate_actor(actor: &str) -> Result<String, RequestError> {
    if actor.is_empty()
        || actor.chars().count() > MAX_ACTOR_CHARS
        || actor.chars().any(char::is_control)
    {
        return Err(RequestError::InvalidHeader {
            name: "X-Actor",
            detail: format!("must be 1 to {MAX_ACTOR_CHARS} characters without control characters"),
        });
    }
    Ok(actor.to_owned())
}

/// `If-Match`: `*` or a comma-separated list of entity tags. Versions are issued as strong
/// tags (`"3"`); weak or foreign tags are well-formed but never match (RFC 9110 §13.1.1
/// uses strong comparison).
pub fn parse_if_match(value: &str) -> Result<ExpectedVersion, RequestError> {
    let value = value.trim();
    if value == "*" {
        return Ok(ExpectedVersion::Exists);
    }
    let malformed = || RequestError::InvalidHeader {
        name: "If-Match",
        detail: "must be * or a list of entity tags such as \"3\" (the ETag of a response)".into(),
    };
    let mut versions = Vec::new();
    for tag in value.split(',').map(str::trim) {
        let (weak, quoted) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        let opaque = quoted
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .filter(|inner| !inner.contains('"'))
            .ok_or_else(malformed)?;
        if !weak && let Ok(version) = opaque.parse::<u64>() {
            versions.push(version);
        }
    }
    Ok(ExpectedVersion::OneOf(versions))
}

fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    matches!(parts.as_slice(), [version, trace, span, flags]
        if hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2)
            && *trace != "00000000000000000000000000000000"
            && *span != "0000000000000000")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        sku: String,
        quantity: u32,
        price: Price,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Price {
        amount_minor: i64,
    }

    fn invalid(body: &str) -> Vec<FieldError> {
        match parse_json::<Line>(body.as_bytes()) {
            Err(RequestError::InvalidBody { errors }) => errors,
            other => panic!("expected InvalidBody, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        let valid = r#"{"sku":"A","quantity":1,"price":{"amount_minor":1}}"#;
        let trailing = format!("{valid} {{}}");
        for body in ["{", "{\"sku\": }", "{\"sku\": \"A\",", "nope", &trailing] {
            let parsed = parse_json::<Line>(body.as_bytes());
            assert!(
                matches!(parsed, Err(RequestError::MalformedJson { .. })),
                "{body}: {parsed:?}"
            );
        }
    }

    #[test]
    fn shape_errors_point_at_the_field() {
        let errors = invalid(r#"{"sku":"A","quantity":-1,"price":{"amount_minor":1}}"#);
        assert_eq!(errors[0].pointer, "/quantity");
        assert!(errors[0].detail.contains("expected u32"), "{errors:?}");
        assert!(!errors[0].detail.contains("line 1"), "{errors:?}");

        let errors = invalid(r#"{"sku":"A","quantity":1,"price":{"amount_minor":"x"}}"#);
        assert_eq!(errors[0].pointer, "/price/amount_minor");

        let errors = invalid(r#"{"sku":"A","price":{"amount_minor":1}}"#);
        assert_eq!(errors[0].pointer, "/quantity");
        assert!(errors[0].detail.contains("missing field"), "{errors:?}");

        let errors =
            invalid(r#"{"sku":"A","quantity":1,"price":{"amount_minor":1},"colour":"red"}"#);
        assert_eq!(errors[0].pointer, "/colour");
        assert!(errors[0].detail.contains("unknown field"), "{errors:?}");

        for not_an_object in ["[]", r#"["A", 1, {"amount_minor": 1}]"#, "42", "null"] {
            let errors = invalid(not_an_object);
            assert_eq!(errors[0].pointer, "");
            assert_eq!(errors[0].detail, "expected a JSON object");
        }
    }

    #[test]
    fn if_match_parsing() {
        assert_eq!(parse_if_match("*").unwrap(), ExpectedVersion::Exists);
        assert_eq!(
            parse_if_match("\"3\"").unwrap(),
            ExpectedVersion::OneOf(vec![3])
        );
        assert_eq!(
            parse_if_match("\"3\", W/\"4\", \"abc\",\"5\"").unwrap(),
            ExpectedVersion::OneOf(vec![3, 5])
        );
        for bad in ["3", "\"3", "W/3", "\"3\" \"4\"", ""] {
            assert!(parse_if_match(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn traceparent_validation() {
        assert!(is_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        ));
        assert!(!is_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
        ));
        assert!(!is_traceparent(
            "00-00000000000000000000000000000000-b7ad6b7169203331-01"
        ));
    }
}
