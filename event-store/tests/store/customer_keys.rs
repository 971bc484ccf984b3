//! The customer key table (migration 0013) and `event_store::customer_keys` against real
//! PostgreSQL: one live key per customer under concurrent writers, destruction by the
//! `CustomerForgotten` append in its own transaction, and master-key rotation while keys are
//! being created and used.

use std::collections::HashMap;
use std::sync::Arc;

use event_store::customer_keys::{KeyError, KeyHolding, Keyring, MasterKey, Opened};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::TestStore;

fn keyring(current: u8, previous: &[u8]) -> Keyring {
    Keyring::new(
        MasterKey::from_bytes(&[current; 32]),
        previous
            .iter()
            .map(|byte| MasterKey::from_bytes(&[*byte; 32]))
            .collect(),
    )
}

async fn forget(db: &PgPool, customer_id: Uuid, sequence: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('customer', $1, $2, 'CustomerForgotten', '1', '{\"CustomerForgotten\": {}}', '{\"actor\": \"tester\"}')",
    )
    .bind(customer_id.to_string())
    .bind(sequence)
    .execute(db)
    .await
    .expect("append CustomerForgotten");
}

async fn open(db: &PgPool, keys: &Keyring, customer: Uuid, key_id: Uuid, sealed: &[u8]) -> Opened {
    let mut connection = db.acquire().await.expect("connection");
    keys.open(&mut connection, customer, key_id, sealed)
        .await
        .expect("open")
}

#[tokio::test]
async fn concurrent_writers_get_one_live_key_per_customer() {
    let store = TestStore::new().await;
    let keys = Arc::new(keyring(1, &[]));
    let customer = Uuid::new_v4();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (db, keys) = (store.db.clone(), Arc::clone(&keys));
            tokio::spawn(async move { keys.live_key(&db, customer).await.expect("key").key_id() })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every writer uses the same key: {ids:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM customer_keys WHERE customer_id = $1")
        .bind(customer)
        .fetch_one(&store.db)
        .await
        .unwrap();
    assert_eq!(rows, 1);

    let key = keys.live_key(&store.db, customer).await.unwrap();
    let sealed = key.seal(b"ada@example.com");
    match open(&store.db, &keys, customer, key.key_id(), &sealed).await {
        Opened::Plain(plain) => assert_eq!(plain.as_slice(), b"ada@example.com"),
        Opened::Erased => panic!("a live key opens"),
    }
    // Bound to its customer: another customer's id does not open it.
    let mut connection = store.db.acquire().await.unwrap();
    assert!(matches!(
        keys.open(&mut connection, Uuid::new_v4(), key.key_id(), &sealed)
            .await,
        Err(KeyError::Open(_))
    ));
    drop(connection);
    store.finish().await;
}

#[tokio::test]
async fn the_forget_event_destroys_the_keys_in_its_own_transaction() {
    let store = TestStore::new().await;
    let keys = keyring(1, &[]);
    let customer = Uuid::new_v4();
    assert_eq!(
        Keyring::holding(&store.db, customer).await.unwrap(),
        KeyHolding::Unknown
    );
    let key = keys.live_key(&store.db, customer).await.unwrap();
    let sealed = key.seal(b"Ada Lovelace");
    let other = Uuid::new_v4();
    let other_key = keys.live_key(&store.db, other).await.unwrap();
    assert_eq!(
        Keyring::holding(&store.db, customer).await.unwrap(),
        KeyHolding::Live
    );

    // Rolled back with its event: the key survives.
    let mut tx = store.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('customer', $1, 1, 'CustomerForgotten', '1', '{}', '{}')",
    )
    .bind(customer.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert!(matches!(
        open(&store.db, &keys, customer, key.key_id(), &sealed).await,
        Opened::Plain(_)
    ));

    forget(&store.db, customer, 1).await;
    assert_eq!(
        Keyring::holding(&store.db, customer).await.unwrap(),
        KeyHolding::Destroyed
    );
    assert_eq!(
        open(&store.db, &keys, customer, key.key_id(), &sealed).await,
        Opened::Erased
    );
    let (wrapped, master): (Option<Vec<u8>>, Option<String>) =
        sqlx::query_as("SELECT wrapped_key, master_key_id FROM customer_keys WHERE key_id = $1")
            .bind(key.key_id())
            .fetch_one(&store.db)
            .await
            .unwrap();
    assert_eq!(
        (wrapped, master),
        (None, None),
        "nothing of the key is left"
    );
    // Another customer's key is untouched.
    assert_eq!(
        keys.live_key(&store.db, other).await.unwrap().key_id(),
        other_key.key_id()
    );

    // A customer who comes back gets a new key; forgetting again destroys it too.
    let second = keys.live_key(&store.db, customer).await.unwrap();
    assert_ne!(second.key_id(), key.key_id());
    forget(&store.db, customer, 2).await;
    assert_eq!(
        Keyring::holding(&store.db, customer).await.unwrap(),
        KeyHolding::Destroyed
    );
    store.finish().await;
}

/// Keys exist under the old master key; writers configured as step 1 of the procedure says
/// (new key current, old key previous) read, create and use keys while `rotate` runs.
/// Afterwards every live key is under the new master key and every value ever sealed still
/// opens with the new master key alone.
#[tokio::test]
async fn a_master_key_rotation_during_writes_loses_nothing() {
    let store = TestStore::new().await;
    let old_writer = Arc::new(keyring(1, &[]));
    let new_writer = Arc::new(keyring(2, &[1]));
    // Keys that exist before the rotation starts.
    let customers: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    let mut sealed: Vec<(Uuid, Uuid, Vec<u8>, String)> = Vec::new();
    for customer in &customers[..20] {
        let key = old_writer.live_key(&store.db, *customer).await.unwrap();
        let text = format!("{customer}@example.com");
        sealed.push((*customer, key.key_id(), key.seal(text.as_bytes()), text));
    }

    let writers: Vec<_> = customers
        .chunks(10)
        .map(|chunk| {
            let keys = Arc::clone(&new_writer);
            let (db, chunk) = (store.db.clone(), chunk.to_vec());
            tokio::spawn(async move {
                let mut written = Vec::new();
                for round in 0..5 {
                    for customer in &chunk {
                        let key = keys.live_key(&db, *customer).await.expect("key");
                        let text = format!("{customer}/{round}");
                        written.push((*customer, key.key_id(), key.seal(text.as_bytes()), text));
                    }
                }
                written
            })
        })
        .collect();
    let rotator = {
        let db = store.db.clone();
        let keys = Arc::clone(&new_writer);
        tokio::spawn(async move {
            let mut total = 0;
            for _ in 0..3 {
                total += keys.rotate(&db, 3).await.expect("rotate").rewrapped;
            }
            total
        })
    };
    for writer in writers {
        sealed.extend(writer.await.expect("writer"));
    }
    let during = rotator.await.expect("rotator");
    let after = new_writer.rotate(&store.db, 100).await.unwrap();
    assert_eq!(during + after.rewrapped, 20, "the 20 old keys, each once");

    let by_master: HashMap<Option<String>, i64> = sqlx::query_as::<_, (Option<String>, i64)>(
        "SELECT master_key_id, count(*) FROM customer_keys GROUP BY master_key_id",
    )
    .fetch_all(&store.db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(
        by_master.keys().collect::<Vec<_>>(),
        vec![&Some(new_writer.current_id().to_owned())],
        "every key is under the new master key: {by_master:?}"
    );
    assert_eq!(by_master.values().sum::<i64>(), 40, "one key per customer");

    // The old master key is gone: the new one alone opens everything ever sealed.
    let only_new = keyring(2, &[]);
    assert_eq!(sealed.len(), 20 + 40 * 5);
    for (customer, key_id, bytes, text) in &sealed {
        match open(&store.db, &only_new, *customer, *key_id, bytes).await {
            Opened::Plain(plain) => assert_eq!(plain.as_slice(), text.as_bytes()),
            Opened::Erased => panic!("key {key_id} was lost"),
        }
    }
    store.finish().await;
}
