//! The hash chain's Rust definition and the trigger that seals every append agree, link by
//! link, on real appends.

use event_store::StreamRef;
use event_store::hash_chain::{self, ChainHash, GENESIS};

use crate::support::{TestStore, append};

#[tokio::test]
async fn the_trigger_seals_each_append_with_the_link_the_rust_definition_computes() {
    let store = TestStore::new().await;
    // Payload text with odd spacing and non-ASCII: the chain covers the stored json text
    // byte for byte, not a re-serialization of it.
    let payloads = [r#"{"b": 1,  "a":"é\n"}"#, "{}", r#"{"n": [1, 2, 3]}"#];
    for (sequence, payload) in (1..).zip(payloads) {
        append(&store.db, "order", "chained", sequence, payload).await;
    }
    append(&store.db, "order", "other", 1, "{}").await;

    let stream = StreamRef {
        aggregate_type: "order",
        aggregate_id: "chained",
    };
    let rows = hash_chain::stream_chain(&store.db, stream, 0, 100)
        .await
        .expect("chain");
    assert_eq!(rows.len(), payloads.len());
    let mut prev: ChainHash = GENESIS;
    for (row, payload) in rows.iter().zip(payloads) {
        assert_eq!(
            row.payload, payload,
            "the stored text is read back unchanged"
        );
        assert!(row.has_predecessor);
        let stored = row.hash.as_deref().expect("sealed by the trigger");
        let expected = row.content().chain_hash(&prev);
        assert_eq!(
            hash_chain::to_hex(stored),
            hash_chain::to_hex(&expected),
            "link {} of the stream",
            row.sequence
        );
        if row.sequence > 1 {
            assert_eq!(row.prev_hash.as_deref(), Some(&prev[..]));
        }
        prev = expected;
    }

    // The whole-store walk returns the same links, stream by stream.
    let all = hash_chain::all_chains(&store.db, None, 100)
        .await
        .expect("all chains");
    let chained: Vec<_> = all
        .iter()
        .filter(|row| row.aggregate_id == "chained")
        .cloned()
        .collect();
    assert_eq!(chained, rows);
    assert_eq!(all.len(), payloads.len() + 1);

    store.finish().await;
}
