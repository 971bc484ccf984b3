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
//!   one image that ships every process the manifests run.
//!
//! The schemas are files of registry packages, cached outside the repository: the PyPI
//! package `kubernetes-validate` ships the Kubernetes schemas, the npm package `dclint` the
//! Compose Specification's. `cargo xtask test` installs them; without them every test here
//! fails with the command that installs them by hand.

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
    // `src/bin/<name>.rs` of the three service crates.
    let root = repo_root();
    for binary in &shipped {
        let built = ["command-api", "projections", "query-api"]
            .iter()
            .any(|krate| {
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
