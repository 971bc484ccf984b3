//! Offline validation of `deploy/`, part of the test gate (Docker and a cluster are not
//! needed, and nothing is fetched at test time):
//!
//! - every document under `deploy/k8s/` against the JSON schemas of Kubernetes
//!   [`KUBERNETES_VERSION`], in their strict flavour (an unknown or misspelt field is an
//!   error, as with `kubectl apply --validate=strict`); a kind without a schema fails, it is
//!   never skipped;
//! - `deploy/docker-compose.yml` against the Compose Specification schema;
//! - the rules the manifests promise: termination grace longer than the drain, the projector
//!   autoscaler bounded by the partition count, probes on the HTTP services, requests and
//!   limits, a disruption budget per workload, the database URL only from the Secret, and
//!   one image that ships every process the manifests run;
//! - the security and operations rules: both APIs require tokens, verified with a key that
//!   comes from a Secret and that their own configuration code (`ops`) accepts once the
//!   placeholder is replaced, and refuses as shipped; the saga has a token from a Secret
//!   (in Compose, one the APIs accept); every pod is scraped where its process serves
//!   `/metrics`; the ingress routes every API route but never `/metrics` or the probes.
//!
//! The schemas are files of registry packages, cached outside the repository: the PyPI
//! package `kubernetes-validate` ships the Kubernetes schemas, the npm package `dclint` the
//! Compose Specification's. `cargo xtask test` installs them; without them every test here
//! fails with the command that installs them by hand.

// Tests, benchmarks and tools draw fresh ids and read the clock directly; `clippy.toml`
// bans that only in the platform's own code.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use jsonschema::{Registry, Validator};
use serde::Deserialize;
use serde_json::{Value, json};

/// The Kubernetes release whose API the manifests are checked against.
const KUBERNETES_VERSION: &str = "1.34.0";
/// The PyPI package (name, version) that ships the Kubernetes JSON schemas.
const KUBERNETES_SCHEMAS_PACKAGE: (&str, &str) = ("kubernetes-validate", "1.37.0");
/// The npm package (name, version) that ships the Compose Specification's JSON schema.
const COMPOSE_SCHEMA_PACKAGE: (&str, &str) = ("dclint", "3.1.0");
/// The `$id` under which the schemas' `$ref: /api/_definitions.json#...` resolve.
const KUBERNETES_DEFINITIONS_URI: &str = "https://kubernetes.io/api/_definitions.json";

/// The processes of the platform: each is a binary of the image and a workload of its own.
const PROCESSES: [&str; 5] = [
    "command-api",
    "outbox-relay",
    "saga",
    "projections",
    "query-api",
];
/// The processes that serve HTTP, with their port.
/// The crates that build the platform's binaries (one per process, plus the CLIs).
const PROCESS_CRATES: [&str; 6] = [
    "command-api",
    "outbox-relay",
    "saga",
    "projections",
    "query-api",
    "audit",
];

const HTTP_SERVICES: [(&str, u64); 2] = [("command-api", 8080), ("query-api", 8090)];
/// The binaries' own defaults of the drain bounds, used where no manifest sets them.
const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 20;
const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 15;

// ---------------------------------------------------------------------------------------
// Where things are

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// The tool cache of `cargo xtask`, resolved the same way as there.
fn tools_dir() -> PathBuf {
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

fn package_dir((name, version): (&str, &str)) -> PathBuf {
    tools_dir().join(format!("{name}-{version}"))
}

/// The folder of per-version schema folders (`v1.34.0-local-strict/`, ...):
/// `KEEL_K8S_SCHEMAS_DIR`, else the cached `kubernetes-validate` package.
fn kubernetes_schema_dir() -> PathBuf {
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
fn compose_schema_path() -> PathBuf {
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

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read(path))
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

/// Every non-empty document of a YAML stream, merge keys (`<<: *anchor`) applied, as JSON.
fn yaml_documents(text: &str, origin: &str) -> Vec<Value> {
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
struct Manifest {
    file: String,
    resource: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.resource["kind"].as_str().unwrap_or("<no kind>")
    }

    fn name(&self) -> &str {
        self.resource["metadata"]["name"]
            .as_str()
            .unwrap_or("<no name>")
    }

    fn describe(&self) -> String {
        format!("{} {}/{}", self.file, self.kind(), self.name())
    }
}

fn kubernetes_files() -> BTreeSet<String> {
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
fn kubernetes_manifests() -> Vec<Manifest> {
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

fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Value {
    manifests
        .iter()
        .find(|manifest| manifest.kind() == kind && manifest.name() == name)
        .map(|manifest| &manifest.resource)
        .unwrap_or_else(|| panic!("deploy/k8s has no {kind} named {name}"))
}

fn of_kind<'a>(manifests: &'a [Manifest], kind: &'a str) -> impl Iterator<Item = &'a Manifest> {
    manifests
        .iter()
        .filter(move |manifest| manifest.kind() == kind)
}

fn compose_file() -> Value {
    let path = deploy_dir().join("docker-compose.yml");
    let mut documents = yaml_documents(&read(&path), "docker-compose.yml");
    assert_eq!(
        documents.len(),
        1,
        "docker-compose.yml must be one document"
    );
    documents.remove(0)
}

// ---------------------------------------------------------------------------------------
// Validators

/// The strict Kubernetes schemas of [`KUBERNETES_VERSION`], one compiled validator per kind.
struct KubernetesSchemas {
    dir: PathBuf,
    registry: Registry<'static>,
    validators: HashMap<PathBuf, Validator>,
}

impl KubernetesSchemas {
    fn load() -> Self {
        let dir = kubernetes_schema_dir();
        let definitions = read_json(&dir.join("_definitions.json"));
        let registry = Registry::new()
            .add(KUBERNETES_DEFINITIONS_URI, definitions)
            .and_then(|builder| builder.prepare())
            .unwrap_or_else(|error| panic!("loading the Kubernetes definitions: {error}"));
        Self {
            dir,
            registry,
            validators: HashMap::new(),
        }
    }

    /// `kubernetes-validate`'s file naming: `<kind>-<group>-<version>.json` with the group
    /// cut at its first dot (`networking.k8s.io/v1` → `ingress-networking-v1.json`), and
    /// `<kind>-<version>.json` for the core group (`v1` → `service-v1.json`).
    fn schema_file(api_version: &str, kind: &str) -> String {
        let api = match api_version.split_once('/') {
            Some((group, version)) => {
                let group = group.split('.').next().unwrap_or(group);
                format!("{group}-{version}")
            }
            None => api_version.to_owned(),
        };
        format!("{}-{api}.json", kind.to_lowercase())
    }

    /// Every way `resource` breaks the schema of its kind; empty if it is valid.
    fn errors(&mut self, resource: &Value) -> Vec<String> {
        let (Some(api_version), Some(kind)) =
            (resource["apiVersion"].as_str(), resource["kind"].as_str())
        else {
            return vec!["no apiVersion or kind: not a Kubernetes resource".into()];
        };
        let file = self.dir.join(Self::schema_file(api_version, kind));
        if !file.is_file() {
            return vec![format!(
                "Kubernetes {KUBERNETES_VERSION} has no kind {kind} in {api_version} (no {})",
                file.display()
            )];
        }
        let registry = &self.registry;
        let validator = self.validators.entry(file).or_insert_with_key(|file| {
            jsonschema::options()
                .offline()
                .with_registry(registry)
                .build(&read_json(file))
                .unwrap_or_else(|error| panic!("compiling {}: {error}", file.display()))
        });
        validator
            .iter_errors(resource)
            .map(|error| format!("at {}: {error}", pointer(error.instance_path().as_str())))
            .collect()
    }
}

fn compose_validator() -> Validator {
    let path = compose_schema_path();
    jsonschema::options()
        .offline()
        .build(&read_json(&path))
        .unwrap_or_else(|error| panic!("compiling {}: {error}", path.display()))
}

fn compose_errors(validator: &Validator, compose: &Value) -> Vec<String> {
    validator
        .iter_errors(compose)
        .map(|error| format!("at {}: {error}", pointer(error.instance_path().as_str())))
        .collect()
}

fn pointer(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

// ---------------------------------------------------------------------------------------
// Schema validation

/// A negative case: its name, one change that breaks a valid document, and what the
/// validator's report must mention.
type Breakage = (&'static str, fn(&mut Value), &'static str);

#[test]
fn every_kubernetes_manifest_matches_the_schemas_of_the_pinned_version() {
    let manifests = kubernetes_manifests();
    let mut schemas = KubernetesSchemas::load();
    let mut failures = Vec::new();
    for manifest in &manifests {
        for error in schemas.errors(&manifest.resource) {
            failures.push(format!("{}: {error}", manifest.describe()));
        }
    }
    assert!(
        failures.is_empty(),
        "manifests invalid for Kubernetes {KUBERNETES_VERSION}:\n{}",
        failures.join("\n")
    );

    let kinds: BTreeSet<&str> = manifests.iter().map(Manifest::kind).collect();
    for kind in [
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
    ] {
        assert!(kinds.contains(kind), "deploy/k8s has no {kind}: {kinds:?}");
    }
}

#[test]
fn the_kubernetes_validator_rejects_broken_manifests() {
    let mut schemas = KubernetesSchemas::load();

    // A literal manifest, through the same YAML path as the files.
    let literal = yaml_documents(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: "two"
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: broken
          image: keel:0.1.0
"#,
        "literal",
    )
    .remove(0);
    let errors = schemas.errors(&literal);
    assert!(
        errors.iter().any(|error| error.contains("/spec/replicas")),
        "replicas: \"two\" was not reported: {errors:?}"
    );

    // Single changes to a real, valid manifest: each must be caught, at its place.
    let manifests = kubernetes_manifests();
    let valid = find(&manifests, "Deployment", "command-api").clone();
    assert_eq!(schemas.errors(&valid), Vec::<String>::new());
    let cases: [Breakage; 6] = [
        (
            "misspelt field",
            |resource| resource["spec"]["replica"] = json!(2),
            "replica",
        ),
        (
            "required field missing",
            |resource| {
                if let Some(spec) = resource["spec"].as_object_mut() {
                    spec.remove("selector");
                }
            },
            "selector",
        ),
        (
            "number as a string",
            |resource| {
                resource["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
                    json!("8080");
            },
            "/ports/0/containerPort",
        ),
        (
            "unknown field in a probe",
            |resource| {
                resource["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
                    ["pathh"] = json!("/health/ready");
            },
            "pathh",
        ),
        (
            "probe under a misspelt key",
            |resource| {
                let container = &mut resource["spec"]["template"]["spec"]["containers"][0];
                if let Some(probe) = container
                    .as_object_mut()
                    .and_then(|c| c.remove("livenessProbe"))
                {
                    container["livenesProbe"] = probe;
                }
            },
            "livenesProbe",
        ),
        (
            "unknown kind",
            |resource| resource["kind"] = json!("Deploymnt"),
            "no kind Deploymnt",
        ),
    ];
    for (case, break_it, expected) in cases {
        let mut broken = valid.clone();
        break_it(&mut broken);
        let errors = schemas.errors(&broken);
        assert!(
            errors.iter().any(|error| error.contains(expected)),
            "{case}: expected an error mentioning {expected:?}, got {errors:?}"
        );
    }
}

#[test]
fn the_compose_file_matches_the_compose_specification() {
    let validator = compose_validator();
    let compose = compose_file();
    let errors = compose_errors(&validator, &compose);
    assert!(
        errors.is_empty(),
        "docker-compose.yml breaks the Compose Specification:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_compose_validator_rejects_broken_compose_files() {
    let validator = compose_validator();
    let valid = compose_file();
    assert_eq!(compose_errors(&validator, &valid), Vec::<String>::new());
    let cases: [Breakage; 4] = [
        (
            "misspelt service key",
            |compose| compose["services"]["command-api"]["enviroment"] = json!({"A": "b"}),
            "enviroment",
        ),
        (
            "unknown depends_on condition",
            |compose| {
                compose["services"]["query-api"]["depends_on"]["postgres"]["condition"] =
                    json!("service_happy");
            },
            "/services/query-api/depends_on",
        ),
        (
            "stop_grace_period as a bare number",
            |compose| compose["services"]["saga"]["stop_grace_period"] = json!(30),
            "/services/saga/stop_grace_period",
        ),
        (
            "unknown top-level key",
            |compose| compose["service"] = json!({}),
            "service",
        ),
    ];
    for (case, break_it, expected) in cases {
        let mut broken = valid.clone();
        break_it(&mut broken);
        let errors = compose_errors(&validator, &broken);
        assert!(
            errors.iter().any(|error| error.contains(expected)),
            "{case}: expected an error mentioning {expected:?}, got {errors:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// What the manifests promise

fn config_map(manifests: &[Manifest]) -> &serde_json::Map<String, Value> {
    find(manifests, "ConfigMap", "keel-config")["data"]
        .as_object()
        .expect("keel-config has data")
}

fn seconds(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
        .unwrap_or_else(|| panic!("{what} is not a number of seconds: {value}"))
}

fn containers(deployment: &Value) -> &Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("a Deployment has containers")
}

/// A container's environment: the ConfigMap it imports, then its own `env` values.
fn environment(
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
fn pre_stop_seconds(container: &Value) -> u64 {
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

#[test]
fn termination_grace_outlasts_the_pre_stop_pause_and_the_drain() {
    let manifests = kubernetes_manifests();
    let config = config_map(&manifests);
    for manifest in of_kind(&manifests, "Deployment") {
        let deployment = &manifest.resource;
        let grace = seconds(
            &deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            &format!("{} terminationGracePeriodSeconds", manifest.describe()),
        );
        for container in containers(deployment) {
            let env = environment(container, config);
            let bound = |name: &str, default: u64| {
                env.get(name).map_or(default, |value| seconds(value, name))
            };
            let drain = bound("KEEL_SHUTDOWN_GRACE_SECS", DEFAULT_SHUTDOWN_GRACE_SECS).max(bound(
                "KEEL_SHUTDOWN_TIMEOUT_SECS",
                DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            ));
            let pause = pre_stop_seconds(container);
            assert!(
                grace > pause + drain,
                "{}: terminationGracePeriodSeconds {grace} must exceed preStop {pause} s + drain {drain} s",
                manifest.describe()
            );
        }
    }
}

#[test]
fn the_projector_autoscaler_is_bounded_by_the_partition_count() {
    let manifests = kubernetes_manifests();
    let partitions = seconds(
        &config_map(&manifests)["KEEL_TOPIC_PARTITIONS"],
        "KEEL_TOPIC_PARTITIONS",
    );
    let autoscaler = find(&manifests, "HorizontalPodAutoscaler", "projections");
    assert_eq!(
        autoscaler["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "projections"})
    );
    assert_eq!(
        autoscaler["spec"]["maxReplicas"].as_u64(),
        Some(partitions),
        "projectors past the partition count would sit idle in their consumer groups"
    );
    let min = autoscaler["spec"]["minReplicas"].as_u64().unwrap_or(1);
    assert!(min >= 1 && min <= partitions, "minReplicas {min}");
    assert!(
        find(&manifests, "Deployment", "projections")["spec"]["replicas"].is_null(),
        "the projections Deployment must leave `replicas` to the autoscaler"
    );
}

#[test]
fn every_workload_has_resources_a_disruption_budget_and_the_database_url_from_the_secret() {
    let manifests = kubernetes_manifests();
    let config = config_map(&manifests);
    let secret = find(&manifests, "Secret", "keel-database");
    let deployments: BTreeSet<&str> = of_kind(&manifests, "Deployment")
        .map(Manifest::name)
        .collect();
    assert_eq!(deployments, PROCESSES.into_iter().collect());
    assert!(
        !config.contains_key("KEEL_DATABASE_URL"),
        "the database URL holds a password: Secret only"
    );

    for manifest in of_kind(&manifests, "Deployment") {
        let deployment = &manifest.resource;
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let selector = deployment["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("selector.matchLabels");
        assert!(
            selector.iter().all(|(key, value)| &labels[key] == value),
            "{}: the selector does not match the pod labels",
            manifest.describe()
        );
        let budgets = of_kind(&manifests, "PodDisruptionBudget")
            .filter(|budget| {
                budget.resource["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|matching| {
                        matching.iter().all(|(key, value)| &labels[key] == value)
                    })
            })
            .count();
        assert_eq!(
            budgets,
            1,
            "{}: PodDisruptionBudgets covering it",
            manifest.describe()
        );

        for container in containers(deployment) {
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        container["resources"][bound][resource].is_string(),
                        "{}: no resources.{bound}.{resource}",
                        manifest.describe()
                    );
                }
            }
            let url = &environment(container, config)["KEEL_DATABASE_URL"];
            let reference = &url["secretKeyRef"];
            assert_eq!(
                reference["name"],
                "keel-database",
                "{}: KEEL_DATABASE_URL must come from the Secret",
                manifest.describe()
            );
            let key = reference["key"].as_str().unwrap_or_default();
            assert!(
                secret["stringData"][key].is_string() || secret["data"][key].is_string(),
                "{}: the Secret has no key {key:?}",
                manifest.describe()
            );
            let security = &container["securityContext"];
            assert_eq!(
                security["allowPrivilegeEscalation"],
                false,
                "{}",
                manifest.describe()
            );
            assert_eq!(
                security["readOnlyRootFilesystem"],
                true,
                "{}",
                manifest.describe()
            );
        }
    }
}

#[test]
fn the_http_services_are_probed_exposed_and_routed() {
    let manifests = kubernetes_manifests();
    for (name, port) in HTTP_SERVICES {
        let deployment = find(&manifests, "Deployment", name);
        let container = &containers(deployment)[0];
        assert_eq!(
            container["ports"][0]["containerPort"].as_u64(),
            Some(port),
            "{name}"
        );
        let port_name = container["ports"][0]["name"].clone();
        let config = config_map(&manifests);
        assert_eq!(
            environment(container, config)["KEEL_HTTP_ADDR"],
            format!("0.0.0.0:{port}"),
            "{name} must listen beyond loopback"
        );
        for (probe, path) in [
            ("startupProbe", "/health/live"),
            ("livenessProbe", "/health/live"),
            ("readinessProbe", "/health/ready"),
        ] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{name} {probe}");
            assert_eq!(
                container[probe]["httpGet"]["port"], port_name,
                "{name} {probe}"
            );
        }
        let service = find(&manifests, "Service", name);
        assert_eq!(
            service["spec"]["ports"][0]["targetPort"], port_name,
            "{name}"
        );
        assert_eq!(service["spec"]["ports"][0]["name"], port_name, "{name}");
    }

    let ingress = find(&manifests, "Ingress", "keel");
    let rules = ingress["spec"]["rules"].as_array().expect("ingress rules");
    assert_eq!(rules.len(), 1, "both APIs under one host");
    let backends: BTreeSet<String> = rules[0]["http"]["paths"]
        .as_array()
        .expect("ingress paths")
        .iter()
        .map(|path| {
            let backend = &path["backend"]["service"];
            let service_name = backend["name"].as_str().unwrap_or_default();
            let service = find(&manifests, "Service", service_name);
            assert!(
                service["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|port| port["name"] == backend["port"]["name"]),
                "the ingress routes to a port {} that Service {service_name} does not have",
                backend["port"]["name"]
            );
            service_name.to_owned()
        })
        .collect();
    assert_eq!(
        backends,
        HTTP_SERVICES
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect()
    );
}

#[test]
fn the_kustomization_applies_every_manifest_and_renames_the_one_image() {
    let path = deploy_dir().join("k8s").join("kustomization.yaml");
    let kustomization = yaml_documents(&read(&path), "kustomization.yaml").remove(0);
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization resources")
        .iter()
        .map(|resource| resource.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        listed,
        kubernetes_files(),
        "kustomization.yaml resources vs files in deploy/k8s"
    );

    let manifests = kubernetes_manifests();
    let namespace = kustomization["namespace"].as_str().expect("a namespace");
    for manifest in &manifests {
        if manifest.kind() == "Namespace" {
            assert_eq!(manifest.name(), namespace);
        } else {
            assert_eq!(
                manifest.resource["metadata"]["namespace"],
                namespace,
                "{}: also applicable without kustomize",
                manifest.describe()
            );
        }
    }
    let image = kustomization["images"][0]["name"]
        .as_str()
        .expect("an image override");
    for manifest in of_kind(&manifests, "Deployment") {
        for container in containers(&manifest.resource) {
            let reference = container["image"].as_str().unwrap_or_default();
            assert_eq!(
                reference.split(':').next(),
                Some(image),
                "{}: the kustomization's image override would not apply",
                manifest.describe()
            );
        }
    }
}

#[test]
fn compose_runs_every_process_with_health_checks_and_room_to_drain() {
    let compose = compose_file();
    let services = compose["services"].as_object().expect("services");
    for infrastructure in ["postgres", "kafka", "schema-registry"] {
        assert!(
            !services[infrastructure]["healthcheck"].is_null(),
            "{infrastructure} needs a healthcheck: the platform waits for it"
        );
    }
    for process in PROCESSES {
        let service = &services[process];
        assert_eq!(service["command"], json!([process]), "{process}");
        let env = &service["environment"];
        assert!(
            env["KEEL_DATABASE_URL"].is_string(),
            "{process}: no database URL"
        );
        let drain = [
            ("KEEL_SHUTDOWN_GRACE_SECS", DEFAULT_SHUTDOWN_GRACE_SECS),
            ("KEEL_SHUTDOWN_TIMEOUT_SECS", DEFAULT_SHUTDOWN_TIMEOUT_SECS),
        ]
        .into_iter()
        .map(|(name, default)| {
            if env[name].is_null() {
                default
            } else {
                seconds(&env[name], name)
            }
        })
        .max()
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS);
        let stop = service["stop_grace_period"].as_str().unwrap_or("10s");
        let stop_seconds = stop
            .strip_suffix('s')
            .and_then(|number| number.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{process}: stop_grace_period {stop:?}: use whole seconds"));
        assert!(
            stop_seconds > drain,
            "{process}: stop_grace_period {stop} must exceed the drain of {drain} s"
        );
        for dependency in service["depends_on"].as_object().into_iter().flatten() {
            assert!(
                services.contains_key(dependency.0),
                "{process} depends on {}",
                dependency.0
            );
        }
    }
    for (name, port) in HTTP_SERVICES {
        let service = &services[name];
        assert_eq!(
            service["environment"]["KEEL_HTTP_ADDR"],
            format!("0.0.0.0:{port}")
        );
        let check = service["healthcheck"]["test"].to_string();
        assert!(
            check.contains("/health/ready") && check.contains(&port.to_string()),
            "{name}: the healthcheck must ask /health/ready on {port}: {check}"
        );
    }
}

#[test]
fn the_image_ships_every_process_the_manifests_run() {
    let dockerfile = read(&deploy_dir().join("docker").join("Dockerfile"));
    let shipped: BTreeSet<&str> = dockerfile
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("&& for bin in ")
                .and_then(|rest| rest.split(';').next())
        })
        .expect("the Dockerfile copies its binaries with `&& for bin in ...; do`")
        .split_whitespace()
        .collect();

    // Each shipped binary is one the workspace builds: `<crate>/src/main.rs` or a
    // `src/bin/<name>.rs` of a process crate.
    let root = repo_root();
    for binary in &shipped {
        let built = PROCESS_CRATES.iter().any(|krate| {
            (*krate == *binary && root.join(krate).join("src/main.rs").is_file())
                || root
                    .join(krate)
                    .join("src/bin")
                    .join(format!("{binary}.rs"))
                    .is_file()
        });
        assert!(
            built,
            "the Dockerfile copies {binary}, which no crate builds"
        );
    }

    let manifests = kubernetes_manifests();
    let mut commands: Vec<(String, String)> = of_kind(&manifests, "Deployment")
        .flat_map(|manifest| {
            containers(&manifest.resource).iter().map(move |container| {
                (
                    manifest.describe(),
                    container["command"][0]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
        })
        .collect();
    let compose = compose_file();
    for (name, service) in compose["services"].as_object().expect("services") {
        if service["image"] == "keel:dev" {
            let command = service["command"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            commands.push((format!("docker-compose.yml {name}"), command));
        }
    }
    for (workload, command) in &commands {
        assert!(
            shipped.contains(command.as_str()),
            "{workload} runs {command:?}, which the image does not ship ({shipped:?})"
        );
    }
    let run: BTreeSet<&str> = commands
        .iter()
        .map(|(_, command)| command.as_str())
        .collect();
    assert_eq!(
        run,
        PROCESSES.into_iter().collect(),
        "processes run by the manifests"
    );
}

// ---------------------------------------------------------------------------------------
// Security and operations

/// The verification key variables of the APIs: (inline, file), as `ops::auth` reads them.
const AUTH_KEY_VARIABLES: [(&str, &str); 2] = [
    ("KEEL_AUTH_HS256_SECRET", "KEEL_AUTH_HS256_SECRET_FILE"),
    (
        "KEEL_AUTH_RS256_PUBLIC_KEY",
        "KEEL_AUTH_RS256_PUBLIC_KEY_FILE",
    ),
];
/// The saga's token variables: (inline, file).
const SAGA_TOKEN_VARIABLES: (&str, &str) = (
    "KEEL_SAGA_COMMAND_API_TOKEN",
    "KEEL_SAGA_COMMAND_API_TOKEN_FILE",
);
/// Where each worker serves `/metrics` and `/health/live` (`KEEL_METRICS_ADDR`) in a container.
const WORKER_METRICS_PORTS: [(&str, u64); 3] = [
    ("outbox-relay", 9101),
    ("saga", 9102),
    ("projections", 9103),
];
/// The actor of the saga's commands (README.md), the subject of its token.
const SAGA_SUBJECT: &str = "saga:order-fulfilment";
/// A usable RSA public key (its private half is discarded): what an operator puts in place
/// of the placeholder.
const TEST_RSA_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuZqkK2LtBlDEHYOAGVpF
FkWi9netnkzfD5pad51xVvvW/ZJGZbxkXCZA880lqRyLG2P5U7tiCxD/fnNe8CUc
vyIxzg4HMlQg4OhoxMzZVMPr7s5ZKVCgkwGSQbH0fB+jHbSBNLPrjUn1vgIvp1Q0
b+/SK8TshppbdG2SI0BQQadDpr8s8CYBGbWfqZEhyjFBNxHYN04Ug/0V30Fo7x5P
KlTHcnhAfd+Exo86VbIdJt3XMFoNRZ1ynb3FdqkPrQKoTln15wczk+XR/88rm65T
kGj+S/GkJfkIa6PI4dwwqalxbF3bNe5+mc3sJfTM5c30LcLdlIcRkOad9tfLkkOX
dwIDAQAB
-----END PUBLIC KEY-----
";
/// A usable HS256 secret (32 bytes or more).
const TEST_HS256_SECRET: &str = "a-test-hs256-secret-that-is-at-least-32-bytes";

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Where a secret comes from in a Kubernetes container: (Secret name, key).
type SecretSource = (String, String);

/// The Secret and key behind the file `path`, if `path` lies in a Secret volume mounted in
/// `container` (the volume's `items` remap keys to file names).
fn mounted_secret(deployment: &Value, container: &Value, path: &str) -> Option<SecretSource> {
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array()?;
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find_map(|mount| {
            let dir = mount["mountPath"].as_str()?.trim_end_matches('/');
            let file = path.strip_prefix(dir)?.strip_prefix('/')?;
            let volume = volumes
                .iter()
                .find(|volume| volume["name"] == mount["name"])?;
            let secret = &volume["secret"];
            let key = match secret["items"].as_array() {
                Some(items) => items
                    .iter()
                    .find(|item| item["path"] == file)?
                    .get("key")?
                    .as_str()?,
                None => file,
            };
            Some((secret["secretName"].as_str()?.to_owned(), key.to_owned()))
        })
}

/// A Secret's value as written in the manifest (`stringData`; `data` is base64 and only
/// checked for presence).
fn secret_value<'a>(manifests: &'a [Manifest], (name, key): &SecretSource) -> Option<&'a str> {
    let secret = find(manifests, "Secret", name);
    assert!(
        secret["stringData"][key].is_string() || secret["data"][key].is_string(),
        "Secret {name} has no key {key:?}"
    );
    secret["stringData"][key].as_str()
}

/// How a Kubernetes container receives a secret given inline as `inline` or as a file in
/// `file_var`: (the variable set, its Secret source), or `None` if neither is set. Panics
/// when both are set or the value is written into the manifest.
fn secret_variable(
    what: &str,
    deployment: &Value,
    container: &Value,
    env: &BTreeMap<String, Value>,
    (inline, file_var): (&'static str, &'static str),
) -> Option<(&'static str, SecretSource)> {
    let inline_source = env.get(inline).map(|value| {
        let reference = &value["secretKeyRef"];
        let (Some(name), Some(key)) = (reference["name"].as_str(), reference["key"].as_str())
        else {
            panic!("{what}: {inline} is written into the manifest; it must come from a Secret");
        };
        (inline, (name.to_owned(), key.to_owned()))
    });
    let file_source = env.get(file_var).map(|path| {
        let path = path
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {file_var} must be a literal path: {path}"));
        let source = mounted_secret(deployment, container, path).unwrap_or_else(|| {
            panic!("{what}: {file_var}={path} is not a file of a mounted Secret volume")
        });
        (file_var, source)
    });
    assert!(
        inline_source.is_none() || file_source.is_none(),
        "{what}: both {inline} and {file_var} are set (the binary refuses that)"
    );
    inline_source.or(file_source)
}

/// What `ops::auth` makes of `env` (literal values only) with the key variable `variable`
/// holding `key`: the value itself, or the path of a file holding it for a `*_FILE`
/// variable. This is the code the APIs run at start-up.
fn auth_settings(
    env: &BTreeMap<String, String>,
    variable: &str,
    key: &str,
    scratch: &str,
) -> Result<ops::auth::AuthSettings, ops::ConfigError> {
    let mut env = env.clone();
    let file = variable.ends_with("_FILE").then(|| {
        let path = env::temp_dir().join(format!(
            "keel-deploy-test-{}-{scratch}-{variable}",
            std::process::id()
        ));
        fs::write(&path, key).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        path
    });
    let value = file
        .as_ref()
        .map_or_else(|| key.to_owned(), |path| path.display().to_string());
    env.insert(variable.to_owned(), value);
    let settings = ops::auth::AuthSettings::from_lookup(&|name| env.get(name).cloned());
    if let Some(path) = file {
        let _ = fs::remove_file(path);
    }
    settings
}

fn literal_values(env: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|(name, value)| Some((name.clone(), text(value)?)))
        .collect()
}

/// Every Secret a Deployment's pods can read: volumes and `secretKeyRef`s.
fn secrets_used(deployment: &Value) -> BTreeSet<String> {
    let spec = &deployment["spec"]["template"]["spec"];
    let volumes = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|volume| volume["secret"]["secretName"].as_str());
    let references = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|container| container["env"].as_array().into_iter().flatten())
        .filter_map(|variable| variable["valueFrom"]["secretKeyRef"]["name"].as_str());
    volumes.chain(references).map(str::to_owned).collect()
}

#[test]
fn both_apis_require_tokens_verified_with_a_key_from_a_secret() {
    let manifests = kubernetes_manifests();
    let config = config_map(&manifests);
    let mut key_secrets = BTreeSet::new();
    for (name, _) in HTTP_SERVICES {
        let deployment = find(&manifests, "Deployment", name);
        let container = &containers(deployment)[0];
        let env = environment(container, config);
        assert!(
            env.get("KEEL_AUTH").is_none_or(|mode| mode == "jwt"),
            "{name}: KEEL_AUTH={} — a deployed API must require tokens",
            env["KEEL_AUTH"]
        );
        let keys: Vec<(&str, SecretSource)> = AUTH_KEY_VARIABLES
            .into_iter()
            .filter_map(|pair| secret_variable(name, deployment, container, &env, pair))
            .collect();
        assert_eq!(
            keys.len(),
            1,
            "{name}: exactly one verification key (HS256 or RS256), got {keys:?}"
        );
        let (variable, source) = &keys[0];
        key_secrets.insert(source.0.clone());
        let literal = literal_values(&env);

        // As shipped, the key is a placeholder: start-up must refuse it rather than run
        // with a key that anyone can read in this repository.
        if let Some(shipped) = secret_value(&manifests, source) {
            let refused = auth_settings(&literal, variable, shipped, name);
            assert!(
                refused.is_err(),
                "{name}: the placeholder in Secret {}/{} is a usable key: {refused:?}",
                source.0,
                source.1
            );
        }
        // With a real key of the same kind in its place, the API starts with tokens
        // required, bound to an issuer and an audience.
        let usable = if variable.contains("RS256") {
            TEST_RSA_PUBLIC_KEY
        } else {
            TEST_HS256_SECRET
        };
        match auth_settings(&literal, variable, usable, name) {
            Ok(ops::auth::AuthSettings::Jwt(jwt)) => {
                let rs256 = matches!(jwt.key, ops::auth::JwtKey::Rs256PublicKeyPem(_));
                assert_eq!(rs256, variable.contains("RS256"), "{name}: {variable}");
                assert!(
                    jwt.issuer.is_some() && jwt.audience.is_some(),
                    "{name}: set KEEL_AUTH_ISSUER and KEEL_AUTH_AUDIENCE, or any token the \
                     key signed is accepted"
                );
            }
            other => panic!("{name}: with a real key, authentication is not on: {other:?}"),
        }

        let lookup = |variable: &str| literal.get(variable).cloned();
        assert!(
            ops::rate_limit::RateLimitSettings::from_lookup(&lookup)
                .unwrap_or_else(|error| panic!("{name}: {error}"))
                .is_some(),
            "{name}: rate limiting is off (KEEL_RATE_LIMIT_PER_SECOND=0)"
        );
    }

    // The verification key stays with the APIs: an HS256 key would let anyone else who
    // reads it mint tokens for every role.
    for manifest in of_kind(&manifests, "Deployment") {
        if HTTP_SERVICES
            .iter()
            .any(|(name, _)| *name == manifest.name())
        {
            continue;
        }
        let shared: Vec<_> = secrets_used(&manifest.resource)
            .intersection(&key_secrets)
            .cloned()
            .collect();
        assert!(
            shared.is_empty(),
            "{}: reads the APIs' verification key Secret {shared:?}",
            manifest.describe()
        );
    }
}

#[test]
fn the_saga_sends_a_token_from_a_secret_to_the_command_api_service() {
    let manifests = kubernetes_manifests();
    let config = config_map(&manifests);
    let deployment = find(&manifests, "Deployment", "saga");
    let container = &containers(deployment)[0];
    let env = environment(container, config);
    let (variable, source) =
        secret_variable("saga", deployment, container, &env, SAGA_TOKEN_VARIABLES).unwrap_or_else(
            || {
                panic!(
                    "saga: no {} or {}: the command API would refuse its commands",
                    SAGA_TOKEN_VARIABLES.0, SAGA_TOKEN_VARIABLES.1
                )
            },
        );
    let token = secret_value(&manifests, &source);
    assert!(
        token.is_some_and(|token| !token.trim().is_empty()),
        "saga: {variable} from Secret {}/{} is empty",
        source.0,
        source.1
    );

    let url = env["KEEL_COMMAND_API_URL"]
        .as_str()
        .expect("KEEL_COMMAND_API_URL is a literal");
    let service = find(&manifests, "Service", "command-api");
    let port = service["spec"]["ports"][0]["port"]
        .as_u64()
        .expect("command-api Service port");
    let authority = url
        .strip_prefix("http://")
        .expect("KEEL_COMMAND_API_URL is http:// inside the cluster");
    assert!(
        authority.starts_with("command-api")
            && authority
                .trim_end_matches('/')
                .ends_with(&format!(":{port}")),
        "saga: KEEL_COMMAND_API_URL={url} is not the command-api Service on port {port}"
    );
}

#[test]
fn every_pod_is_scraped_where_its_process_serves_metrics() {
    let manifests = kubernetes_manifests();
    let config = config_map(&manifests);
    let listeners = HTTP_SERVICES
        .iter()
        .map(|(name, port)| (*name, ("http", "KEEL_HTTP_ADDR", *port)))
        .chain(
            WORKER_METRICS_PORTS
                .iter()
                .map(|(name, port)| (*name, ("metrics", "KEEL_METRICS_ADDR", *port))),
        );
    let mut checked = BTreeSet::new();
    for (name, (port_name, address_variable, port)) in listeners {
        let deployment = find(&manifests, "Deployment", name);
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}");
        assert_eq!(annotations["prometheus.io/path"], "/metrics", "{name}");
        assert_eq!(
            annotations["prometheus.io/port"],
            port.to_string(),
            "{name}: scraped on another port than its {port_name} port"
        );
        let container = &containers(deployment)[0];
        let declared = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|declared| declared["name"] == port_name)
            .unwrap_or_else(|| panic!("{name}: no container port named {port_name}"));
        assert_eq!(declared["containerPort"].as_u64(), Some(port), "{name}");
        assert_eq!(
            environment(container, config)
                .get(address_variable)
                .and_then(Value::as_str),
            Some(format!("0.0.0.0:{port}").as_str()),
            "{name}: {address_variable} must listen on the pod's address, port {port} \
             (the binary's default is loopback)"
        );
        if port_name == "metrics" {
            let probe = &container["livenessProbe"]["httpGet"];
            assert_eq!(probe["path"], "/health/live", "{name} livenessProbe");
            assert_eq!(probe["port"], "metrics", "{name} livenessProbe");
        }
        checked.insert(name);
    }
    let deployments: BTreeSet<&str> = of_kind(&manifests, "Deployment")
        .map(Manifest::name)
        .collect();
    assert_eq!(checked, deployments, "Deployments checked for scraping");
}

/// Every route path of an API, from the `path = "..."` of its handlers' OpenAPI
/// attributes, plus the two routes mounted without one.
fn api_routes(krate: &str) -> BTreeSet<String> {
    let dir = repo_root().join(krate).join("src").join("http");
    let mut routes: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .flat_map(|path| {
            read(&path)
                .split("path = \"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next().map(str::to_owned))
                .filter(|route| route.starts_with('/'))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        routes.len() >= 10,
        "{krate}: found only {routes:?} in {}",
        dir.display()
    );
    routes.extend(["/openapi.json".to_owned(), "/metrics".to_owned()]);
    routes
}

/// `/orders/{order_id}/lines/{sku}` → `/orders/x1/lines/x2`.
fn concrete(route: &str) -> String {
    let mut parameter = 0;
    route
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                parameter += 1;
                format!("x{parameter}")
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_ingress_routes_every_api_route_but_not_metrics_or_probes() {
    let manifests = kubernetes_manifests();
    let ingress = find(&manifests, "Ingress", "keel");
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/use-regex"], "true",
        "the paths are regular expressions"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/rewrite-target"], "/$1",
        "the rewrite sends the first group's text"
    );
    let paths = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .expect("ingress paths");
    let pattern_of = |service: &str| -> String {
        paths
            .iter()
            .find(|path| path["backend"]["service"]["name"] == service)
            .and_then(|path| path["path"].as_str())
            .unwrap_or_else(|| panic!("the ingress has no path to {service}"))
            .to_owned()
    };

    type AccessRule = fn(&reqwest::Method, &str) -> ops::auth::Access;
    let apis: [(&str, &str, AccessRule); 2] = [
        ("command-api", "/api/commands", command_api::http::access),
        ("query-api", "/api/queries", query_api::http::access),
    ];
    for (service, prefix, access) in apis {
        let pattern = pattern_of(service);
        // With `rewrite-target: /$1`, the API receives exactly the text after the prefix
        // when the pattern is `<prefix>/(...)$` with one capturing group.
        let body = pattern
            .strip_prefix(&format!("{prefix}/("))
            .and_then(|rest| rest.strip_suffix(")$"))
            .unwrap_or_else(|| panic!("{service}: path {pattern:?} is not {prefix}/(...)$"));
        assert!(
            !body.replace("(?:", "").contains('('),
            "{service}: {pattern:?} has more than one capturing group"
        );
        // nginx matches `location ~*` case-insensitively from the start of the normalised
        // path (`..` and `//` resolved before matching); the JSON Schema `pattern` keyword
        // evaluates the same expression here.
        let matcher = jsonschema::options()
            .build(&json!({"type": "string", "pattern": format!("(?i)^{pattern}")}))
            .unwrap_or_else(|error| panic!("{service}: {pattern:?} is not a regex: {error}"));
        let routes = api_routes(service);
        assert!(
            access(&reqwest::Method::GET, "/metrics") == ops::auth::Access::Public,
            "{service}: /metrics is public on the pod; that is why the ingress must not route it"
        );
        for route in routes {
            let public = access(&reqwest::Method::GET, &route) == ops::auth::Access::Public;
            let should_route = !public || route == "/openapi.json";
            for path in [concrete(&route), concrete(&route).to_uppercase()] {
                let external = format!("{prefix}{path}");
                assert_eq!(
                    matcher.is_valid(&json!(external)),
                    should_route,
                    "{service}: {external} (route {route}, public: {public}) is {}routed by {pattern:?}",
                    if should_route { "not " } else { "" }
                );
            }
        }
        for outside in [
            format!("{prefix}/metrics"),
            format!("{prefix}/metrics/"),
            format!("{prefix}/health/live"),
            format!("{prefix}/ordersmetrics"),
            format!("{prefix}/"),
            prefix.to_owned(),
            "/metrics".to_owned(),
        ] {
            assert!(
                !matcher.is_valid(&json!(outside)),
                "{service}: {outside} must not pass the ingress ({pattern:?})"
            );
        }
    }
}

/// Where a Compose service's `/run/secrets/...` file comes from: the host file of the
/// top-level secret mounted there, if the service has it.
fn compose_secret_file(compose: &Value, service: &Value, path: &str) -> Option<PathBuf> {
    service["secrets"]
        .as_array()?
        .iter()
        .find_map(|entry| {
            let (source, target) = match entry {
                Value::String(source) => (source.as_str(), source.as_str()),
                _ => {
                    let source = entry["source"].as_str()?;
                    (source, entry["target"].as_str().unwrap_or(source))
                }
            };
            let mounted = if target.starts_with('/') {
                target.to_owned()
            } else {
                format!("/run/secrets/{target}")
            };
            (mounted == path).then_some(source)
        })
        .and_then(|source| compose["secrets"][source]["file"].as_str())
        .map(|file| deploy_dir().join(file))
}

#[test]
fn compose_runs_the_apis_with_authentication_and_gives_the_saga_a_token_they_accept() {
    let compose = compose_file();
    let services = &compose["services"];
    let environment_of = |name: &str| -> BTreeMap<String, String> {
        services[name]["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: environment as a map"))
            .iter()
            .filter_map(|(variable, value)| Some((variable.clone(), text(value)?)))
            .collect()
    };

    let mut verifiers = Vec::new();
    let mut key_secrets = BTreeSet::new();
    for (name, _) in HTTP_SERVICES {
        let service = &services[name];
        let mut env = environment_of(name);
        assert!(
            env.get("KEEL_AUTH").is_none_or(|mode| mode == "jwt"),
            "{name}: KEEL_AUTH={:?} — the Compose platform must require tokens",
            env["KEEL_AUTH"]
        );
        let files: Vec<&str> = AUTH_KEY_VARIABLES
            .iter()
            .map(|(_, file)| *file)
            .filter(|file| env.contains_key(*file))
            .collect();
        assert_eq!(
            files.len(),
            1,
            "{name}: exactly one key, as a file from `secrets:`, got {files:?}"
        );
        for (inline, _) in AUTH_KEY_VARIABLES {
            assert!(
                !env.contains_key(inline),
                "{name}: {inline} inline; use the file"
            );
        }
        let path = env[files[0]].clone();
        let host_file = compose_secret_file(&compose, service, &path)
            .unwrap_or_else(|| panic!("{name}: {}={path} is no secret of the service", files[0]));
        assert!(
            host_file.is_file(),
            "{name}: {} is missing",
            host_file.display()
        );
        key_secrets.insert(path.clone());
        env.insert(files[0].to_owned(), host_file.display().to_string());
        let settings = ops::auth::AuthSettings::from_lookup(&|variable| env.get(variable).cloned())
            .unwrap_or_else(|error| panic!("{name}: the API would not start: {error}"));
        let ops::auth::AuthSettings::Jwt(jwt) = settings else {
            panic!("{name}: authentication is off");
        };
        verifiers.push((name, ops::auth::Verifier::new(&jwt).expect("a usable key")));
        assert!(
            ops::rate_limit::RateLimitSettings::from_lookup(&|variable| env.get(variable).cloned())
                .unwrap_or_else(|error| panic!("{name}: {error}"))
                .is_some(),
            "{name}: rate limiting is off"
        );
    }

    // The saga's token is accepted by the command API (signature, expiry, subject) and
    // grants what its commands need.
    let saga = &services["saga"];
    let env = environment_of("saga");
    let path = env.get(SAGA_TOKEN_VARIABLES.1).unwrap_or_else(|| {
        panic!(
            "saga: no {}: its commands would be refused",
            SAGA_TOKEN_VARIABLES.1
        )
    });
    assert!(
        !env.contains_key(SAGA_TOKEN_VARIABLES.0),
        "saga: inline token"
    );
    let token_file = compose_secret_file(&compose, saga, path)
        .unwrap_or_else(|| panic!("saga: {path} is no secret of the service"));
    let token = read(&token_file);
    let (_, command_api) = verifiers
        .iter()
        .find(|(name, _)| *name == "command-api")
        .expect("command-api verifier");
    let principal = command_api
        .verify(token.trim())
        .unwrap_or_else(|error| panic!("the command API refuses the saga's token: {error}"));
    assert_eq!(principal.subject, SAGA_SUBJECT);
    assert!(
        principal.has(ops::auth::Role::Writer),
        "the saga's token lacks the writer role: {principal:?}"
    );

    // The signing key is for the APIs only: with it, the saga (or anything else) could
    // mint tokens for every role.
    for (name, service) in services.as_object().expect("services") {
        if HTTP_SERVICES.iter().any(|(api, _)| api == name) {
            continue;
        }
        for path in &key_secrets {
            assert!(
                compose_secret_file(&compose, service, path).is_none(),
                "{name} mounts the APIs' key {path}"
            );
        }
    }

    // Workers: metrics on the container's address, published on the host's loopback, and
    // a health check on the same listener.
    for (name, port) in WORKER_METRICS_PORTS {
        let service = &services[name];
        assert_eq!(
            environment_of(name).get("KEEL_METRICS_ADDR"),
            Some(&format!("0.0.0.0:{port}")),
            "{name}"
        );
        assert!(
            service["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|published| published == &json!(format!("127.0.0.1:{port}:{port}"))),
            "{name}: metrics port {port} not published on 127.0.0.1"
        );
        let check = service["healthcheck"]["test"].to_string();
        assert!(
            check.contains("/health/live") && check.contains(&port.to_string()),
            "{name}: the healthcheck must ask /health/live on {port}: {check}"
        );
    }
}
