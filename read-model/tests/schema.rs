//! The read-model schema against real PostgreSQL: the migrations apply (twice, as every
//! restart does), and the status names the query side parses are exactly those the
//! tables accept, so the projector (which writes them) and the query API (which filters
//! on them) cannot drift apart.

// Tests draw fresh ids and read the clock directly; `clippy.toml` bans that only in the
// platform's own code.
#![allow(clippy::disallowed_methods)]

use chrono::Utc;
use read_model::orders::{self, OrderStatus};
use sqlx::PgPool;
use test_support::ScratchDatabase;
use uuid::Uuid;

async fn migrated() -> (ScratchDatabase, PgPool) {
    let scratch = ScratchDatabase::create("keel_read_model_test")
        .await
        .expect("scratch database");
    let pool = scratch.pool(4).await.expect("pool");
    read_model::migrate(&pool).await.expect("first migration");
    read_model::migrate(&pool)
        .await
        .expect("a second run finds everything applied");
    (scratch, pool)
}

async fn insert_order(pool: &PgPool, customer_id: Uuid, status: &str) -> Result<Uuid, sqlx::Error> {
    let order_id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    for table in ["order_view", "customer_orders"] {
        sqlx::query(&format!(
            "INSERT INTO read_model.{table} (order_id, customer_id, status, currency, \
             total_minor, line_count, created_at, updated_at, version) \
             VALUES ($1, $2, $3, 'EUR', 0, 0, $4, $4, 1)"
        ))
        .bind(order_id)
        .bind(customer_id)
        .bind(status)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(order_id)
}

#[tokio::test]
async fn every_order_status_is_stored_and_filtered_by_its_name() {
    let (scratch, pool) = migrated().await;
    let customer_id = Uuid::new_v4();
    let mut placed = Vec::new();
    for status in OrderStatus::ALL {
        let order_id = insert_order(&pool, customer_id, status.as_str())
            .await
            .unwrap_or_else(|error| panic!("status {status} refused by the schema: {error}"));
        placed.push((status, order_id));
    }
    for (status, order_id) in placed {
        let listed = orders::customer_orders(&pool, customer_id, Some(status), None, 10)
            .await
            .expect("listing");
        let ids: Vec<Uuid> = listed.iter().map(|order| order.order_id).collect();
        assert_eq!(ids, vec![order_id], "filter on {status}");
        assert_eq!(listed[0].status.parse::<OrderStatus>(), Ok(status));
        let view = orders::find_order(&pool, order_id)
            .await
            .expect("find")
            .expect("the order view row");
        assert_eq!(view.status.parse::<OrderStatus>(), Ok(status));
    }
    pool.close().await;
    scratch.drop_database().await;
}

#[tokio::test]
async fn a_status_outside_the_enum_is_refused_by_the_schema() {
    let (scratch, pool) = migrated().await;
    assert!("archived".parse::<OrderStatus>().is_err());
    let error = insert_order(&pool, Uuid::new_v4(), "archived")
        .await
        .expect_err("order_view's CHECK refuses an unknown status");
    let code = error
        .as_database_error()
        .and_then(|error| error.code())
        .map(|code| code.into_owned());
    assert_eq!(code.as_deref(), Some("23514"), "check_violation: {error}");
    pool.close().await;
    scratch.drop_database().await;
}
