//! The harness's smoke mode against the running platform (`cargo xtask up`; the test gate
//! sets `KEEL_DATABASE_URL`, `KEEL_KAFKA_BROKERS` and friends): each scenario runs for a
//! second or two at a tiny rate, and its JSON report must show real work done correctly.
//! No timing is asserted: these tests keep the harness working, they do not measure.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::Value;
use support::{number, smoke};

#[test]
fn s1_commands_are_all_accepted() {
    let report = smoke(&["commands", "--scenario", "create-order"]);
    let completed = number(&report, "/results/completed");
    assert!(completed > 0.0, "{report:#}");
    assert_eq!(number(&report, "/results/scheduled"), completed);
    assert_eq!(number(&report, "/results/statuses/ok_2xx"), completed);
    assert_eq!(number(&report, "/results/errors"), 0.0);
    assert!(number(&report, "/results/achieved_rate") > 0.0);
    // The platform's processes were sampled while the load ran.
    let rss = report["results"]["rss"].as_object().expect("rss sampled");
    let command_api = rss.get("command-api").expect("command-api sampled");
    assert!(command_api["peak_mib"].as_f64().expect("peak") > 0.0);
    // And their CPU time, PostgreSQL's and the load generator's included.
    let cpu = report["results"]["cpu_seconds"]
        .as_object()
        .expect("cpu sampled");
    for process in [
        "command-api",
        "postgres (all processes)",
        "bench (load generator)",
    ] {
        assert!(cpu.contains_key(process), "{process} missing in {cpu:?}");
    }
}

#[test]
fn s2_hot_aggregate_loses_no_update() {
    let report = smoke(&["hot", "--writers", "4"]);
    assert_eq!(report["passed"], true, "{report:#}");
    assert!(number(&report, "/results/successes") > 0.0);
    assert!(number(&report, "/results/check/acknowledged") > 0.0);
}

#[test]
fn s4_every_event_reaches_the_topic() {
    let report = smoke(&["relay"]);
    let expected = number(&report, "/results/expected_events");
    assert!(expected > 0.0, "{report:#}");
    assert_eq!(number(&report, "/results/received_events"), expected);
    assert_eq!(number(&report, "/results/missing_events"), 0.0);
}

#[test]
fn s4_the_outbox_drains() {
    let report = smoke(&["relay", "--drain", "500"]);
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(number(&report, "/results/events"), 500.0);
    assert!(number(&report, "/results/drained_events_per_s") > 0.0);
}

#[test]
fn s5_commands_become_visible_in_the_query_api() {
    // Uniform keys over a large space: no two commands race for one SKU, so none is refused.
    let report = smoke(&["freshness", "--zipf-s", "0", "--keys", "1000000"]);
    let completed = number(&report, "/results/round/completed");
    assert!(completed > 0.0, "{report:#}");
    assert_eq!(number(&report, "/results/commands_rejected"), 0.0);
    assert_eq!(number(&report, "/results/round/errors"), 0.0);
    // Every command was answered by the query API: at its version, or (when the read model
    // did not catch up within the API's own wait, which a busy CI machine may cause) 503.
    let visible = number(&report, "/results/freshness/count");
    assert!(visible > 0.0, "{report:#}");
    assert_eq!(visible + number(&report, "/results/misses"), completed);
}

#[test]
fn pgbench_baseline_appends_events() {
    let report = smoke(&["pgbench"]);
    assert_eq!(report["passed"], true, "{report:#}");
    let run = &report["results"]["runs"][0];
    let transactions = run["transactions"].as_f64().expect("transactions");
    assert!(transactions > 0.0, "{report:#}");
    assert_eq!(run["failed"].as_f64(), Some(0.0));
    assert!(run["tps"].as_f64().expect("tps") > 0.0);
    // Every transaction appended one event, through the store's triggers.
    assert_eq!(number(&report, "/results/events_stored"), transactions);
}

#[test]
fn s6_rebuild_applies_every_event_once() {
    let report = smoke(&["rebuild", "--fold", "set-based,per-event"]);
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(number(&report, "/results/events_seeded"), 2_000.0);
    let runs = report["results"]["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{report:#}");
    for run in runs {
        assert_eq!(run["projection"], "stock", "{run:#}");
        assert_eq!(run["events_stored"].as_f64(), Some(2_000.0), "{run:#}");
        assert_run_complete(run);
    }
}

/// T4's shape: whole order flows, and every projection rebuilt from them, each both ways.
#[test]
fn t4_rebuilds_every_projection_from_order_flows() {
    let report = smoke(&[
        "rebuild",
        "--mix",
        "fulfilment",
        "--projection",
        "orders,stock,payments",
        "--fold",
        "set-based,per-event",
    ]);
    assert_eq!(report["passed"], true, "{report:#}");
    let runs = report["results"]["runs"].as_array().expect("runs");
    let projections: Vec<&str> = runs
        .iter()
        .map(|run| run["projection"].as_str().expect("projection"))
        .collect();
    assert_eq!(
        projections,
        ["orders", "orders", "stock", "stock", "payments", "payments"]
    );
    for run in runs {
        assert!(run["events_stored"].as_f64() > Some(0.0), "{run:#}");
        assert!(run["expected_rows"].as_f64() > Some(0.0), "{run:#}");
        assert_run_complete(run);
    }
    // Orders read every topic, so every seeded event; stock and payments their own share.
    let seeded = number(&report, "/results/events_seeded");
    assert_eq!(runs[0]["events_stored"].as_f64(), Some(seeded));
    let (stock, payments) = (
        runs[2]["events_stored"].as_f64().expect("stock events"),
        runs[4]["events_stored"].as_f64().expect("payment events"),
    );
    assert!(stock + payments < seeded, "{report:#}");
}

/// A run applied every stored event of its projection once and swapped in one row per
/// aggregate.
fn assert_run_complete(run: &Value) {
    assert_eq!(run["swapped"], true, "{run:#}");
    // CPU per event, PostgreSQL's and the rebuilding process's, each a number (whole clock
    // ticks: a short run may read 0).
    for process in ["postgres (all processes)", "bench (rebuilding)"] {
        let us = run["cpu_us_per_event"][process].as_f64();
        assert!(us.is_some_and(|us| us >= 0.0), "{process}: {run:#}");
    }
    assert_eq!(run["events_applied"], run["events_stored"], "{run:#}");
    assert_eq!(run["rows"], run["expected_rows"], "{run:#}");
}

#[test]
fn s7_loads_rebuild_the_aggregate() {
    let report = smoke(&["load"]);
    assert_eq!(report["passed"], true, "{report:#}");
    let streams = report["results"]["streams"].as_array().expect("streams");
    assert_eq!(
        streams.len(),
        4,
        "10 and 100 events, with and without snapshots"
    );
    for stream in streams {
        assert_eq!(stream["state_correct"], true, "{stream:#}");
        assert_eq!(stream["loads"]["count"].as_f64(), Some(5.0));
    }
}

#[test]
fn every_event_store_trigger_is_measured() {
    let report = smoke(&["triggers"]);
    assert_eq!(report["passed"], true, "{report:#}");
    let triggers = report["results"]["median_triggers_us"]
        .as_object()
        .expect("per-trigger figures");
    for trigger in [
        "events_assign_event_id",
        "events_capture_idempotency_key",
        "events_seal_hash_chain",
        "events_enqueue_for_publication",
        "events_mark_appender",
    ] {
        let cost = triggers
            .get(trigger)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{trigger} missing in {triggers:?}"));
        assert!(cost >= 0.0, "{trigger}: {cost}");
    }
    // The statement is the insert plus its triggers.
    let statement = number(&report, "/results/median_statement_us");
    let insert = number(&report, "/results/median_insert_us");
    assert!(
        statement > 0.0 && insert > 0.0 && insert < statement,
        "{report:#}"
    );
}
