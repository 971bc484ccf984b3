//! Running the bench binary in smoke mode and reading its report.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use uuid::Uuid;

/// Runs `bench <args> --smoke --json <file>` and returns the report.
pub fn smoke(args: &[&str]) -> Value {
    let path: PathBuf =
        std::env::temp_dir().join(format!("bench-smoke-{}.json", Uuid::new_v4().simple()));
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .arg("--smoke")
        .arg("--json")
        .arg(&path)
        .output()
        .expect("the bench binary runs");
    let text = std::fs::read_to_string(&path);
    std::fs::remove_file(&path).ok();
    assert!(
        output.status.success(),
        "bench {} failed ({}):\n{}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_str(&text.expect("the report was written")).expect("the report is JSON");
    assert_eq!(report["smoke"], true);
    report
}

pub fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report:#}"))
}
