//! The outbox shard count in Rust equals the modulus of the append trigger that assigns
//! shards, and the trigger queues every append.

use std::collections::BTreeSet;

use event_store::outbox::{self, OUTBOX_SHARDS};

use crate::support::{TestStore, append};

#[tokio::test]
async fn the_trigger_spreads_appends_over_exactly_the_shards_the_relay_knows() {
    const AGGREGATES: usize = 2_000;
    let store = TestStore::new().await;
    let mut transaction = store.db.begin().await.expect("begin");
    for aggregate in 0..AGGREGATES {
        append(
            &mut *transaction,
            "order",
            &format!("aggregate-{aggregate}"),
            1,
            "{}",
        )
        .await;
    }
    transaction.commit().await.expect("commit");

    let shards: Vec<i16> = sqlx::query_scalar("SELECT shard FROM outbox")
        .fetch_all(&store.db)
        .await
        .expect("shards");
    assert_eq!(shards.len(), AGGREGATES, "every append is queued once");
    let distinct: BTreeSet<i16> = shards.into_iter().collect();
    // 2,000 aggregates over 64 shards leave a given shard empty with probability about
    // (63/64)^2000 ≈ 2e-14: every shard is hit, and no other value appears.
    assert_eq!(distinct, (0..OUTBOX_SHARDS).collect::<BTreeSet<_>>());

    let mut connection = store.db.acquire().await.expect("connection");
    let every_shard: Vec<i16> = (0..OUTBOX_SHARDS).collect();
    let batch = outbox::fetch_batch(&mut connection, &every_shard, 10_000)
        .await
        .expect("batch");
    assert_eq!(batch.len(), AGGREGATES);
    let backlog = outbox::backlog(&mut connection).await.expect("backlog");
    assert_eq!(backlog.events, i64::try_from(AGGREGATES).expect("small"));
    drop(connection);

    store.finish().await;
}
