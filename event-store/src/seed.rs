//! Bulk events for measuring rebuilds: valid `StockAdded`, `OrderCreated` and
//! `OrderLineAdded` rows written straight into the event store with set-based `INSERT …
//! SELECT generate_series` statements. Every row still goes through the store's triggers
//! (event id, hash chain, outbox), so a running relay publishes them. For development
//! databases only.

use sqlx::PgPool;
use uuid::Uuid;

/// Rows per statement (and transaction).
const CHUNK: i64 = 50_000;

/// What [`seed_events`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedMix {
    /// Half inventory (`StockAdded`, ten per SKU), half orders (`OrderCreated` then
    /// `OrderLineAdded`).
    #[default]
    Mixed,
    /// Inventory events only (ten per SKU): every event is one the `stock` projection reads.
    InventoryOnly,
}

/// Writes about `events` events as `mix` says, interleaved chunk by chunk. `progress` is
/// called with the events written so far. Returns the events written.
///
/// # Errors
/// Database errors.
pub async fn seed_events(
    pool: &PgPool,
    events: u64,
    progress: impl FnMut(u64),
) -> Result<u64, sqlx::Error> {
    seed_events_with(pool, events, SeedMix::Mixed, progress).await
}

/// [`seed_events`] with a choice of events.
///
/// # Errors
/// Database errors.
pub async fn seed_events_with(
    pool: &PgPool,
    events: u64,
    mix: SeedMix,
    mut progress: impl FnMut(u64),
) -> Result<u64, sqlx::Error> {
    // Benchmark data only (feature `seed`): a random tag keeps repeated seedings apart.
    #[allow(clippy::disallowed_methods)]
    let tag = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let inventory_share = match mix {
        SeedMix::Mixed => events / 2,
        SeedMix::InventoryOnly => events,
    };
    let inventory_events = i64::try_from(inventory_share).unwrap_or(i64::MAX);
    let orders = i64::try_from(events.saturating_sub(inventory_share) / 2).unwrap_or(i64::MAX);
    let skus = (inventory_events / 10).max(1);
    let mut written = 0_u64;
    let (mut inventory_next, mut order_next) = (0_i64, 0_i64);
    while inventory_next < inventory_events || order_next < orders {
        if inventory_next < inventory_events {
            let last = (inventory_next + CHUNK).min(inventory_events) - 1;
            let rows = sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                     event_version, payload, metadata) \
                 SELECT 'inventory', 'SEED-' || $1 || '-' || (g % $2), g / $2 + 1, 'StockAdded', '1', \
                        json_build_object('StockAdded', json_build_object('quantity', 1 + g % 7)), \
                        json_build_object('actor', 'dev-seed', \
                                          'correlation_id', gen_random_uuid(), \
                                          'occurred_at', to_char(now() AT TIME ZONE 'UTC', \
                                                         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')) \
                 FROM generate_series($3::bigint, $4::bigint) AS g ORDER BY g",
            )
            .bind(&tag)
            .bind(skus)
            .bind(inventory_next)
            .bind(last)
            .execute(pool)
            .await?
            .rows_affected();
            written += rows;
            inventory_next = last + 1;
        }
        if order_next < orders {
            let last = (order_next + CHUNK / 2).min(orders) - 1;
            let rows = sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                     event_version, payload, metadata) \
                 SELECT 'order', md5($1 || o)::uuid::text, s, \
                        CASE s WHEN 1 THEN 'OrderCreated' ELSE 'OrderLineAdded' END, '1', \
                        CASE s WHEN 1 THEN json_build_object('OrderCreated', json_build_object( \
                                 'currency', 'EUR', \
                                 'customer_id', md5('customer' || (o % 1000))::uuid)) \
                               ELSE json_build_object('OrderLineAdded', json_build_object( \
                                 'line', json_build_object( \
                                     'sku', 'SEED-' || $1 || '-' || (o % $2), \
                                     'quantity', 1 + o % 5, \
                                     'unit_price', json_build_object('currency', 'EUR', \
                                                                     'amount_minor', 100 + o % 900)))) \
                        END, \
                        json_build_object('actor', 'dev-seed', \
                                          'correlation_id', gen_random_uuid(), \
                                          'occurred_at', to_char(now() AT TIME ZONE 'UTC', \
                                                         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')) \
                 FROM generate_series($3::bigint, $4::bigint) AS o \
                 CROSS JOIN (VALUES (1), (2)) AS v(s) \
                 ORDER BY o, s",
            )
            .bind(&tag)
            .bind(skus)
            .bind(order_next)
            .bind(last)
            .execute(pool)
            .await?
            .rows_affected();
            written += rows;
            order_next = last + 1;
        }
        progress(written);
    }
    Ok(written)
}
