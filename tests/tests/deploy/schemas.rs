//! Every manifest against the Kubernetes schemas of the pinned version, the Compose file
//! against the Compose Specification, and both validators rejecting broken documents.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use jsonschema::{Registry, Validator};
use serde_json::{Value, json};

use crate::support::*;

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
