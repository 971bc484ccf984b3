//! Where `deploy/` and the cached schema packages are, and reading manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The Kubernetes release whose API the manifests are checked against.
pub(crate) const KUBERNETES_VERSION: &str = "1.34.0";
/// The PyPI package (name, version) that ships the Kubernetes JSON schemas.
pub(crate) const KUBERNETES_SCHEMAS_PACKAGE: (&str, &str) = ("kubernetes-validate", "1.37.0");
/// The npm package (name, version) that ships the Compose Specification's JSON schema.
pub(crate) const COMPOSE_SCHEMA_PACKAGE: (&str, &str) = ("dclint", "3.1.0");
/// The `$id` under which the schemas' `$ref: /api/_definitions.json#...` resolve.
pub(crate) const KUBERNETES_DEFINITIONS_URI: &str = "https://kubernetes.io/api/_definitions.json";

/// The processes of the platform: each is a binary of the image and a workload of its own.
pub(crate) const PROCESSES: [&str; 5] = [
    "command-api",
    "outbox-relay",
    "saga",
    "projections",
    "query-api",
];
/// The processes that serve HTTP, with their port.
/// The crates that build the platform's binaries (one per process, plus the CLIs).
pub(crate) const PROCESS_CRATES: [&str; 6] = [
    "command-api",
    "outbox-relay",
    "saga",
    "projections",
    "query-api",
    "audit",
];

pub(crate) const HTTP_SERVICES: [(&str, u64); 2] = [("command-api", 8080), ("query-api", 8090)];
/// The binaries' own defaults of the drain bounds, used where no manifest sets them.
pub(crate) const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 20;
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 15;

// ---------------------------------------------------------------------------------------
// Where things are

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

pub(crate) fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// The tool cache of `cargo xtask`, resolved the same way as there.
pub(crate) fn tools_dir() -> PathBuf {
    if let Some(dir) = env::var_os("KEEL_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = env::var_os("KEEL_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| env::var_os("XDG_CACHE_HOME").map(|base| PathBuf::from(base).join("keel")))
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/keel")))
        .expect("none of KEEL_TOOLS_DIR, KEEL_CACHE_DIR, XDG_CACHE_HOME, HOME is set: cannot find the schema cache");
    cache.join("tools")
}

pub(crate) fn package_dir((name, version): (&str, &str)) -> PathBuf {
    tools_dir().join(format!("{name}-{version}"))
}

/// The folder of per-version schema folders (`v1.34.0-local-strict/`, ...):
/// `KEEL_K8S_SCHEMAS_DIR`, else the cached `kubernetes-validate` package.
pub(crate) fn kubernetes_schema_dir() -> PathBuf {
    let root = env::var_os("KEEL_K8S_SCHEMAS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            package_dir(KUBERNETES_SCHEMAS_PACKAGE)
                .join("kubernetes_validate")
                .join("kubernetes-json-schema")
        });
    let dir = root.join(format!("v{KUBERNETES_VERSION}-local-strict"));
    if !dir.join("_definitions.json").is_file() {
        let (name, version) = KUBERNETES_SCHEMAS_PACKAGE;
        panic!(
            "the Kubernetes {KUBERNETES_VERSION} JSON schemas are missing: no {}.\n\
             They come from the PyPI package {name} {version}. `cargo xtask test` installs it; \
             by hand:\n  python3 -m pip install --no-deps --target {} {name}=={version}\n\
             (or set KEEL_K8S_SCHEMAS_DIR to a folder holding v{KUBERNETES_VERSION}-local-strict/)",
            dir.join("_definitions.json").display(),
            package_dir(KUBERNETES_SCHEMAS_PACKAGE).display(),
        );
    }
    dir
}

/// The Compose Specification schema: `KEEL_COMPOSE_SCHEMA`, else the cached `dclint` package.
pub(crate) fn compose_schema_path() -> PathBuf {
    let path = env::var_os("KEEL_COMPOSE_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            package_dir(COMPOSE_SCHEMA_PACKAGE)
                .join("package")
                .join("schemas")
                .join("compose.schema.json")
        });
    if !path.is_file() {
        let (name, version) = COMPOSE_SCHEMA_PACKAGE;
        let dir = package_dir(COMPOSE_SCHEMA_PACKAGE);
        panic!(
            "the Compose Specification schema is missing: no {}.\n\
             It comes from the npm package {name} {version}. `cargo xtask test` installs it; \
             by hand:\n  mkdir -p {dir} && cd {dir} && npm pack {name}@{version} && tar xzf {name}-{version}.tgz\n\
             (or set KEEL_COMPOSE_SCHEMA to a compose-spec JSON schema file)",
            path.display(),
            dir = dir.display(),
        );
    }
    path
}

// ---------------------------------------------------------------------------------------
// Reading

pub(crate) fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read(path))
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

/// Every non-empty document of a YAML stream, merge keys (`<<: *anchor`) applied, as JSON.
pub(crate) fn yaml_documents(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .enumerate()
        .map(|(index, document)| {
            let mut value = serde_yaml_ng::Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{origin}, document {index}: bad YAML: {error}"));
            value
                .apply_merge()
                .unwrap_or_else(|error| panic!("{origin}, document {index}: merge keys: {error}"));
            serde_json::to_value(value).unwrap_or_else(|error| {
                panic!("{origin}, document {index}: not JSON data: {error}")
            })
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// One Kubernetes resource and the file it is in.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub(crate) file: String,
    pub(crate) resource: Value,
}

impl Manifest {
    pub(crate) fn kind(&self) -> &str {
        self.resource["kind"].as_str().unwrap_or("<no kind>")
    }

    pub(crate) fn name(&self) -> &str {
        self.resource["metadata"]["name"]
            .as_str()
            .unwrap_or("<no name>")
    }

    pub(crate) fn describe(&self) -> String {
        format!("{} {}/{}", self.file, self.kind(), self.name())
    }
}

pub(crate) fn kubernetes_files() -> BTreeSet<String> {
    let dir = deploy_dir().join("k8s");
    fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .filter(|name| name != "kustomization.yaml")
        .collect()
}

/// Every resource under `deploy/k8s/` (the kustomization is not a resource).
pub(crate) fn kubernetes_manifests() -> Vec<Manifest> {
    let manifests: Vec<Manifest> = kubernetes_files()
        .into_iter()
        .flat_map(|file| {
            let text = read(&deploy_dir().join("k8s").join(&file));
            yaml_documents(&text, &file)
                .into_iter()
                .map(move |resource| Manifest {
                    file: file.clone(),
                    resource,
                })
        })
        .collect();
    assert!(!manifests.is_empty(), "no manifests found under deploy/k8s");
    manifests
}

pub(crate) fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Value {
    manifests
        .iter()
        .find(|manifest| manifest.kind() == kind && manifest.name() == name)
        .map(|manifest| &manifest.resource)
        .unwrap_or_else(|| panic!("deploy/k8s has no {kind} named {name}"))
}

pub(crate) fn of_kind<'a>(
    manifests: &'a [Manifest],
    kind: &'a str,
) -> impl Iterator<Item = &'a Manifest> {
    manifests
        .iter()
        .filter(move |manifest| manifest.kind() == kind)
}

pub(crate) fn compose_file() -> Value {
    let path = deploy_dir().join("docker-compose.yml");
    let mut documents = yaml_documents(&read(&path), "docker-compose.yml");
    assert_eq!(
        documents.len(),
        1,
        "docker-compose.yml must be one document"
    );
    documents.remove(0)
}

pub(crate) fn config_map(manifests: &[Manifest]) -> &serde_json::Map<String, Value> {
    find(manifests, "ConfigMap", "keel-config")["data"]
        .as_object()
        .expect("keel-config has data")
}

pub(crate) fn seconds(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
        .unwrap_or_else(|| panic!("{what} is not a number of seconds: {value}"))
}

pub(crate) fn containers(deployment: &Value) -> &Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("a Deployment has containers")
}

/// A container's environment: the ConfigMap it imports, then its own `env` values.
pub(crate) fn environment(
    container: &Value,
    config: &serde_json::Map<String, Value>,
) -> BTreeMap<String, Value> {
    let mut variables: BTreeMap<String, Value> = BTreeMap::new();
    if container["envFrom"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|source| source["configMapRef"]["name"] == "keel-config")
    {
        variables.extend(
            config
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
    }
    for variable in container["env"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap_or_default().to_owned();
        let value = if variable["valueFrom"].is_null() {
            variable["value"].clone()
        } else {
            variable["valueFrom"].clone()
        };
        variables.insert(name, value);
    }
    variables
}

/// The pause before SIGTERM: `preStop` running `sleep N`, or the `sleep` action.
pub(crate) fn pre_stop_seconds(container: &Value) -> u64 {
    let pre_stop = &container["lifecycle"]["preStop"];
    if let Some(command) = pre_stop["exec"]["command"].as_array() {
        assert_eq!(
            command.first().and_then(Value::as_str),
            Some("sleep"),
            "a preStop hook other than `sleep N` has no known duration: {command:?}"
        );
        return seconds(&command[1], "preStop sleep");
    }
    if !pre_stop["sleep"].is_null() {
        return seconds(&pre_stop["sleep"]["seconds"], "preStop sleep");
    }
    0
}
