//! The workspace's dependency rules (`docs/adr/0006-one-crate-per-process.md`), checked on
//! what `cargo metadata` reports of every member's declared dependencies.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One crate per process.
const SERVICES: [&str; 5] = [
    "command-api",
    "outbox-relay",
    "saga",
    "projections",
    "query-api",
];
/// Libraries the processes are built from.
const LIBRARIES: [&str; 8] = [
    "aggregates",
    "schemas",
    "event-store",
    "read-model",
    "audit",
    "console",
    "ops",
    "test-support",
];
/// Whole-platform tests, benchmarks and the developer tool.
const TOOLS: [&str; 3] = ["tests", "bench", "xtask"];

/// Each member's workspace dependencies by kind (`normal`, `dev`, `build`), and its
/// external normal dependencies.
struct Workspace {
    internal: BTreeMap<String, BTreeMap<&'static str, BTreeSet<String>>>,
    external: BTreeMap<String, BTreeSet<String>>,
}

impl Workspace {
    fn load() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(&root)
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
        let packages = metadata["packages"].as_array().expect("packages");
        let members: BTreeSet<String> = packages
            .iter()
            .map(|package| package["name"].as_str().expect("name").to_owned())
            .collect();
        let mut internal = BTreeMap::new();
        let mut external = BTreeMap::new();
        for package in packages {
            let name = package["name"].as_str().expect("name").to_owned();
            let mut by_kind: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
            let mut outside = BTreeSet::new();
            for dependency in package["dependencies"].as_array().expect("dependencies") {
                let dependency_name = dependency["name"].as_str().expect("name").to_owned();
                let kind = match dependency["kind"].as_str() {
                    None => "normal",
                    Some("dev") => "dev",
                    Some(_) => "build",
                };
                if members.contains(&dependency_name) {
                    by_kind.entry(kind).or_default().insert(dependency_name);
                } else if kind == "normal" {
                    outside.insert(dependency_name);
                }
            }
            internal.insert(name.clone(), by_kind);
            external.insert(name, outside);
        }
        Self { internal, external }
    }

    fn members(&self) -> BTreeSet<&str> {
        self.internal.keys().map(String::as_str).collect()
    }

    fn depends(&self, krate: &str, kind: &str) -> BTreeSet<&str> {
        self.internal[krate]
            .get(kind)
            .map(|names| names.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

#[test]
fn every_member_is_a_service_a_library_or_a_tool() {
    let workspace = Workspace::load();
    let classified: BTreeSet<&str> = SERVICES
        .iter()
        .chain(&LIBRARIES)
        .chain(&TOOLS)
        .copied()
        .collect();
    assert_eq!(
        workspace.members(),
        classified,
        "a new crate must be classified here and in ADR 0006"
    );
}

#[test]
fn no_service_and_no_library_depends_on_a_service() {
    let workspace = Workspace::load();
    for krate in SERVICES.iter().chain(&LIBRARIES) {
        let services: Vec<&str> = workspace
            .depends(krate, "normal")
            .into_iter()
            .filter(|dependency| SERVICES.contains(dependency))
            .collect();
        assert!(
            services.is_empty(),
            "{krate} depends on the service crate(s) {services:?}"
        );
    }
}

#[test]
fn the_domain_and_the_runtime_kit_depend_on_no_other_crate_of_the_workspace() {
    let workspace = Workspace::load();
    for krate in ["aggregates", "ops"] {
        assert_eq!(
            workspace.depends(krate, "normal"),
            BTreeSet::new(),
            "{krate} must stand alone"
        );
    }
}

#[test]
fn test_support_depends_on_no_service_crate_even_for_its_own_tests() {
    let workspace = Workspace::load();
    for kind in ["normal", "dev"] {
        let services: Vec<&str> = workspace
            .depends("test-support", kind)
            .into_iter()
            .filter(|dependency| SERVICES.contains(dependency))
            .collect();
        assert!(services.is_empty(), "{kind}: {services:?}");
    }
}

#[test]
fn the_read_side_reaches_the_domain_only_through_the_audit_trail() {
    let workspace = Workspace::load();
    assert!(
        !workspace
            .depends("query-api", "normal")
            .contains("aggregates"),
        "query-api must not depend on aggregates"
    );
    assert!(workspace.depends("query-api", "normal").contains("audit"));
}

#[test]
fn the_read_models_writer_and_reader_share_one_schema_crate() {
    let workspace = Workspace::load();
    for krate in ["projections", "query-api"] {
        assert!(
            workspace.depends(krate, "normal").contains("read-model"),
            "{krate} must reach the read-model schema through the read-model crate"
        );
    }
    assert!(
        !workspace
            .depends("query-api", "normal")
            .contains("projections"),
        "query-api must not depend on the projector"
    );
}

#[test]
fn only_the_event_store_crate_owns_its_tables_and_the_http_write_side_links_no_kafka_client() {
    let workspace = Workspace::load();
    let external = &workspace.external["command-api"];
    for kafka in ["rdkafka", "schema_registry_converter"] {
        assert!(!external.contains(kafka), "command-api depends on {kafka}");
    }
    // Every process that touches `public.events` does so through `event-store`.
    for krate in ["command-api", "outbox-relay", "projections", "audit"] {
        assert!(
            workspace.depends(krate, "normal").contains("event-store"),
            "{krate} reads or writes the event store without the event-store crate"
        );
    }
    // Migrations live with the crate that owns the tables: the event store's, the saga's
    // and the read models'.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let with_migrations: BTreeSet<&str> = workspace
        .members()
        .into_iter()
        .filter(|krate| root.join(krate).join("migrations").is_dir())
        .collect();
    assert_eq!(
        with_migrations,
        BTreeSet::from(["event-store", "read-model", "saga"])
    );
}
