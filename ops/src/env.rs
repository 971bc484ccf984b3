//! Reading settings from the environment ([`Env`], the one reader of every process), and
//! secrets from the environment or from files.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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

/// The one way every process reads its settings: typed getters over a variable lookup
/// (the process environment in binaries, a map in tests). Each getter returns `None` when
/// the variable is unset or blank, so the caller keeps its default, and an error naming
/// the variable when it is set to something unusable. Values are trimmed.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    lookup: Lookup<'a>,
}

impl<'a> Env<'a> {
    /// Settings read through `lookup`.
    pub fn new(lookup: Lookup<'a>) -> Self {
        Self { lookup }
    }

    /// The raw lookup, for settings readers that take one.
    pub fn lookup(&self) -> Lookup<'a> {
        self.lookup
    }

    /// `var`, trimmed, if set and not blank.
    pub fn text(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// `var` parsed as `T`, if set.
    ///
    /// # Errors
    /// [`ConfigError`] if it is set and does not parse.
    pub fn parsed<T: FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.text(var)
            .map(|value| {
                value.parse().map_err(|e: T::Err| ConfigError {
                    var,
                    reason: format!("cannot parse {value:?}: {e}"),
                })
            })
            .transpose()
    }

    /// `var` parsed as a number greater than zero, if set.
    ///
    /// # Errors
    /// [`ConfigError`] if it is set and does not parse, or is zero.
    pub fn positive<T>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + PartialOrd + Default,
        T::Err: fmt::Display,
    {
        match self.parsed::<T>(var)? {
            Some(value) if value <= T::default() => Err(ConfigError {
                var,
                reason: "must be greater than zero".into(),
            }),
            other => Ok(other),
        }
    }

    /// `var` as a whole number of milliseconds, if set.
    ///
    /// # Errors
    /// [`ConfigError`] if it is set and is not a whole number.
    pub fn millis(&self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.parsed(var)?.map(Duration::from_millis))
    }

    /// `var` as a number of milliseconds greater than zero, if set.
    ///
    /// # Errors
    /// [`ConfigError`] if it is set and is not a whole number, or is zero.
    pub fn positive_millis(&self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.positive(var)?.map(Duration::from_millis))
    }

    /// `var` as a whole number of seconds, if set.
    ///
    /// # Errors
    /// [`ConfigError`] if it is set and is not a whole number.
    pub fn secs(&self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.parsed(var)?.map(Duration::from_secs))
    }

    /// `var` as a number of seconds greater than zero, if set.
    ///
    /// # Errors
    /// [`ConfigError`] if it is set and is not a whole number, or is zero.
    pub fn positive_secs(&self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.positive(var)?.map(Duration::from_secs))
    }

    /// `var` as a PostgreSQL URL, if set. The error never repeats the URL (it may hold a
    /// password).
    ///
    /// # Errors
    /// [`ConfigError`] naming `var` if it is not a `postgres://` URL.
    pub fn database_url(&self, var: &'static str) -> Result<Option<DatabaseUrl>, ConfigError> {
        self.text(var)
            .map(|url| {
                let url = DatabaseUrl::new(url);
                url.connect_options()
                    .map(|_| url)
                    .map_err(|error| ConfigError { var, ..error })
            })
            .transpose()
    }

    /// The master keys of personal data (`docs/adr/0009-crypto-shredding.md`), each read as
    /// [`Env::secret`] reads a secret: `KEEL_MASTER_KEY` / `_FILE` (wraps new data keys) and
    /// `KEEL_MASTER_KEY_PREVIOUS` / `_FILE` (comma-separated; still unwrap during a
    /// rotation), handed to `parse` (`event_store::customer_keys::Keyring::from_config`).
    ///
    /// # Errors
    /// [`ConfigError`] as [`Env::secret`], or naming `KEEL_MASTER_KEY` with `parse`'s error.
    pub fn master_keys<T, E: fmt::Display>(
        &self,
        parse: impl FnOnce(Option<&str>, Option<&str>) -> Result<T, E>,
    ) -> Result<T, ConfigError> {
        let current = self.secret("KEEL_MASTER_KEY", "KEEL_MASTER_KEY_FILE")?;
        let previous = self.secret("KEEL_MASTER_KEY_PREVIOUS", "KEEL_MASTER_KEY_PREVIOUS_FILE")?;
        parse(current.as_deref(), previous.as_deref()).map_err(|error| ConfigError {
            var: "KEEL_MASTER_KEY",
            reason: error.to_string(),
        })
    }

    /// A secret given either inline in `var` or as the path of a file in `file_var` (the
    /// usual way to mount Kubernetes and Docker secrets). Setting both is ambiguous and
    /// refused, and so is an empty secret: unlike other settings, a blank secret is an
    /// error, not "unset". The value is never part of an error message.
    ///
    /// # Errors
    /// [`ConfigError`] if both are set, the file cannot be read, or the secret is empty.
    pub fn secret(
        &self,
        var: &'static str,
        file_var: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        let value = match ((self.lookup)(var), (self.lookup)(file_var)) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    var,
                    reason: format!("set either {var} or {file_var}, not both"),
                });
            }
            (Some(value), None) => value,
            (None, Some(path)) => {
                std::fs::read_to_string(path.trim()).map_err(|e| ConfigError {
                    var: file_var,
                    reason: format!("cannot read {path:?}: {e}"),
                })?
            }
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
}

impl fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

/// Runs a settings reader over the process environment.
pub fn from_process<T>(read: impl FnOnce(Env<'_>) -> T) -> T {
    read(Env::new(&|name| std::env::var(name).ok()))
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

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// `f` run on an [`Env`] over exactly `vars` (a later pair overrides an earlier one).
    pub(crate) fn read<T>(vars: &[(&str, &str)], f: impl FnOnce(Env<'_>) -> T) -> T {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        f(Env::new(&|name| vars.get(name).cloned()))
    }

    #[test]
    fn unset_and_blank_keep_the_default_and_values_are_trimmed() {
        read(&[("KEEL_BLANK", "  "), ("KEEL_N", " 42 ")], |env| {
            assert_eq!(env.text("KEEL_UNSET"), None);
            assert_eq!(env.text("KEEL_BLANK"), None);
            assert_eq!(env.parsed::<u32>("KEEL_BLANK"), Ok(None));
            assert_eq!(env.parsed::<u32>("KEEL_N"), Ok(Some(42)));
            assert_eq!(env.millis("KEEL_N"), Ok(Some(Duration::from_millis(42))));
            assert_eq!(env.secs("KEEL_N"), Ok(Some(Duration::from_secs(42))));
        });
    }

    #[test]
    fn unusable_values_name_the_variable() {
        read(
            &[
                ("KEEL_N", "many"),
                ("KEEL_ZERO", "0"),
                ("KEEL_NEGATIVE", "-3"),
            ],
            |env| {
                let error = env.parsed::<u32>("KEEL_N").unwrap_err();
                assert_eq!(error.var, "KEEL_N");
                assert!(error.reason.contains("\"many\""), "{error}");
                assert_eq!(env.parsed::<u32>("KEEL_ZERO"), Ok(Some(0)));
                let error = env.positive::<u32>("KEEL_ZERO").unwrap_err();
                assert_eq!(error.to_string(), "KEEL_ZERO: must be greater than zero");
                assert!(env.positive_millis("KEEL_ZERO").is_err());
                assert!(env.positive::<i32>("KEEL_NEGATIVE").is_err());
                assert!(env.positive_secs("KEEL_ZERO").is_err());
            },
        );
    }

    #[test]
    fn a_database_url_error_names_its_variable_and_never_the_password() {
        read(
            &[
                ("KEEL_READ_MODEL_DATABASE_URL", "mysql://root:hunter2@db/x"),
                ("KEEL_DATABASE_URL", "postgres://keel:hunter2@db:5432/keel"),
            ],
            |env| {
                let error = env
                    .database_url("KEEL_READ_MODEL_DATABASE_URL")
                    .unwrap_err();
                assert_eq!(error.var, "KEEL_READ_MODEL_DATABASE_URL");
                assert!(!error.to_string().contains("hunter2"), "{error}");
                let url = env.database_url("KEEL_DATABASE_URL").unwrap().unwrap();
                assert_eq!(url.expose(), "postgres://keel:hunter2@db:5432/keel");
                assert_eq!(url.to_string(), "postgres://keel:***@db:5432/keel");
            },
        );
    }

    #[test]
    fn a_secret_comes_inline_or_from_a_file_never_both_never_empty() {
        let path = std::env::temp_dir().join(format!("keel-env-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let file = path.to_str().unwrap();
        read(&[("S_FILE", file)], |env| {
            assert_eq!(env.secret("S", "S_FILE"), Ok(Some("from-file".into())));
        });
        read(&[("S", "inline")], |env| {
            assert_eq!(env.secret("S", "S_FILE"), Ok(Some("inline".into())));
        });
        read(&[("S", "inline"), ("S_FILE", file)], |env| {
            let error = env.secret("S", "S_FILE").unwrap_err();
            assert!(error.reason.contains("not both"), "{error}");
        });
        read(&[("S", " ")], |env| {
            assert_eq!(env.secret("S", "S_FILE").unwrap_err().reason, "is empty");
        });
        std::fs::remove_file(path).unwrap();
    }
}
