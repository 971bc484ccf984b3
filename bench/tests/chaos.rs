//! `bench chaos --smoke` against the running platform: the projector is killed with
//! SIGKILL under a small load of whole orders and restarted, and the scenario's own checks
//! must find nothing lost, skipped, mismatched or done twice. Its own test binary, so that
//! no other test runs while a process of the shared platform is down. No timing is
//! asserted.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

mod support;

use support::{number, smoke};

#[test]
fn killing_the_projector_under_load_loses_nothing() {
    let report = smoke(&["chaos"]);
    assert_eq!(report["passed"], true, "{report:#}");
    let segments = report["results"]["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 1, "{report:#}");
    let segment = &segments[0];
    assert_eq!(segment["fault"], "projector");
    // Real work went through the whole pipeline and was checked.
    let flows = number(segment, "/load/statuses/ok_2xx");
    assert!(flows > 0.0, "{report:#}");
    assert_eq!(number(segment, "/check/flows_by_status/completed"), flows);
    assert!(number(segment, "/check/acknowledged_events") >= 3.0 * flows);
    assert!(
        number(segment, "/check/stored_events") > number(segment, "/check/acknowledged_events")
    );
    for counter in [
        "lost_acknowledged",
        "missing_on_kafka",
        "reordered_aggregates",
        "read_model_behind",
        "unsettled_flows",
        "double_effects",
    ] {
        assert_eq!(
            number(segment, &format!("/check/{counter}")),
            0.0,
            "{counter}"
        );
    }
    // Every projection was rebuilt from the store and compared, table by table.
    let read_models = segment["read_models"].as_array().expect("read models");
    assert_eq!(read_models.len(), 3, "{report:#}");
    for projection in read_models {
        assert!(number(projection, "/events_read") > 0.0, "{projection:#}");
        let tables = projection["differing_rows"].as_object().expect("tables");
        assert!(!tables.is_empty());
        assert!(tables.values().all(|rows| rows == 0), "{projection:#}");
    }
    // The killed projector was started again.
    assert!(number(segment, "/down_s") > 0.0);
}
