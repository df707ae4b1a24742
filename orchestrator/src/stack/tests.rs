use super::*;
use serde_json::json;

fn tutorial() -> Value {
    json!({
        "version": "3.7",
        "services": {
            "nginx": {
                "image": "nginx", "deploy": {"mode": "global"},
                "ports": [{"mode": "ingress", "target": 80, "published": 8000, "protocol": "tcp"}],
                "depends_on": ["web"]
            },
            "web": {"image": "web", "secrets": [{"source": "db_password"}], "deploy": {"replicas": 2}},
            "redis": {"image": "redis", "deploy": {"replicas": 1}, "build": {"context": "."}}
        },
        "secrets": {"db_password": {"name": "db_password", "external": true}}
    })
}

#[test]
fn a_compose_document_becomes_namespaced_services_on_the_stack_default_network() {
    let spec = convert("demo", &tutorial()).unwrap();
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["demo_nginx", "demo_redis", "demo_web"]);
    let nginx = &spec.services[0];
    assert_eq!(nginx.mode, Mode::Global);
    assert_eq!(nginx.replicas, 0);
    assert_eq!(nginx.ports[0].published, 8000);
    assert_eq!(nginx.labels[STACK_NAMESPACE], "demo");
    assert_eq!(spec.services[2].replicas, 2);
    assert_eq!(spec.networks.len(), 1);
    assert_eq!(spec.networks[0].name, "demo_default");
    assert_eq!(spec.networks[0].labels[STACK_NAMESPACE], "demo");
    let web = &spec.services[2].networks[0];
    assert_eq!(web.target, "demo_default");
    assert_eq!(
        web.aliases,
        ["web"],
        "found by its short name within the stack"
    );
    assert_eq!(
        spec.warnings,
        [
            "Ignoring unsupported options: build",
            "Ignoring secrets (not supported by swarm yet): web"
        ]
    );
}

#[test]
fn declared_and_external_networks_keep_their_names() {
    let doc = json!({
        "services": {"a": {"image": "x", "networks": {"front": {"aliases": ["api"]}, "out": null}}},
        "networks": {"front": {"driver": "overlay", "internal": true}, "out": {"external": true, "name": "shared"}}
    });
    let spec = convert("s", &doc).unwrap();
    assert_eq!(spec.external_networks, ["shared"]);
    assert_eq!(
        spec.networks.len(),
        1,
        "no default network when every service names its own"
    );
    assert!(spec.networks[0].internal);
    let targets: Vec<(&str, Vec<String>)> = spec.services[0]
        .networks
        .iter()
        .map(|n| (n.target.as_str(), n.aliases.clone()))
        .collect();
    assert_eq!(
        targets,
        [
            ("s_front", vec!["a".to_string(), "api".into()]),
            ("shared", vec!["a".to_string()])
        ]
    );
}

#[test]
fn refusals_name_the_service() {
    let no_image = json!({"services": {"a": {"command": ["x"]}}});
    assert!(convert("s", &no_image)
        .unwrap_err()
        .starts_with("Service a has neither an image"));
    let undefined = json!({"services": {"a": {"image": "x", "networks": {"nope": null}}}});
    assert_eq!(
        convert("s", &undefined).unwrap_err(),
        "service a refers to undefined network nope: invalid compose project"
    );
    assert!(convert("bad name!", &tutorial()).is_err());
}

#[test]
fn a_compose_healthcheck_becomes_the_container_healthcheck() {
    let doc = json!({"services": {
        "a": {"image": "x", "healthcheck": {"test": ["CMD-SHELL", "curl -f localhost"], "interval": "1m30s", "retries": 3}},
        "b": {"image": "x", "healthcheck": {"disable": true}},
        "c": {"image": "x", "healthcheck": {"test": ["curl"]}}
    }});
    let err = convert("s", &doc).unwrap_err();
    assert!(
        err.contains("service c: healthcheck.test must start with CMD"),
        "{err}"
    );
    let doc = json!({"services": {
        "a": doc["services"]["a"].clone(),
        "b": doc["services"]["b"].clone()
    }});
    let spec = convert("s", &doc).unwrap();
    let a = spec.services[0].healthcheck.clone().unwrap();
    assert_eq!(a.test, ["CMD-SHELL", "curl -f localhost"]);
    assert_eq!((a.interval_ms, a.retries), (90_000, 3));
    assert_eq!(spec.services[1].healthcheck, Some(HealthConfig::disabled()));
}
