//! Bulk events for measuring rebuilds: valid events written straight into the event store
//! with set-based `INSERT … SELECT generate_series` statements. Every row still goes through the store's triggers
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
    /// Whole order flows, for every projection: stock received for every SKU first, then
    /// per order `OrderCreated`, two `OrderLineAdded`, a `StockReserved`, `OrderPlaced`,
    /// `PaymentAuthorized`, `PaymentCaptured`, `OrderConfirmed`, and for every tenth order a
    /// partial `PaymentRefunded`: about 8.1 events per order, in that commit order.
    Fulfilment,
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
        SeedMix::Fulfilment => return seed_fulfilment(pool, &tag, events, progress).await,
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

/// Rows per order flow of [`SeedMix::Fulfilment`] (8 always, a refund every tenth), plus one
/// `StockAdded` per ten flows.
const FLOW_EVENTS_TIMES_TEN: u64 = 81 + 1;

async fn seed_fulfilment(
    pool: &PgPool,
    tag: &str,
    events: u64,
    mut progress: impl FnMut(u64),
) -> Result<u64, sqlx::Error> {
    let flows = i64::try_from((events * 10 / FLOW_EVENTS_TIMES_TEN).max(1)).unwrap_or(i64::MAX);
    let skus = (flows / 10).max(1);
    // Every SKU receives enough stock first for all its reservations.
    let mut written = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                             event_version, payload, metadata) \
         SELECT 'inventory', 'SEED-' || $1 || '-' || g, 1, 'StockAdded', '1', \
                json_build_object('StockAdded', json_build_object('quantity', 1000000)), \
                json_build_object('actor', 'dev-seed', 'correlation_id', gen_random_uuid(), \
                                  'occurred_at', to_char(now() AT TIME ZONE 'UTC', \
                                                 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')) \
         FROM generate_series(0::bigint, $2::bigint - 1) AS g ORDER BY g",
    )
    .bind(tag)
    .bind(skus)
    .execute(pool)
    .await?
    .rows_affected();
    progress(written);
    let chunk = CHUNK / 8;
    let mut next = 0_i64;
    while next < flows {
        let last = (next + chunk).min(flows) - 1;
        written += sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                 event_version, payload, metadata) \
             SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, '1', e.payload, \
                    json_build_object('actor', 'dev-seed', \
                                      'correlation_id', f.order_id, \
                                      'occurred_at', to_char(now() AT TIME ZONE 'UTC', \
                                                     'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')) \
             FROM generate_series($3::bigint, $4::bigint) AS o \
             CROSS JOIN LATERAL ( \
                 SELECT md5($1 || 'order' || o)::uuid AS order_id, \
                        md5($1 || 'payment' || o)::uuid AS payment_id, \
                        md5('customer' || (o % 1000))::uuid AS customer_id, \
                        'SEED-' || $1 || '-' || (o % $2) AS sku, \
                        'SEED-' || $1 || '-GIFT' AS gift_sku, \
                        1 + o % 5 AS quantity, \
                        100 + o % 900 AS price \
             ) AS f \
             CROSS JOIN LATERAL (VALUES \
                 (1, 'order', f.order_id::text, 1::bigint, 'OrderCreated', \
                  json_build_object('OrderCreated', json_build_object( \
                      'currency', 'EUR', 'customer_id', f.customer_id))), \
                 (2, 'order', f.order_id::text, 2, 'OrderLineAdded', \
                  json_build_object('OrderLineAdded', json_build_object('line', \
                      json_build_object('sku', f.sku, 'quantity', f.quantity, \
                          'unit_price', json_build_object('currency', 'EUR', \
                                                          'amount_minor', f.price))))), \
                 (3, 'order', f.order_id::text, 3, 'OrderLineAdded', \
                  json_build_object('OrderLineAdded', json_build_object('line', \
                      json_build_object('sku', f.gift_sku, 'quantity', 1, \
                          'unit_price', json_build_object('currency', 'EUR', \
                                                          'amount_minor', 250))))), \
                 (4, 'inventory', f.sku, 2 + o / $2, 'StockReserved', \
                  json_build_object('StockReserved', json_build_object( \
                      'order_id', f.order_id, 'quantity', f.quantity))), \
                 (5, 'order', f.order_id::text, 4, 'OrderPlaced', \
                  json_build_object('OrderPlaced', json_build_object( \
                      'customer_id', f.customer_id, \
                      'lines', json_build_array( \
                          json_build_object('sku', f.sku, 'quantity', f.quantity, \
                              'unit_price', json_build_object('currency', 'EUR', \
                                                              'amount_minor', f.price)), \
                          json_build_object('sku', f.gift_sku, 'quantity', 1, \
                              'unit_price', json_build_object('currency', 'EUR', \
                                                              'amount_minor', 250))), \
                      'total', json_build_object('currency', 'EUR', \
                                                 'amount_minor', f.quantity * f.price + 250)))), \
                 (6, 'payment', f.payment_id::text, 1, 'PaymentAuthorized', \
                  json_build_object('PaymentAuthorized', json_build_object( \
                      'payment_id', f.payment_id, 'order_id', f.order_id, \
                      'amount', json_build_object('currency', 'EUR', \
                                                  'amount_minor', f.quantity * f.price + 250), \
                      'authorization_code', 'SEED' || o))), \
                 (7, 'payment', f.payment_id::text, 2, 'PaymentCaptured', \
                  json_build_object('PaymentCaptured', json_build_object( \
                      'amount', json_build_object('currency', 'EUR', \
                                                  'amount_minor', f.quantity * f.price + 250), \
                      'gateway_reference', 'seed-capture-' || o))), \
                 (8, 'order', f.order_id::text, 5, 'OrderConfirmed', \
                  json_build_object('OrderConfirmed', json_build_object())), \
                 (9, 'payment', f.payment_id::text, 3, 'PaymentRefunded', \
                  json_build_object('PaymentRefunded', json_build_object( \
                      'refund_id', md5($1 || 'refund' || o)::uuid, \
                      'amount', json_build_object('currency', 'EUR', 'amount_minor', 250), \
                      'reason', 'gift not wanted', \
                      'gateway_reference', 'seed-refund-' || o))) \
             ) AS e(step, aggregate_type, aggregate_id, sequence, event_type, payload) \
             WHERE e.step < 9 OR o % 10 = 0 \
             ORDER BY o, e.step",
        )
        .bind(tag)
        .bind(skus)
        .bind(next)
        .bind(last)
        .execute(pool)
        .await?
        .rows_affected();
        next = last + 1;
        progress(written);
    }
    Ok(written)
}
