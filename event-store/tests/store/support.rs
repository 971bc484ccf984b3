//! A migrated scratch database per test, and raw appends through the store's triggers.

use sqlx::{PgExecutor, PgPool};
use test_support::ScratchDatabase;

pub struct TestStore {
    pub db: PgPool,
    scratch: ScratchDatabase,
}

impl TestStore {
    pub async fn new() -> Self {
        let scratch = ScratchDatabase::create("keel_store_test")
            .await
            .expect("scratch database");
        let db = scratch.pool(16).await.expect("pool");
        event_store::migrate(&db).await.expect("migrations");
        Self { db, scratch }
    }

    pub async fn finish(self) {
        self.db.close().await;
        self.scratch.drop_database().await;
    }
}

/// Appends one event the way any writer does: a plain INSERT, with the store's triggers
/// filling in the event id, the hash and the outbox row.
pub async fn append<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    payload: &str,
) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, $2, $3, 'Happened', '1', $4::json, '{\"actor\": \"tester\"}')",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(payload)
    .execute(executor)
    .await
    .expect("append");
}
