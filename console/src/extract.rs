//! Strict parameters of the console's routes: each rejection is a 400 problem document
//! naming the parameter (`ops::params`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ops::params::{ParameterError, single_path_param};

/// A path parameter that must parse as `T`, e.g. a dead letter's id or an order id.
#[derive(Debug, Clone, Copy)]
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: std::str::FromStr> FromRequestParts<S> for PathId<T> {
    type Rejection = ParameterError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (name, value) = single_path_param(parts, state).await?;
        value
            .parse()
            .map(Self)
            .map_err(|_| ParameterError::path(&name, format!("{value:?} is not a valid {name}")))
    }
}

/// `true` or `false`.
///
/// # Errors
/// Anything else, naming `name`.
pub fn parse_bool(name: &str, value: Option<String>) -> Result<bool, ParameterError> {
    match value.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ParameterError::parameter(
            name,
            format!("must be true or false, not {other:?}"),
        )),
    }
}
