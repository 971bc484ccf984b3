//! Personal data in the audit trail (ADR 0009). Events are shown as stored — the sealed
//! `customer_details` stay in the payload, so the hash chain can be checked against what
//! the API returns — and each event that carries sealed details gets a `personal_data`
//! field next to its payload: opened for the `auditor` role, `redacted` for anyone else,
//! `erased` once the customer was forgotten.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
/// The keyring of [`AuditKeys`], re-exported so that a router mounting the audit routes
/// needs no other crate to build one.
pub use event_store::customer_keys::Keyring;
use event_store::customer_keys::{KeyError, Opened};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::AuditEvent;

/// The master keys the audit routes open personal data with; `None`: every auditor sees
/// `unavailable`. A router that mounts the audit routes provides it through `FromRef`.
#[derive(Clone, Default)]
pub struct AuditKeys(pub Option<Arc<Keyring>>);

impl fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AuditKeys")
            .field(&self.0.as_ref().map(|keys| keys.current_id()))
            .finish()
    }
}

/// Who is asking: auditors see personal data, everyone else sees it redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// The caller holds the `auditor` role.
    Auditor,
    /// Anyone else (including an unauthenticated caller where authentication is off).
    Other,
}

/// Fills `personal_data` of every event in `items` that carries sealed customer details.
///
/// # Errors
/// Database errors while reading a key.
pub async fn reveal(
    pool: &PgPool,
    keys: &AuditKeys,
    viewer: Viewer,
    items: &mut [AuditEvent],
) -> Result<(), sqlx::Error> {
    for item in items.iter_mut() {
        let Some(sealed) = sealed_details(item) else {
            continue;
        };
        item.personal_data = Some(view(pool, keys, viewer, &sealed).await?);
    }
    Ok(())
}

struct Sealed {
    customer_id: Uuid,
    key_id: Uuid,
    ciphertext: Option<Vec<u8>>,
}

/// `OrderCreated.customer_details` of a stored order event, if any.
fn sealed_details(item: &AuditEvent) -> Option<Sealed> {
    if item.aggregate_type != "order" || item.event_type != "OrderCreated" {
        return None;
    }
    let created = item.payload.get("OrderCreated")?;
    let details = created.get("customer_details").filter(|d| !d.is_null())?;
    let uuid = |value: Option<&Value>| value?.as_str().and_then(|s| Uuid::parse_str(s).ok());
    Some(Sealed {
        customer_id: uuid(created.get("customer_id"))?,
        key_id: uuid(details.get("key_id"))?,
        ciphertext: details
            .get("ciphertext")
            .and_then(Value::as_str)
            .and_then(|text| STANDARD.decode(text).ok()),
    })
}

async fn view(
    pool: &PgPool,
    keys: &AuditKeys,
    viewer: Viewer,
    sealed: &Sealed,
) -> Result<Value, sqlx::Error> {
    let key_id = sealed.key_id.to_string();
    if viewer != Viewer::Auditor {
        return Ok(json!({"status": "redacted", "key_id": key_id}));
    }
    let (Some(keyring), Some(ciphertext)) = (&keys.0, &sealed.ciphertext) else {
        return Ok(json!({"status": "unavailable", "key_id": key_id}));
    };
    let mut connection = pool.acquire().await?;
    let opened = keyring
        .open(
            &mut connection,
            sealed.customer_id,
            sealed.key_id,
            ciphertext,
        )
        .await;
    Ok(match opened {
        Ok(Opened::Plain(plaintext)) => match serde_json::from_slice::<Value>(&plaintext) {
            Ok(Value::Object(mut fields)) => {
                fields.insert("status".into(), json!("present"));
                fields.insert("key_id".into(), json!(key_id));
                Value::Object(fields)
            }
            _ => json!({"status": "unreadable", "key_id": key_id}),
        },
        Ok(Opened::Erased) => json!({"status": "erased", "key_id": key_id}),
        Err(KeyError::Database(error)) => return Err(error),
        Err(error) => {
            tracing::warn!(%error, "sealed personal data does not open");
            json!({"status": "unreadable", "key_id": key_id})
        }
    })
}
