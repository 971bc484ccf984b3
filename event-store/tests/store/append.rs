//! `append_batch`: many commands in one transaction, each all or nothing with its own
//! outcome, and every trigger of the single-event insert firing as before.

use event_store::StreamRef;
use event_store::append::{AppendRejected, Appended, NewEvent, StreamAppend, append_batch};
use event_store::hash_chain::{self, ChainHash, GENESIS};
use serde_json::json;
use sqlx::{PgPool, Row};

use crate::support::{TestStore, append};

fn command(
    aggregate_id: &str,
    after_sequence: i64,
    events: usize,
    metadata: serde_json::Value,
) -> StreamAppend {
    StreamAppend {
        aggregate_type: "order".to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        after_sequence,
        events: (0..events)
            .map(|n| NewEvent {
                event_type: format!("Happened{n}"),
                event_version: "1".to_owned(),
                payload: json!({"n": n, "name": "é"}),
                metadata: metadata.clone(),
            })
            .collect(),
    }
}

fn plain() -> serde_json::Value {
    json!({"actor": "tester", "correlation_id": "c"})
}

fn keyed(key: &str) -> serde_json::Value {
    json!({"actor": "tester", "idempotency_key": key, "request_fingerprint": "f"})
}

/// `(sequence, event_id, global_position, transaction_id)` of a stream, in order.
async fn stored(db: &PgPool, aggregate_id: &str) -> Vec<(Appended, i64)> {
    sqlx::query(
        "SELECT sequence, event_id, global_position, transaction_id::text::bigint AS xid
           FROM events WHERE aggregate_type = 'order' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(aggregate_id)
    .fetch_all(db)
    .await
    .expect("events")
    .iter()
    .map(|row| {
        (
            Appended {
                sequence: row.get("sequence"),
                event_id: row.get("event_id"),
                global_position: row.get("global_position"),
            },
            row.get("xid"),
        )
    })
    .collect()
}

async fn outbox_rows(db: &PgPool, aggregate_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE aggregate_id = $1")
        .bind(aggregate_id)
        .fetch_one(db)
        .await
        .expect("outbox")
}

#[tokio::test]
async fn a_conflict_and_successes_in_one_batch_each_get_their_own_outcome() {
    let store = TestStore::new().await;
    append(&store.db, "order", "taken", 1, "{}").await;

    let outcomes = append_batch(
        &store.db,
        &[
            command("first", 0, 2, plain()),
            // Sequence 1 of "taken" exists: this command lost the race.
            command("taken", 0, 1, plain()),
            command("second", 0, 1, plain()),
        ],
    )
    .await
    .expect("batch");
    assert_eq!(outcomes.len(), 3);

    let first = outcomes[0].clone().expect("first appended");
    assert!(
        matches!(&outcomes[1], Err(AppendRejected::Conflict(_))),
        "{:?}",
        outcomes[1]
    );
    let second = outcomes[2].clone().expect("second appended");

    // What the batch answered is what is stored, and both winners share one transaction.
    let first_stored = stored(&store.db, "first").await;
    let second_stored = stored(&store.db, "second").await;
    assert_eq!(
        first_stored.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        first
    );
    assert_eq!(
        second_stored.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        second
    );
    assert_eq!(first.iter().map(|a| a.sequence).collect::<Vec<_>>(), [1, 2]);
    let xid = first_stored[0].1;
    assert!(
        first_stored
            .iter()
            .chain(&second_stored)
            .all(|(_, x)| *x == xid)
    );
    assert!(first[0].global_position < first[1].global_position);
    assert!(first[1].global_position < second[0].global_position);

    // The loser appended nothing; its stream is as it was.
    assert_eq!(stored(&store.db, "taken").await.len(), 1);

    // The other triggers fired for the winners: outbox rows, sealed hash chain.
    assert_eq!(outbox_rows(&store.db, "first").await, 2);
    assert_eq!(outbox_rows(&store.db, "second").await, 1);
    assert_eq!(outbox_rows(&store.db, "taken").await, 1);
    let chain = hash_chain::stream_chain(
        &store.db,
        StreamRef {
            aggregate_type: "order",
            aggregate_id: "first",
        },
        0,
        10,
    )
    .await
    .expect("chain");
    let mut prev: ChainHash = GENESIS;
    for row in &chain {
        let expected = row.content().chain_hash(&prev);
        assert_eq!(
            row.hash.as_deref(),
            Some(&expected[..]),
            "link {}",
            row.sequence
        );
        prev = expected;
    }

    store.finish().await;
}

#[tokio::test]
async fn two_commands_with_one_idempotency_key_in_one_batch_only_the_first_appends() {
    let store = TestStore::new().await;

    let outcomes = append_batch(
        &store.db,
        &[
            command("keyed-a", 0, 2, keyed("k-1")),
            command("keyed-b", 0, 1, keyed("k-1")),
            command("keyed-c", 0, 1, keyed("k-2")),
        ],
    )
    .await
    .expect("batch");
    assert_eq!(outcomes[0].as_ref().map(Vec::len), Ok(2));
    assert!(
        matches!(&outcomes[1], Err(AppendRejected::Conflict(message)) if message.contains("k-1")),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2].as_ref().map(Vec::len), Ok(1));
    assert!(stored(&store.db, "keyed-b").await.is_empty());

    // The key records the first command's whole append, and the fingerprint left the
    // stored metadata for the key table.
    let keys: Vec<(String, String, i64, i32)> = sqlx::query_as(
        "SELECT idempotency_key, aggregate_id, version, event_count
           FROM idempotency_keys ORDER BY idempotency_key",
    )
    .fetch_all(&store.db)
    .await
    .expect("keys");
    assert_eq!(
        keys,
        [
            ("k-1".to_owned(), "keyed-a".to_owned(), 2, 2),
            ("k-2".to_owned(), "keyed-c".to_owned(), 1, 1)
        ]
    );
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE metadata::jsonb ? 'request_fingerprint'",
    )
    .fetch_one(&store.db)
    .await
    .expect("metadata");
    assert_eq!(leaked, 0);

    store.finish().await;
}

#[tokio::test]
async fn a_command_that_fails_otherwise_is_reported_and_the_batch_commits_the_rest() {
    let store = TestStore::new().await;

    let outcomes = append_batch(
        &store.db,
        &[
            // A gap: sequence 6 of a stream without 5. The hash-chain trigger refuses it.
            command("gapped", 5, 1, plain()),
            command("fine", 0, 1, plain()),
        ],
    )
    .await
    .expect("batch");
    assert!(
        matches!(&outcomes[0], Err(AppendRejected::Failed { code, .. }) if code == "23503"),
        "{:?}",
        outcomes[0]
    );
    assert!(outcomes[1].is_ok(), "{:?}", outcomes[1]);
    assert!(stored(&store.db, "gapped").await.is_empty());
    assert_eq!(stored(&store.db, "fine").await.len(), 1);
    assert_eq!(outbox_rows(&store.db, "gapped").await, 0);

    store.finish().await;
}

#[tokio::test]
async fn the_batch_must_be_the_first_write_of_its_transaction() {
    let store = TestStore::new().await;

    let mut tx = store.db.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO outbox_relays (relay_id, last_seen) VALUES (gen_random_uuid(), now())",
    )
    .execute(&mut *tx)
    .await
    .expect("an unrelated write");
    let error = append_batch(&mut *tx, &[command("late", 0, 1, plain())])
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("first write of its transaction"),
        "{error}"
    );
    drop(tx);
    assert!(stored(&store.db, "late").await.is_empty());

    // An empty batch sends nothing and appends nothing.
    assert!(
        append_batch(&store.db, &[])
            .await
            .expect("empty")
            .is_empty()
    );

    store.finish().await;
}
