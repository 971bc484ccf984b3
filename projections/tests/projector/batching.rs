//! Batches apply many events per transaction and keep each aggregate's order.

use futures::future::join_all;
use projections::Projection;
use serde_json::json;
use uuid::Uuid;

use crate::support::{Harness, assert_checkpoints_match_event_store, row, rows};

const ORDERS: usize = 20;
const LINES: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_apply_many_events_per_transaction_in_aggregate_order() {
    let harness = Harness::start(2).await;
    let customer_id = Uuid::new_v4();
    // Orders written concurrently, so their events interleave in the outbox and on the
    // partitions; the even ones are placed.
    let orders = join_all((0..ORDERS).map(|n| {
        let harness = &harness;
        async move {
            let order_id = harness.create_order(customer_id).await;
            for line in 1..=LINES {
                let price = i64::from(line) * 100 + i64::try_from(n).expect("small");
                harness
                    .add_line(order_id, &format!("SKU-{line}"), line, price)
                    .await;
            }
            let placed = n % 2 == 0;
            if placed {
                harness.place_order(order_id).await;
            }
            (order_id, n, placed)
        }
    }))
    .await;
    harness.wait_for_empty_outbox().await;
    let events = harness.event_counts().await.read_by(Projection::Orders);
    assert_eq!(events, 20 + 80 + 10);

    let mut settings = harness.projector_settings(100);
    settings.batch_linger = std::time::Duration::from_millis(200);
    let mut projector = harness.start_projector(Projection::Orders, &settings).await;
    projector.wait_for_applied(events).await;
    let progress = projector.stop().await;
    assert_eq!(
        (progress.applied, progress.duplicates, progress.gaps),
        (events, 0, 0),
        "{progress:?}"
    );
    assert!(
        progress.transactions * 5 <= progress.applied,
        "expected at least 5 events per transaction on average: {progress:?}"
    );
    eprintln!(
        "{} events applied in {} transactions",
        progress.applied, progress.transactions
    );

    let pool = &harness.read_model;
    for (order_id, n, placed) in orders {
        let n = i64::try_from(n).expect("small");
        let lines = rows(pool, "order_view_lines", "order_id", order_id, "position").await;
        let expected_lines: Vec<_> = (1..=i64::from(LINES))
            .map(|line| {
                let price = line * 100 + n;
                json!({
                    "order_id": order_id,
                    "sku": format!("SKU-{line}"),
                    "position": line,
                    "quantity": line,
                    "unit_price_minor": price,
                    "line_total_minor": line * price,
                })
            })
            .collect();
        assert_eq!(lines, expected_lines, "lines of order {order_id}");
        let total: i64 = (1..=i64::from(LINES))
            .map(|line| line * (line * 100 + n))
            .sum();
        let view = row(pool, "order_view", "order_id", order_id).await;
        let (status, version) = if placed { ("placed", 6) } else { ("draft", 5) };
        assert_eq!(
            (
                &view["status"],
                &view["line_count"],
                &view["total_minor"],
                &view["version"]
            ),
            (
                &json!(status),
                &json!(LINES),
                &json!(total),
                &json!(version)
            ),
            "order {order_id}: {view}"
        );
    }
    assert_checkpoints_match_event_store(&harness, Projection::Orders).await;
    harness.finish().await;
}
