use super::*;
use crate::types::{HealthConfig, Mode, MountKind, Ulimit};
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
            "Ignoring depends_on without condition: service_healthy (a swarm starts services together): nginx"
        ]
    );
    let secret = &spec.services[2].secrets[0];
    assert_eq!(
        (secret.name.as_str(), secret.target.as_str(), secret.mode),
        ("db_password", "db_password", 0o444)
    );
}

#[test]
fn secrets_and_configs_take_the_stack_name_unless_external_or_named() {
    let doc = json!({
        "services": {"a": {"image": "x",
            "secrets": [{"source": "ext"}, {"source": "own", "target": "pw", "uid": "33", "mode": 256}],
            "configs": [{"source": "conf"}]}},
        "secrets": {"ext": {"external": true, "name": "shared"}, "own": {"file": "/tmp/pw"}},
        "configs": {"conf": {"file": "/tmp/c", "name": "app.conf"}}
    });
    let spec = convert("s", &doc).unwrap();
    let names: Vec<(&str, bool)> = spec
        .data
        .iter()
        .map(|d| (d.name.as_str(), d.external))
        .collect();
    assert_eq!(
        names,
        [("shared", true), ("s_own", false), ("app.conf", false)]
    );
    assert_eq!(spec.data[1].labels[STACK_NAMESPACE], "s");
    let a = &spec.services[0];
    assert_eq!(a.secrets[0].name, "shared");
    assert_eq!(
        (
            a.secrets[1].name.as_str(),
            a.secrets[1].target.as_str(),
            a.secrets[1].uid.as_str(),
            a.secrets[1].mode
        ),
        ("s_own", "pw", "33", 0o400)
    );
    assert_eq!(
        (a.configs[0].name.as_str(), a.configs[0].target.as_str()),
        ("app.conf", "conf")
    );
    let undefined = json!({"services": {"a": {"image": "x", "secrets": [{"source": "nope"}]}}});
    assert_eq!(
        convert("s", &undefined).unwrap_err(),
        "service a refers to undefined secret nope: invalid compose project"
    );
}

mod planning {
    use super::*;
    use crate::keyring::Keyring;
    use crate::stack::plan::{plan, Inputs, COMPOSE_KEY};
    use crate::state::{Command, State};
    use std::collections::BTreeMap;

    fn doc() -> Value {
        json!({
            "services": {"a": {"image": "x", "secrets": [{"source": "own"}]}},
            "secrets": {"own": {"file": "/f"}}
        })
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("id{n}")
        }
    }

    #[test]
    fn a_stack_secret_is_created_sealed_then_rotated_when_its_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::load(dir.path()).unwrap();
        keyring.create().unwrap();
        let spec = convert("s", &doc()).unwrap();
        let mut st = State::default();
        let files = BTreeMap::from([("/f".to_string(), b"pw1".to_vec())]);
        let inputs = Inputs {
            files: &files,
            keyring: &keyring,
        };
        let p = plan(&st, &spec, &inputs, false, 1, &mut ids()).unwrap();
        assert_eq!(p.data_created, [(SecretKind::Secret, "s_own".to_string())]);
        let sec = p
            .commands
            .iter()
            .find_map(|c| match c {
                Command::CreateSecret(s) => Some(s),
                _ => None,
            })
            .unwrap();
        assert_eq!(sec.id, "id2", "IDs come from the planner's source");
        assert_ne!(sec.versions[0].data, b"pw1", "sealed before it is proposed");
        for c in p.commands {
            assert!(st.apply(c).error.is_none());
        }
        let svc = st.service_by_name("s_a").unwrap();
        assert_eq!(svc.spec.secrets[0].version, 1);

        let again = plan(&st, &spec, &inputs, false, 2, &mut ids()).unwrap();
        assert!(
            again.commands.is_empty(),
            "an unchanged file changes nothing: {:?}",
            again.commands
        );

        let files = BTreeMap::from([("/f".to_string(), b"pw2".to_vec())]);
        let inputs = Inputs {
            files: &files,
            keyring: &keyring,
        };
        let p = plan(&st, &spec, &inputs, false, 3, &mut ids()).unwrap();
        assert_eq!(p.data_updated, [(SecretKind::Secret, "s_own".to_string())]);
        assert!(
            p.updated.is_empty(),
            "the new version moves the service by itself"
        );
        for c in p.commands {
            assert!(st.apply(c).error.is_none());
        }
        assert_eq!(
            st.service_by_name("s_a").unwrap().spec.secrets[0].version,
            2
        );
    }

    #[test]
    fn a_missing_external_secret_is_refused_naming_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::load(dir.path()).unwrap();
        let doc = json!({
            "services": {"a": {"image": "x", "secrets": [{"source": "db"}]}},
            "secrets": {"db": {"external": true, "name": "db"}}
        });
        let spec = convert("s", &doc).unwrap();
        let files = BTreeMap::new();
        let inputs = Inputs {
            files: &files,
            keyring: &keyring,
        };
        let err = plan(&State::default(), &spec, &inputs, false, 1, &mut ids()).unwrap_err();
        assert!(
            err.message()
                .starts_with("secret \"db\" is declared as external"),
            "{}",
            err.message()
        );
        assert_eq!(err.metadata().get(COMPOSE_KEY).unwrap(), "secrets.db");
    }
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

#[test]
fn depends_on_service_healthy_orders_the_start_and_other_conditions_are_ignored() {
    let doc = json!({"services": {
        "api": {"image": "x", "depends_on": {"db": {"condition": "service_healthy"}, "cache": {"condition": "service_started"}}},
        "cache": {"image": "x"},
        "db": {"image": "x"}
    }});
    let spec = convert("s", &doc).unwrap();
    assert_eq!(spec.services[0].depends_on, ["s_db"]);
    assert!(
        spec.warnings.iter().any(|w| w.ends_with("together): api")),
        "{:?}",
        spec.warnings
    );
    let bad = json!({"services": {"api": {"image": "x", "depends_on": {"nope": {"condition": "service_healthy"}}}}});
    assert_eq!(
        convert("s", &bad).unwrap_err(),
        "service api depends on undefined service nope: invalid compose project"
    );
}

#[test]
fn container_options_reach_the_spec_and_named_volumes_take_the_stack_name() {
    let doc = json!({
        "services": {"web": {
            "image": "x",
            "entrypoint": ["/bin/sh", "-c"], "user": "33:33", "working_dir": "/srv",
            "hostname": "web-host", "tty": true, "read_only": true, "init": true,
            "stop_signal": "SIGUSR1", "stop_grace_period": "1m30s",
            "labels": {"a": "b"},
            "ulimits": {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}},
            "logging": {"driver": "json-file", "options": {"max-size": "10m"}},
            "tmpfs": ["/run"],
            "volumes": [
                {"type": "volume", "source": "data", "target": "/var/data"},
                {"type": "volume", "source": "shared", "target": "/shared"},
                {"type": "bind", "source": "/etc/hosts", "target": "/h", "read_only": true},
                {"type": "tmpfs", "target": "/cache", "tmpfs": {"size": 1000}}
            ],
            "extra_hosts": ["a:1.2.3.4"]
        }},
        "volumes": {"data": {}, "shared": {"external": true}}
    });
    let spec = convert("s", &doc).unwrap();
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
    let c = &spec.services[0].container;
    assert_eq!(
        c.entrypoint.as_deref(),
        Some(&["/bin/sh".to_string(), "-c".into()][..])
    );
    assert_eq!(
        (c.user.as_deref(), c.working_dir.as_deref()),
        (Some("33:33"), Some("/srv"))
    );
    assert_eq!(c.hostname.as_deref(), Some("web-host"));
    assert!(c.tty && c.read_only && c.init == Some(true));
    assert_eq!(c.stop_grace_period_ms, Some(90_000));
    assert_eq!(c.labels["a"], "b");
    assert_eq!(
        c.ulimits["nproc"],
        Ulimit {
            soft: 65535,
            hard: 65535
        }
    );
    assert_eq!(
        c.ulimits["nofile"],
        Ulimit {
            soft: 20000,
            hard: 40000
        }
    );
    assert_eq!(c.logging.as_ref().unwrap().options["max-size"], "10m");
    let mounts: Vec<(MountKind, &str, &str)> = c
        .mounts
        .iter()
        .map(|m| (m.kind, m.source.as_str(), m.target.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            (MountKind::Tmpfs, "", "/run"),
            (MountKind::Volume, "s_data", "/var/data"),
            (MountKind::Volume, "shared", "/shared"),
            (MountKind::Bind, "/etc/hosts", "/h"),
            (MountKind::Tmpfs, "", "/cache")
        ]
    );
    assert_eq!(c.mounts[4].tmpfs_size_bytes, 1000);
    assert_eq!(c.extra_hosts, ["a:1.2.3.4"]);
}
