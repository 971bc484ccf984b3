//! An outage of the read-model database is not poison: nothing is dead-lettered however long
//! it lasts, and every aggregate resumes when the database is back.

use std::time::Duration;

use projections::Projection;
use sqlx::{Connection, Executor, PgConnection};

use crate::support::{Harness, eventually, held_events, letters, stock};

/// Refuses (or allows again) new connections to the test's database, and ends the open ones.
async fn set_database_down(harness: &Harness, down: bool) {
    let admin_url = test_support::Stack::from_env().database_url;
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("admin connection");
    let name = harness.database_name();
    admin
        .execute(
            format!(
                r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {}"#,
                !down
            )
            .as_str(),
        )
        .await
        .expect("change ALLOW_CONNECTIONS");
    if down {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .expect("end the database's connections");
    }
    admin.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_dead_letters_nothing_and_every_aggregate_resumes() {
    let harness = Harness::start(1).await;
    for (sku, quantity) in [("SKU-A", 1), ("SKU-B", 2), ("SKU-A", 3), ("SKU-C", 4)] {
        harness.add_stock(sku, quantity).await;
    }
    harness.wait_for_empty_outbox().await;

    set_database_down(&harness, true).await;
    let mut settings = harness.projector_settings(100);
    // An outage far longer than this budget must not spend it.
    settings.retry.max_attempts = 2;
    settings.retry.initial_backoff = Duration::from_millis(50);
    settings.retry.max_backoff = Duration::from_millis(200);
    let projector = harness.start_projector(Projection::Stock, &settings).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        projector.progress().applied,
        0,
        "nothing applied while down"
    );
    set_database_down(&harness, false).await;

    let pool = harness.read_model.clone();
    eventually(
        "every aggregate applied once the database is back",
        || async {
            stock(&pool, "SKU-A").await == Some((4, 2))
                && stock(&pool, "SKU-B").await == Some((2, 1))
                && stock(&pool, "SKU-C").await == Some((4, 1))
        },
    )
    .await;
    assert!(letters(&pool).await.is_empty(), "nothing dead-lettered");
    assert!(held_events(&pool, Projection::Stock).await.is_empty());
    let progress = projector.stop().await;
    assert_eq!(
        (progress.applied, progress.dead_lettered, progress.held),
        (4, 0, 0)
    );
    harness.finish().await;
}
