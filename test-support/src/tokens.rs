//! Bearer tokens for the security tests, minted the way an identity provider would.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ops::auth::{AuthSettings, JwtKey, JwtSettings};
use serde_json::{Value, json};

/// HS256 secret of the test services (≥ 32 bytes, as the services require).
pub const HS256_SECRET: &str = "keel-security-tests-hs256-secret-0123456789";

/// RSA key pair made for these tests only (see `test-support/fixtures/README.md`).
pub const RS256_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/jwt-test-rs256-private.pem");
/// Its public half, which the services are configured with.
pub const RS256_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/jwt-test-rs256-public.pem");

/// Authentication with [`HS256_SECRET`].
pub fn hs256_settings() -> AuthSettings {
    AuthSettings::Jwt(JwtSettings {
        key: JwtKey::Hs256(HS256_SECRET.to_owned()),
        issuer: None,
        audience: None,
        leeway_secs: 0,
    })
}

/// Authentication with [`RS256_PUBLIC_KEY_PEM`], requiring issuer and audience.
pub fn rs256_settings(issuer: &str, audience: &str) -> AuthSettings {
    AuthSettings::Jwt(JwtSettings {
        key: JwtKey::Rs256PublicKeyPem(RS256_PUBLIC_KEY_PEM.to_owned()),
        issuer: Some(issuer.to_owned()),
        audience: Some(audience.to_owned()),
        leeway_secs: 0,
    })
}

/// Seconds since the epoch, shifted by `offset`.
pub fn epoch_plus(offset: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    now + offset
}

/// Claims for `subject` with `roles`, valid for an hour.
pub fn claims(subject: &str, roles: &[&str]) -> Value {
    json!({"sub": subject, "roles": roles, "iat": epoch_plus(0), "exp": epoch_plus(3600)})
}

/// `claims` signed with HS256 and `secret`.
///
/// # Panics
/// If signing fails.
pub fn hs256(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("HS256 key");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("sign HS256")
}

/// `claims` signed with RS256 and the test private key.
///
/// # Panics
/// If signing fails.
pub fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RS256_PRIVATE_KEY_PEM.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign RS256")
}

/// A token for `subject` with `roles`, signed with the test HS256 secret.
pub fn writer_or(subject: &str, roles: &[&str]) -> String {
    hs256(&claims(subject, roles), HS256_SECRET)
}
