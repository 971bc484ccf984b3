//! The personal-data vault of the write side: the `PersonalDataVault` port of the domain on
//! the event store's key table (`event_store::customer_keys`, ADR 0009).

use std::fmt;
use std::sync::Arc;

use aggregates::customer::{
    CustomerDetails, CustomerKeyState, PersonalDataVault, SealedPersonalData, VaultError,
};
use async_trait::async_trait;
use event_store::customer_keys::{KeyHolding, Keyring};
use sqlx::PgPool;
use uuid::Uuid;

/// Seals with the customer's live data key, created on first use; without a master key
/// it refuses to seal (and still answers which keys exist, so forgetting works).
#[derive(Clone)]
pub struct KeyTableVault {
    pool: PgPool,
    keyring: Option<Arc<Keyring>>,
}

impl fmt::Debug for KeyTableVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyTableVault")
            .field("master_key", &self.keyring.as_ref().map(|k| k.current_id()))
            .finish_non_exhaustive()
    }
}

impl KeyTableVault {
    /// A vault over `pool`'s key table.
    pub fn new(pool: PgPool, keyring: Option<Arc<Keyring>>) -> Self {
        Self { pool, keyring }
    }
}

#[async_trait]
impl PersonalDataVault for KeyTableVault {
    async fn seal(
        &self,
        customer_id: Uuid,
        details: &CustomerDetails,
    ) -> Result<SealedPersonalData, VaultError> {
        let Some(keyring) = &self.keyring else {
            tracing::warn!("personal data refused: no master key is configured (KEEL_MASTER_KEY)");
            return Err(VaultError("no master key is configured".into()));
        };
        let key = keyring
            .live_key(&self.pool, customer_id)
            .await
            .map_err(|error| {
                tracing::error!(%error, "no data key for the customer");
                VaultError(error.to_string())
            })?;
        // Serializing plain strings cannot fail.
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(details).unwrap_or_default());
        Ok(SealedPersonalData {
            key_id: key.key_id(),
            ciphertext: key.seal(&plaintext),
        })
    }

    async fn key_state(&self, customer_id: Uuid) -> Result<CustomerKeyState, VaultError> {
        let holding = Keyring::holding(&self.pool, customer_id)
            .await
            .map_err(|error| {
                tracing::error!(%error, "customer key table unreachable");
                VaultError(error.to_string())
            })?;
        Ok(match holding {
            KeyHolding::Unknown => CustomerKeyState::Unknown,
            KeyHolding::Live => CustomerKeyState::Live,
            KeyHolding::Destroyed => CustomerKeyState::Destroyed,
        })
    }
}
