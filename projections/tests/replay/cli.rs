//! `keel-replay` as an operator runs it.

use std::process::Command;

use event_store::seed::SeedMix;

use crate::helpers::ExtraDatabase;

/// A master key for the rebuilds that open personal data (base64 of 32 bytes).
const MASTER_KEY: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

/// `keel-replay args` on `url`, with the master key when `with_key`.
fn run(url: &str, args: &[&str], with_key: bool) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel-replay"));
    command
        .args(args)
        .arg("--database-url")
        .arg(url)
        .env_remove("KEEL_EVENT_STORE_URL")
        .env_remove("KEEL_MASTER_KEY")
        .env_remove("KEEL_MASTER_KEY_FILE");
    if with_key {
        command.env("KEEL_MASTER_KEY", MASTER_KEY);
    }
    command.output().expect("keel-replay runs")
}

fn keel_replay(url: &str, args: &[&str]) -> String {
    let output = run(url, args, true);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "keel-replay {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn list_seed_and_rebuild_from_the_command_line() {
    let database = ExtraDatabase::create().await;
    event_store::migrate(&database.pool)
        .await
        .expect("event-store migrations");

    let listed = keel_replay(&database.url, &["list"]);
    for projection in projections::Projection::ALL {
        assert!(
            listed
                .lines()
                .any(|line| line.starts_with(projection.name())),
            "{projection} missing from:\n{listed}"
        );
    }

    let seeded = event_store::seed::seed_events_with(&database.pool, 2000, SeedMix::Mixed, |_| {})
        .await
        .expect("seeding");
    assert_eq!(seeded, 2000);
    let rebuilt = keel_replay(&database.url, &["rebuild", "stock", "--batch-size", "300"]);
    assert!(rebuilt.contains("swapped in"), "{rebuilt}");
    assert!(rebuilt.contains("1000 events read"), "{rebuilt}");
    assert!(rebuilt.contains("events/s"), "{rebuilt}");
    // Without the master key, orders (which may hold personal data) is not rebuilt.
    let refused = run(&database.url, &["rebuild", "orders"], false);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("KEEL_MASTER_KEY"), "{stderr}");
    let rebuilt = keel_replay(&database.url, &["rebuild", "orders"]);
    assert!(rebuilt.contains("2000 events read"), "{rebuilt}");

    let skus: i64 = sqlx::query_scalar("SELECT count(*) FROM read_model.stock_levels")
        .fetch_one(&database.pool)
        .await
        .expect("count");
    assert_eq!(skus, 100);
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM read_model.order_view_lines")
        .fetch_one(&database.pool)
        .await
        .expect("count");
    assert_eq!(lines, 500);

    let listed = keel_replay(&database.url, &["list"]);
    let stock = listed
        .lines()
        .find(|line| line.starts_with("stock"))
        .expect("stock listed");
    let columns: Vec<&str> = stock.split_whitespace().collect();
    assert_eq!(columns[1..6], ["100", "0", "1000", "1000", "0"], "{listed}");
    let status = keel_replay(&database.url, &["status"]);
    assert!(status.contains("no unfinished rebuild"), "{status}");
    database.drop_database().await;
}
