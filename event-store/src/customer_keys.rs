//! Per-customer data keys (`customer_keys`, migration 0013) and the master keys that wrap
//! them: crypto-shredding as `docs/adr/0009-crypto-shredding.md` decides.
//!
//! - [`MasterKey`]: 32 bytes from configuration, known by an id derived from it.
//! - [`Keyring`]: the current master key (wraps new data keys) and previous ones (still
//!   unwrap during a rotation); gets or creates a customer's live [`DataKey`], opens a key
//!   by id, and re-wraps every live key under the current master key ([`Keyring::rotate`]).
//! - [`DataKey`]: seals and opens personal data, with associated data that binds each
//!   ciphertext to its customer and key.
//!
//! A destroyed key (the `CustomerForgotten` trigger of migration 0013) opens nothing: readers
//! get [`Opened::Erased`].

use std::fmt;
use std::time::Duration;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The AEAD of data keys and of their wrapping.
pub const ALGORITHM: &str = "AES-256-GCM";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const DATA_AAD_LABEL: &[u8] = b"keel/personal-data/v1";
const WRAP_AAD_LABEL: &[u8] = b"keel/data-key/v1";

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A configured master key is not base64 of 32 bytes.
    #[error("master key must be the base64 encoding of 32 bytes")]
    InvalidMasterKey,
    /// The key table could not be read or written.
    #[error("customer key table: {0}")]
    Database(#[from] sqlx::Error),
    /// A live data key is wrapped by a master key this process was not given.
    #[error("data key {key_id} is wrapped by master key {master_key_id}, which is not configured")]
    UnknownMasterKey {
        /// The data key.
        key_id: Uuid,
        /// The master key that wraps it.
        master_key_id: String,
    },
    /// A wrapped key does not unwrap with the master key its row names: a wrong key under
    /// that id, or a tampered row.
    #[error("data key {0} does not unwrap")]
    Unwrap(Uuid),
    /// Sealed bytes do not open with their data key: tampered, truncated, or bound to another
    /// customer.
    #[error("sealed data does not open with data key {0}")]
    Open(Uuid),
}

/// A master key. Its id is the first 8 bytes (hex) of SHA-256 over a label and the key, so
/// rows can name it without revealing it. `Debug` shows the id only.
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
    fingerprint_key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A master key from its base64 text (surrounding whitespace ignored, as a file has it).
    ///
    /// # Errors
    /// [`KeyError::InvalidMasterKey`] unless the text decodes to exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| KeyError::InvalidMasterKey)?,
        );
        let key: &[u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::InvalidMasterKey)?;
        Ok(Self::from_bytes(key))
    }

    /// A master key from its 32 bytes.
    pub fn from_bytes(key: &[u8; KEY_LEN]) -> Self {
        let id = Sha256::new()
            .chain_update(b"keel/master-key-id/v1")
            .chain_update(key)
            .finalize();
        let mut fingerprint_key = Zeroizing::new([0_u8; KEY_LEN]);
        fingerprint_key.copy_from_slice(
            &Sha256::new()
                .chain_update(b"keel/request-fingerprint/v1")
                .chain_update(key)
                .finalize(),
        );
        Self {
            id: id[..8].iter().map(|b| format!("{b:02x}")).collect(),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            fingerprint_key,
        }
    }

    /// A fresh random master key and its base64 text (for `keel-keys generate` and tests).
    pub fn generate() -> (Self, Zeroizing<String>) {
        let key = Aes256Gcm::generate_key(OsRng);
        let text = Zeroizing::new(STANDARD.encode(key.as_slice()));
        let mut bytes = Zeroizing::new([0_u8; KEY_LEN]);
        bytes.copy_from_slice(key.as_slice());
        (Self::from_bytes(&bytes), text)
    }

    /// The key's id, as `customer_keys.master_key_id` names it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A customer's data key, unwrapped.
pub struct DataKey {
    key_id: Uuid,
    customer_id: Uuid,
    cipher: Aes256Gcm,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("key_id", &self.key_id)
            .field("customer_id", &self.customer_id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// The key's id.
    pub fn key_id(&self) -> Uuid {
        self.key_id
    }

    /// The customer it belongs to.
    pub fn customer_id(&self) -> Uuid {
        self.customer_id
    }

    fn aad(&self) -> Vec<u8> {
        associated_data(DATA_AAD_LABEL, self.customer_id, self.key_id)
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plaintext`, with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.cipher, plaintext, &self.aad())
    }

    /// The plaintext of what [`DataKey::seal`] produced.
    ///
    /// # Errors
    /// [`KeyError::Open`] when the bytes were not sealed by this key for this customer.
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        open_with(&self.cipher, sealed, &self.aad()).ok_or(KeyError::Open(self.key_id))
    }
}

/// What opening sealed data gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The plaintext.
    Plain(Zeroizing<Vec<u8>>),
    /// The key was destroyed (the customer was forgotten), or never existed here.
    Erased,
}

/// Which keys the platform holds for a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHolding {
    /// No key was ever created for the customer.
    Unknown,
    /// A live key exists.
    Live,
    /// Every key of the customer was destroyed.
    Destroyed,
}

/// What one [`Keyring::rotate`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Keys re-wrapped under the current master key.
    pub rewrapped: u64,
    /// Keys that changed under the rotation (destroyed, or re-wrapped by another run) and
    /// were left as they were.
    pub skipped: u64,
}

/// The master keys of a process. `Debug` shows key ids only.
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    /// A keyring that wraps with `current` and unwraps with `current` or any of `previous`.
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current, previous }
    }

    /// The keyring a process's configuration describes: `current` as `KEEL_MASTER_KEY`
    /// gives it, `previous` as `KEEL_MASTER_KEY_PREVIOUS` does (comma-separated, may be
    /// absent). `None` without a current key.
    ///
    /// # Errors
    /// [`KeyError::InvalidMasterKey`] for any key that is not base64 of 32 bytes.
    pub fn from_config(
        current: Option<&str>,
        previous: Option<&str>,
    ) -> Result<Option<Self>, KeyError> {
        let Some(current) = current else {
            return Ok(None);
        };
        let previous = previous
            .into_iter()
            .flat_map(|text| text.split(','))
            .filter(|text| !text.trim().is_empty())
            .map(MasterKey::from_base64)
            .collect::<Result<_, _>>()?;
        Ok(Some(Self::new(MasterKey::from_base64(current)?, previous)))
    }

    /// The id of the master key new data keys are wrapped with.
    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// A key for keyed digests of requests that carry personal data (idempotency
    /// fingerprints), derived from the current master key: without it, a digest cannot be
    /// matched against guessed values.
    pub fn fingerprint_key(&self) -> &[u8] {
        self.current.fingerprint_key.as_slice()
    }

    fn master(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == id)
    }

    /// `customer_id`'s live data key, created (and wrapped with the current master key) if
    /// the customer has none.
    ///
    /// # Errors
    /// [`KeyError`]: the table is unreachable, or the live key does not unwrap.
    pub async fn live_key(&self, pool: &PgPool, customer_id: Uuid) -> Result<DataKey, KeyError> {
        loop {
            let row = sqlx::query(
                "SELECT key_id, wrapped_key, master_key_id FROM public.customer_keys
                  WHERE customer_id = $1 AND destroyed_at IS NULL",
            )
            .bind(customer_id)
            .fetch_optional(pool)
            .await?;
            if let Some(row) = row {
                return self.unwrap_key(
                    customer_id,
                    row.try_get("key_id")?,
                    &row.try_get::<Vec<u8>, _>("wrapped_key")?,
                    &row.try_get::<String, _>("master_key_id")?,
                );
            }
            let (key, wrapped) = self.new_data_key(customer_id);
            let inserted = sqlx::query(
                "INSERT INTO public.customer_keys (key_id, customer_id, wrapped_key, master_key_id)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (customer_id) WHERE destroyed_at IS NULL DO NOTHING",
            )
            .bind(key.key_id)
            .bind(customer_id)
            .bind(&wrapped)
            .bind(self.current.id())
            .execute(pool)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(key);
            }
            // Another writer created the customer's key first: read theirs.
        }
    }

    /// Which keys the platform holds for `customer_id`.
    ///
    /// # Errors
    /// The table is unreachable.
    pub async fn holding(pool: &PgPool, customer_id: Uuid) -> Result<KeyHolding, sqlx::Error> {
        let (any, live): (bool, bool) = sqlx::query_as(
            "SELECT count(*) > 0, count(*) FILTER (WHERE destroyed_at IS NULL) > 0
               FROM public.customer_keys WHERE customer_id = $1",
        )
        .bind(customer_id)
        .fetch_one(pool)
        .await?;
        Ok(match (any, live) {
            (_, true) => KeyHolding::Live,
            (true, false) => KeyHolding::Destroyed,
            (false, false) => KeyHolding::Unknown,
        })
    }

    /// Opens `sealed` (bound to `customer_id`) with data key `key_id`, read on `connection`
    /// `FOR SHARE`: inside a transaction, a concurrent forget waits until it ends, so what
    /// the transaction writes from the plaintext is in place before the forget event exists.
    ///
    /// # Errors
    /// [`KeyError`]: the table is unreachable, the key's master key is not configured, or
    /// the bytes do not open (tampered, or bound to another customer).
    pub async fn open(
        &self,
        connection: &mut PgConnection,
        customer_id: Uuid,
        key_id: Uuid,
        sealed: &[u8],
    ) -> Result<Opened, KeyError> {
        let row = sqlx::query(
            "SELECT customer_id, wrapped_key, master_key_id FROM public.customer_keys
              WHERE key_id = $1 FOR SHARE",
        )
        .bind(key_id)
        .fetch_optional(&mut *connection)
        .await?;
        let Some(row) = row else {
            return Ok(Opened::Erased);
        };
        let (Some(wrapped), Some(master_key_id)) = (
            row.try_get::<Option<Vec<u8>>, _>("wrapped_key")?,
            row.try_get::<Option<String>, _>("master_key_id")?,
        ) else {
            return Ok(Opened::Erased);
        };
        let owner: Uuid = row.try_get("customer_id")?;
        if owner != customer_id {
            return Err(KeyError::Open(key_id));
        }
        let key = self.unwrap_key(customer_id, key_id, &wrapped, &master_key_id)?;
        key.open(sealed).map(Opened::Plain)
    }

    /// A fresh random data key for `customer_id` and its wrapped form under the current
    /// master key (what `customer_keys.wrapped_key` stores).
    pub fn new_data_key(&self, customer_id: Uuid) -> (DataKey, Vec<u8>) {
        let key_id = random_key_id();
        let material = Aes256Gcm::generate_key(OsRng);
        let wrapped = seal_with(
            &self.current.cipher,
            material.as_slice(),
            &associated_data(WRAP_AAD_LABEL, customer_id, key_id),
        );
        let key = DataKey {
            key_id,
            customer_id,
            cipher: Aes256Gcm::new(&material),
        };
        (key, wrapped)
    }

    /// The data key `key_id` of `customer_id` from its stored row: `wrapped` under master
    /// key `master_key_id`.
    ///
    /// # Errors
    /// [`KeyError::UnknownMasterKey`] when this keyring lacks that master key,
    /// [`KeyError::Unwrap`] when the row does not unwrap (wrong key, tampered row).
    pub fn unwrap_key(
        &self,
        customer_id: Uuid,
        key_id: Uuid,
        wrapped: &[u8],
        master_key_id: &str,
    ) -> Result<DataKey, KeyError> {
        let master = self
            .master(master_key_id)
            .ok_or_else(|| KeyError::UnknownMasterKey {
                key_id,
                master_key_id: master_key_id.to_owned(),
            })?;
        let material = open_with(
            &master.cipher,
            wrapped,
            &associated_data(WRAP_AAD_LABEL, customer_id, key_id),
        )
        .filter(|material| material.len() == KEY_LEN)
        .ok_or(KeyError::Unwrap(key_id))?;
        Ok(DataKey {
            key_id,
            customer_id,
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&material)),
        })
    }

    /// Re-wraps every live data key that is not under the current master key, `batch` keys
    /// per transaction, until none is left. Online: each row is updated only if it is still
    /// live and under the master key it was read with, so a key destroyed or re-wrapped
    /// meanwhile is left alone, and writers keep reading and creating keys throughout.
    /// Events are never touched: a data key does not change when its wrapping does.
    ///
    /// # Errors
    /// [`KeyError`]: the table is unreachable, or a key is under a master key this keyring
    /// does not hold (configure it as a previous key and run again).
    pub async fn rotate(&self, pool: &PgPool, batch: i64) -> Result<Rotation, KeyError> {
        let mut rotation = Rotation::default();
        loop {
            let mut transaction = pool.begin().await?;
            let rows = sqlx::query(
                "SELECT key_id, customer_id, wrapped_key, master_key_id
                   FROM public.customer_keys
                  WHERE destroyed_at IS NULL AND master_key_id <> $1
                  ORDER BY key_id
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED",
            )
            .bind(self.current.id())
            .bind(batch.max(1))
            .fetch_all(&mut *transaction)
            .await?;
            if rows.is_empty() {
                transaction.commit().await?;
                // Rows skipped as locked are still to do; look once more without waiting.
                let left: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM public.customer_keys
                      WHERE destroyed_at IS NULL AND master_key_id <> $1",
                )
                .bind(self.current.id())
                .fetch_one(pool)
                .await?;
                if left == 0 {
                    return Ok(rotation);
                }
                // Only rows locked by a reader or writer right now are left: they are
                // single-row statements, so a short pause is enough.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            for row in rows {
                let key_id: Uuid = row.try_get("key_id")?;
                let customer_id: Uuid = row.try_get("customer_id")?;
                let old_master: String = row.try_get("master_key_id")?;
                let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
                let master =
                    self.master(&old_master)
                        .ok_or_else(|| KeyError::UnknownMasterKey {
                            key_id,
                            master_key_id: old_master.clone(),
                        })?;
                let aad = associated_data(WRAP_AAD_LABEL, customer_id, key_id);
                let material =
                    open_with(&master.cipher, &wrapped, &aad).ok_or(KeyError::Unwrap(key_id))?;
                let rewrapped = seal_with(&self.current.cipher, &material, &aad);
                let updated = sqlx::query(
                    "UPDATE public.customer_keys
                        SET wrapped_key = $2, master_key_id = $3, rewrapped_at = clock_timestamp()
                      WHERE key_id = $1 AND master_key_id = $4 AND destroyed_at IS NULL",
                )
                .bind(key_id)
                .bind(&rewrapped)
                .bind(self.current.id())
                .bind(&old_master)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
                if updated == 1 {
                    rotation.rewrapped += 1;
                } else {
                    rotation.skipped += 1;
                }
            }
            transaction.commit().await?;
        }
    }
}

fn random_key_id() -> Uuid {
    let mut bytes = [0_u8; 16];
    OsRng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn associated_data(label: &[u8], customer_id: Uuid, key_id: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label.len() + 32);
    aad.extend_from_slice(label);
    aad.extend_from_slice(customer_id.as_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

fn seal_with(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let nonce = Aes256Gcm::generate_nonce(OsRng);
    let mut sealed = nonce.to_vec();
    // Encryption with a valid key fails only for inputs beyond GCM's 64 GiB bound.
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    sealed.extend_from_slice(&ciphertext);
    sealed
}

fn open_with(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; KEY_LEN])
    }

    #[test]
    fn master_keys_are_known_by_a_derived_id_and_parse_from_base64() {
        let a = key(1);
        assert_eq!(a.id().len(), 16);
        assert_ne!(a.id(), key(2).id());
        let text = STANDARD.encode([1_u8; KEY_LEN]);
        assert_eq!(
            MasterKey::from_base64(&format!("{text}\n")).unwrap().id(),
            a.id()
        );
        assert!(matches!(
            MasterKey::from_base64("c2hvcnQ="),
            Err(KeyError::InvalidMasterKey)
        ));
        assert!(format!("{a:?}").contains(a.id()));
        let (generated, text) = MasterKey::generate();
        assert_eq!(MasterKey::from_base64(&text).unwrap().id(), generated.id());
    }

    #[test]
    fn sealed_data_opens_only_for_its_customer_and_key() {
        let material = [7_u8; KEY_LEN];
        let data_key = |customer: u128, key: u128| DataKey {
            key_id: Uuid::from_u128(key),
            customer_id: Uuid::from_u128(customer),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&material)),
        };
        let sealed = data_key(1, 2).seal(b"ada@example.com");
        assert!(!sealed.windows(3).any(|w| w == b"ada"));
        assert_eq!(
            data_key(1, 2).open(&sealed).unwrap().as_slice(),
            b"ada@example.com"
        );
        assert!(matches!(
            data_key(9, 2).open(&sealed),
            Err(KeyError::Open(_))
        ));
        assert!(matches!(
            data_key(1, 9).open(&sealed),
            Err(KeyError::Open(_))
        ));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(data_key(1, 2).open(&tampered).is_err());
        assert!(data_key(1, 2).open(&sealed[..5]).is_err());
        assert_ne!(data_key(1, 2).seal(b"x"), data_key(1, 2).seal(b"x"));
    }

    #[test]
    fn a_keyring_unwraps_with_previous_keys_and_names_missing_ones() {
        let old = Keyring::new(key(1), vec![]);
        let both = Keyring::new(key(2), vec![key(1)]);
        let customer = Uuid::from_u128(5);
        let key_id = Uuid::from_u128(6);
        let aad = associated_data(WRAP_AAD_LABEL, customer, key_id);
        let wrapped = seal_with(&old.current.cipher, &[3; KEY_LEN], &aad);
        assert!(
            both.unwrap_key(customer, key_id, &wrapped, old.current_id())
                .is_ok()
        );
        assert!(matches!(
            Keyring::new(key(3), vec![]).unwrap_key(customer, key_id, &wrapped, old.current_id()),
            Err(KeyError::UnknownMasterKey { .. })
        ));
        assert!(matches!(
            both.unwrap_key(Uuid::from_u128(9), key_id, &wrapped, old.current_id()),
            Err(KeyError::Unwrap(_))
        ));
        let config = Keyring::from_config(
            Some(&STANDARD.encode([2_u8; KEY_LEN])),
            Some(&format!(" {} ,", STANDARD.encode([1_u8; KEY_LEN]))),
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.current_id(), both.current_id());
        assert_eq!(config.previous.len(), 1);
        assert!(Keyring::from_config(None, None).unwrap().is_none());
    }
}
