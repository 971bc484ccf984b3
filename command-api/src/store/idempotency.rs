//! Idempotency keys: what a key is, how a request is fingerprinted, and the
//! `idempotency_keys` table (migration 0002) that the append transaction fills in.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::stored_u64;

/// A client-chosen `Idempotency-Key`: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a header value is not an [`IdempotencyKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {max} printable ASCII characters", max = IdempotencyKey::MAX_LEN)]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// Longest accepted key.
    pub const MAX_LEN: usize = 255;

    /// Validates a key.
    ///
    /// # Errors
    /// [`InvalidIdempotencyKey`] when empty, too long or not printable ASCII.
    pub fn new(value: &str) -> Result<Self, InvalidIdempotencyKey> {
        let printable = value.bytes().all(|b| (b' '..=b'~').contains(&b));
        if value.trim().is_empty() || value.len() > Self::MAX_LEN || !printable {
            return Err(InvalidIdempotencyKey);
        }
        Ok(Self(value.to_owned()))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id that every request carrying this key (for this actor and `purpose`) derives
    /// alike. Server-chosen ids come from here when a key is present, so concurrent retries
    /// of a create name the same aggregate (and the same payment-gateway idempotency key)
    /// instead of creating two.
    pub fn derive_id(&self, purpose: &str, actor: &str) -> Uuid {
        let name = format!("{purpose}\n{actor}\n{}", self.0);
        Uuid::new_v5(&KEY_DERIVED_ID_NAMESPACE, name.as_bytes())
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// UUIDv5 namespace of ids derived from idempotency keys. Never change it: existing keys
/// would derive other ids.
const KEY_DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_656c_2d69_6465_6d70_6f74_656e_7401);

/// SHA-256 (hex) of what a request asks for: the operation, its target and its body in
/// canonical form (the typed request re-serialized, so whitespace and key order of the
/// original JSON do not matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Fingerprints `operation` (a stable route name) on `target` with `body`.
    pub fn of<B: Serialize>(operation: &str, target: &str, body: &B) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        hasher.update(b"\n");
        hasher.update(target.as_bytes());
        hasher.update(b"\n");
        // Serializing plain request structs cannot fail; an empty body still fingerprints
        // the operation and target.
        hasher.update(serde_json::to_vec(body).unwrap_or_default());
        let digest = hasher.finalize();
        Self(digest.iter().map(|byte| format!("{byte:02x}")).collect())
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key together with the fingerprint of the request that presents it.
#[derive(Debug, Clone)]
pub struct IdempotentRequest {
    /// The client's key.
    pub key: IdempotencyKey,
    /// What the request asks for.
    pub fingerprint: Fingerprint,
}

/// The stored outcome of the command that first used a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    pub fingerprint: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub version: u64,
    pub event_count: u64,
}

impl IdempotencyRecord {
    pub(crate) fn matches(&self, request: &IdempotentRequest) -> bool {
        self.fingerprint.as_deref() == Some(request.fingerprint.as_str())
    }
}

pub(crate) async fn find(
    pool: &PgPool,
    actor: &str,
    key: &IdempotencyKey,
) -> Result<Option<IdempotencyRecord>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT request_fingerprint, aggregate_type, aggregate_id, version, event_count
           FROM idempotency_keys
          WHERE actor = $1 AND idempotency_key = $2",
    )
    .bind(actor)
    .bind(key.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(IdempotencyRecord {
            fingerprint: row.try_get("request_fingerprint")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            version: stored_u64("version", row.try_get("version")?)?,
            event_count: stored_u64("event_count", row.try_get::<i32, _>("event_count")?.into())?,
        })
    })
    .transpose()
}

/// Records a command that appended nothing. Returns false if the key was taken meanwhile.
pub(crate) async fn record_unchanged(
    pool: &PgPool,
    actor: &str,
    request: &IdempotentRequest,
    aggregate_type: &str,
    aggregate_id: &str,
    version: u64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys
                (actor, idempotency_key, request_fingerprint, aggregate_type, aggregate_id,
                 version, event_count)
         VALUES ($1, $2, $3, $4, $5, $6, 0)
         ON CONFLICT (actor, idempotency_key) DO NOTHING",
    )
    .bind(actor)
    .bind(request.key.as_str())
    .bind(request.fingerprint.as_str())
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_printable_ascii() {
        assert!(IdempotencyKey::new("order-2024-05-01:retry 1").is_ok());
        assert!(IdempotencyKey::new(&"k".repeat(255)).is_ok());
        for bad in ["", "   ", "tab\there", "é", &"k".repeat(256)] {
            assert_eq!(
                IdempotencyKey::new(bad),
                Err(InvalidIdempotencyKey),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn derived_ids_depend_on_key_actor_and_purpose() {
        let key = IdempotencyKey::new("k1").unwrap();
        let id = key.derive_id("order", "alice");
        assert_eq!(id, key.derive_id("order", "alice"));
        assert_ne!(id, key.derive_id("payment", "alice"));
        assert_ne!(id, key.derive_id("order", "bob"));
        assert_ne!(
            id,
            IdempotencyKey::new("k2")
                .unwrap()
                .derive_id("order", "alice")
        );
    }

    #[test]
    fn fingerprints_cover_operation_target_and_body() {
        #[derive(Serialize)]
        struct Body {
            quantity: u32,
        }
        let a = Fingerprint::of("inventory.add_stock", "SKU-1", &Body { quantity: 1 });
        assert_eq!(a.as_str().len(), 64);
        assert_eq!(
            a,
            Fingerprint::of("inventory.add_stock", "SKU-1", &Body { quantity: 1 })
        );
        assert_ne!(
            a,
            Fingerprint::of("inventory.add_stock", "SKU-1", &Body { quantity: 2 })
        );
        assert_ne!(
            a,
            Fingerprint::of("inventory.add_stock", "SKU-2", &Body { quantity: 1 })
        );
        assert_ne!(
            a,
            Fingerprint::of("inventory.adjust", "SKU-1", &Body { quantity: 1 })
        );
    }
}
