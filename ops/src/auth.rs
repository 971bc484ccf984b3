//! Authentication with JWT bearer tokens, and roles.
//!
//! A token is accepted when its signature verifies with the configured key (HS256 with a
//! shared secret, or RS256 with the issuer's public key; the algorithm is fixed by the
//! configuration, never taken from the token), it has not expired (`exp` is required), it
//! is already valid (`nbf`), and its `iss` / `aud` match when those are configured. Its
//! `sub` becomes the actor of every event the request causes, and its `roles` claim (an
//! array of strings) says what it may do; unknown roles are ignored.

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::env::{self, ConfigError, Lookup};

/// Longest accepted subject, in characters (the event store's actor column holds it).
pub const MAX_SUBJECT_CHARS: usize = 200;

/// The actor recorded when a request names none (authentication disabled, no `X-Actor`).
pub const ANONYMOUS_ACTOR: &str = "anonymous";

/// What a caller may do. Each route needs at most one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends commands (the command API's POST, PATCH and DELETE routes).
    Writer,
    /// Reads the read models.
    Reader,
    /// Reads the audit trail and the projections' replay status, and opens the console.
    Auditor,
    /// Acts in the console (answers dead letters); every action is recorded with its actor.
    Operator,
}

impl Role {
    /// The name used in the token's `roles` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Writer => "writer",
            Self::Reader => "reader",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
        }
    }

    fn from_claim(name: &str) -> Option<Self> {
        match name {
            "writer" => Some(Self::Writer),
            "reader" => Some(Self::Reader),
            "auditor" => Some(Self::Auditor),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling, from a verified token. Handlers find it in the request's extensions
/// when authentication is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: the actor recorded on events.
    pub subject: String,
    /// The known roles the token grants.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the token grants `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Why a request was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("this operation needs a bearer token (Authorization: Bearer <JWT>)")]
    MissingToken,
    /// The header or the token is not well-formed.
    #[error("the bearer token is malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the configured key, or the algorithm is not the
    /// configured one.
    #[error("the bearer token's signature is not valid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the bearer token has expired")]
    Expired,
    /// A claim other than the expiry is unacceptable (`nbf`, `iss`, `aud`, `sub`).
    #[error("the bearer token is not acceptable: {0}")]
    InvalidClaims(String),
    /// The token is valid but does not grant the role the route needs.
    #[error("this operation needs the {needed} role")]
    Forbidden {
        /// The role the route needs.
        needed: Role,
    },
}

impl AuthError {
    /// Stable machine-readable code of the problem document.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "auth.missing_token",
            Self::Malformed(_) => "auth.malformed_token",
            Self::BadSignature => "auth.bad_signature",
            Self::Expired => "auth.token_expired",
            Self::InvalidClaims(_) => "auth.invalid_claims",
            Self::Forbidden { .. } => "auth.forbidden",
        }
    }
}

/// The key tokens are verified with.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret (at least 32 bytes).
    Hs256(String),
    /// RS256 with the issuer's public key, PEM-encoded.
    Rs256PublicKeyPem(String),
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("Hs256(***)"),
            Self::Rs256PublicKeyPem(_) => f.write_str("Rs256PublicKeyPem(..)"),
        }
    }
}

/// JWT verification settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The verification key; it also fixes the algorithm.
    pub key: JwtKey,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// Whether and how requests are authenticated.
#[derive(Debug, Clone, Default)]
pub enum AuthSettings {
    /// Every request is let in and the actor comes from `X-Actor`. For local development
    /// and in-process tests only; the binaries log a warning when it is on.
    #[default]
    Disabled,
    /// Bearer tokens are required on every non-public route.
    Jwt(JwtSettings),
}

/// Shortest HS256 secret accepted (RFC 7518 §3.2: a key as long as the hash output).
const MIN_HS256_SECRET_BYTES: usize = 32;

impl AuthSettings {
    /// Reads
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `KEEL_AUTH` | `jwt` (the default) or `disabled` (local development only) |
    /// | `KEEL_AUTH_HS256_SECRET` / `_FILE` | HS256 shared secret, inline or from a file |
    /// | `KEEL_AUTH_RS256_PUBLIC_KEY` / `_FILE` | RS256 public key (PEM), inline or from a file |
    /// | `KEEL_AUTH_ISSUER` | required `iss`, if set |
    /// | `KEEL_AUTH_AUDIENCE` | required `aud`, if set |
    /// | `KEEL_AUTH_LEEWAY_SECS` | clock skew tolerated on `exp`/`nbf` (default 30) |
    ///
    /// With `KEEL_AUTH=jwt` exactly one key must be configured: a service never starts
    /// open by accident.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable; a secret's value is never part of it.
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, ConfigError> {
        match lookup("KEEL_AUTH").as_deref().map(str::trim) {
            None | Some("jwt") => {}
            Some("disabled") => return Ok(Self::Disabled),
            Some(other) => {
                return Err(ConfigError {
                    var: "KEEL_AUTH",
                    reason: format!("unknown mode {other:?}; expected jwt or disabled"),
                });
            }
        }
        let env = env::Env::new(lookup);
        let hs256 = env.secret("KEEL_AUTH_HS256_SECRET", "KEEL_AUTH_HS256_SECRET_FILE")?;
        let rs256 = env.secret(
            "KEEL_AUTH_RS256_PUBLIC_KEY",
            "KEEL_AUTH_RS256_PUBLIC_KEY_FILE",
        )?;
        let key = match (hs256, rs256) {
            (Some(secret), None) => {
                if secret.len() < MIN_HS256_SECRET_BYTES {
                    return Err(ConfigError {
                        var: "KEEL_AUTH_HS256_SECRET",
                        reason: format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
                    });
                }
                JwtKey::Hs256(secret)
            }
            (None, Some(pem)) => JwtKey::Rs256PublicKeyPem(pem),
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    var: "KEEL_AUTH",
                    reason: "configure either an HS256 secret or an RS256 public key, not both"
                        .into(),
                });
            }
            (None, None) => {
                return Err(ConfigError {
                    var: "KEEL_AUTH",
                    reason: "authentication is required but no key is configured: set \
                             KEEL_AUTH_HS256_SECRET(_FILE) or KEEL_AUTH_RS256_PUBLIC_KEY(_FILE), \
                             or KEEL_AUTH=disabled for local development"
                        .into(),
                });
            }
        };
        let settings = JwtSettings {
            key,
            issuer: lookup("KEEL_AUTH_ISSUER").map(|s| s.trim().to_owned()),
            audience: lookup("KEEL_AUTH_AUDIENCE").map(|s| s.trim().to_owned()),
            leeway_secs: env.parsed("KEEL_AUTH_LEEWAY_SECS")?.unwrap_or(30),
        };
        // Parse the key now, so a bad PEM fails start-up rather than every request.
        Verifier::new(&settings)?;
        Ok(Self::Jwt(settings))
    }
}

/// Verifies bearer tokens against one key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl Verifier {
    /// A verifier for `settings`.
    ///
    /// # Errors
    /// [`ConfigError`] if the RS256 key is not a PEM-encoded RSA public key.
    pub fn new(settings: &JwtSettings) -> Result<Self, ConfigError> {
        let (key, algorithm) = match &settings.key {
            JwtKey::Hs256(secret) => (
                DecodingKey::from_secret(secret.as_bytes()).map_err(|e| ConfigError {
                    var: "KEEL_AUTH_HS256_SECRET",
                    reason: format!("not usable as an HS256 key: {e}"),
                })?,
                Algorithm::HS256,
            ),
            JwtKey::Rs256PublicKeyPem(pem) => (
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| ConfigError {
                    var: "KEEL_AUTH_RS256_PUBLIC_KEY",
                    reason: format!("not a PEM-encoded RSA public key: {e}"),
                })?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    /// The principal of `token`.
    ///
    /// # Errors
    /// [`AuthError`] saying why the token is refused.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| match error.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    AuthError::BadSignature
                }
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => {
                    AuthError::InvalidClaims("not valid yet (nbf)".into())
                }
                ErrorKind::InvalidIssuer => AuthError::InvalidClaims("wrong issuer (iss)".into()),
                ErrorKind::InvalidAudience => {
                    AuthError::InvalidClaims("wrong audience (aud)".into())
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::InvalidClaims(format!("the {claim} claim is missing"))
                }
                _ => AuthError::Malformed(error.to_string()),
            },
        )?;
        let subject = data.claims.sub.trim().to_owned();
        if subject.is_empty()
            || subject.chars().count() > MAX_SUBJECT_CHARS
            || subject.chars().any(char::is_control)
        {
            return Err(AuthError::InvalidClaims(format!(
                "sub must be 1 to {MAX_SUBJECT_CHARS} printable characters"
            )));
        }
        let mut roles: Vec<Role> = data
            .claims
            .roles
            .iter()
            .filter_map(|name| Role::from_claim(name))
            .collect();
        roles.dedup();
        Ok(Principal { subject, roles })
    }
}

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Probes, the OpenAPI document and metrics: no token.
    Public,
    /// A token granting this role.
    Requires(Role),
}

#[cfg(test)]
// Tests make their own ids and instants (`clippy.toml` bans that in the code under test).
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::collections::HashMap;

    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "an-hs256-test-secret-of-32-bytes!";

    fn settings(vars: &[(&str, &str)]) -> Result<AuthSettings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AuthSettings::from_lookup(&|name| vars.get(name).cloned())
    }

    fn verifier() -> Verifier {
        match settings(&[("KEEL_AUTH_HS256_SECRET", SECRET)]).unwrap() {
            AuthSettings::Jwt(jwt) => Verifier::new(&jwt).unwrap(),
            AuthSettings::Disabled => panic!("jwt expected"),
        }
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    }

    #[test]
    fn no_configuration_refuses_to_start_open() {
        let error = settings(&[]).unwrap_err();
        assert_eq!(error.var, "KEEL_AUTH");
        assert!(error.reason.contains("no key is configured"), "{error}");
        assert!(matches!(
            settings(&[("KEEL_AUTH", "disabled")]).unwrap(),
            AuthSettings::Disabled
        ));
        assert_eq!(
            settings(&[("KEEL_AUTH", "open")]).unwrap_err().var,
            "KEEL_AUTH"
        );
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        let short = settings(&[("KEEL_AUTH_HS256_SECRET", "hunter2")]).unwrap_err();
        assert!(!short.to_string().contains("hunter2"), "{short}");
        let both = settings(&[
            ("KEEL_AUTH_HS256_SECRET", SECRET),
            ("KEEL_AUTH_HS256_SECRET_FILE", "/nonexistent"),
        ])
        .unwrap_err();
        assert!(both.reason.contains("not both"), "{both}");
        let missing_file =
            settings(&[("KEEL_AUTH_HS256_SECRET_FILE", "/nonexistent/secret")]).unwrap_err();
        assert_eq!(missing_file.var, "KEEL_AUTH_HS256_SECRET_FILE");
        let shown = format!(
            "{:?}",
            settings(&[("KEEL_AUTH_HS256_SECRET", SECRET)]).unwrap()
        );
        assert!(!shown.contains(SECRET), "{shown}");
        let bad_pem = settings(&[("KEEL_AUTH_RS256_PUBLIC_KEY", "not a key")]).unwrap_err();
        assert_eq!(bad_pem.var, "KEEL_AUTH_RS256_PUBLIC_KEY");
    }

    #[test]
    fn secret_is_read_from_a_file() {
        let path = std::env::temp_dir().join(format!("keel-ops-secret-{}", std::process::id()));
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let parsed = settings(&[("KEEL_AUTH_HS256_SECRET_FILE", path.to_str().unwrap())]);
        std::fs::remove_file(&path).unwrap();
        match parsed.unwrap() {
            AuthSettings::Jwt(JwtSettings {
                key: JwtKey::Hs256(secret),
                ..
            }) => assert_eq!(secret, SECRET),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_valid_token_gives_subject_and_known_roles() {
        let principal = verifier()
            .verify(&token(
                json!({"sub": "alice", "exp": in_an_hour(), "roles": ["writer", "admin", "reader"]}),
                SECRET,
            ))
            .unwrap();
        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.roles, vec![Role::Writer, Role::Reader]);
        assert!(!principal.has(Role::Auditor));
    }

    #[test]
    fn every_kind_of_bad_token_is_told_apart() {
        let verifier = verifier();
        assert_eq!(
            verifier.verify(&token(
                json!({"sub": "a", "exp": in_an_hour()}),
                "another-secret-that-is-32-bytes-long"
            )),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verifier.verify(&token(json!({"sub": "a", "exp": 1_000_000}), SECRET)),
            Err(AuthError::Expired)
        );
        assert!(matches!(
            verifier.verify("not.a.jwt"),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            verifier.verify(&token(json!({"sub": "a"}), SECRET)),
            Err(AuthError::InvalidClaims(_))
        ));
        assert!(matches!(
            verifier.verify(&token(json!({"sub": " ", "exp": in_an_hour()}), SECRET)),
            Err(AuthError::InvalidClaims(_))
        ));
        // An unsigned token ("alg": "none") never passes.
        let unsigned = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            "eyJzdWIiOiJhIiwiZXhwIjo0MTAyNDQ0ODAwfQ"
        );
        assert!(verifier.verify(&unsigned).is_err());
    }
}
