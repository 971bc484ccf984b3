//! Security and operations: both APIs require tokens verified with a key from a Secret, the
//! saga's token, scraping of every pod, and an ingress that routes every API route (read
//! from the OpenAPI documents) but never `/metrics` or the probes.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::*;

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

/// Every route path of an API, from its OpenAPI document (the same list its router is
/// built from), plus `/metrics`, which the document leaves out.
fn api_routes(krate: &str) -> BTreeSet<String> {
    let document = match krate {
        "command-api" => command_api::http::openapi_document(),
        "query-api" => query_api::http::openapi_document(),
        other => panic!("{other} serves no HTTP API"),
    };
    let mut routes: BTreeSet<String> = document.paths.paths.keys().cloned().collect();
    assert!(routes.len() >= 10, "{krate}: found only {routes:?}");
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
