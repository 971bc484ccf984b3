//! What the manifests promise: termination grace longer than the drain, the autoscaler
//! bounded by the partitions, probes, resources, disruption budgets, the database URL from
//! the Secret, and one image shipping every process they run.

use std::collections::BTreeSet;

use serde_json::json;

use crate::support::*;

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
