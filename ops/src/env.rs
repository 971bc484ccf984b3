//! Reading settings from the environment, and secrets from the environment or from files.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// The local stack's database (see the repository README): the default of every process.
pub const LOCAL_DATABASE_URL: &str = "postgres://keel:keel@127.0.0.1:5432/keel";

/// A configuration value that cannot be used. Names the variable; never echoes a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// A variable lookup: the process environment in binaries, a map in tests.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `var` parsed as `T`, if set.
///
/// # Errors
/// [`ConfigError`] if it is set and does not parse.
pub fn parsed<T: FromStr>(lookup: Lookup<'_>, var: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    lookup(var)
        .map(|value| {
            value.trim().parse().map_err(|e: T::Err| ConfigError {
                var,
                reason: format!("cannot parse {value:?}: {e}"),
            })
        })
        .transpose()
}

/// A secret given either inline in `var` or as the path of a file in `file_var` (the usual
/// way to mount Kubernetes and Docker secrets). Setting both is ambiguous and refused.
/// The value is never part of an error message.
///
/// # Errors
/// [`ConfigError`] if both are set, the file cannot be read, or the secret is empty.
pub fn secret(
    lookup: Lookup<'_>,
    var: &'static str,
    file_var: &'static str,
) -> Result<Option<String>, ConfigError> {
    let value = match (lookup(var), lookup(file_var)) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ConfigError {
                var,
                reason: format!("set either {var} or {file_var}, not both"),
            });
        }
        (Some(value), None) => value,
        (None, Some(path)) => std::fs::read_to_string(path.trim()).map_err(|e| ConfigError {
            var: file_var,
            reason: format!("cannot read {path:?}: {e}"),
        })?,
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(ConfigError {
            var,
            reason: "is empty".into(),
        });
    }
    Ok(Some(value))
}

/// A PostgreSQL URL whose `Debug` and `Display` hide the password, so settings can be
/// logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Connection options parsed from the URL.
    ///
    /// # Errors
    /// [`ConfigError`] if it is not a PostgreSQL URL; the message never repeats the URL.
    pub fn connect_options(&self) -> Result<PgConnectOptions, ConfigError> {
        let invalid = || ConfigError {
            var: "KEEL_DATABASE_URL",
            reason: "not a valid postgres:// URL".into(),
        };
        if !(self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")) {
            return Err(invalid());
        }
        PgConnectOptions::from_str(&self.0).map_err(|_| invalid())
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".into();
        };
        match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                format!("{scheme}://{user}:***@{host}")
            }
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}
