//! What `inspect` prints: the Docker Engine API's shapes (`ID`,
//! `Version.Index`, `Spec.TaskTemplate.ContainerSpec.Image`, ...), so that
//! scripts and templates written for `docker service inspect` read ours.
//! The unit tests hold each shape to bollard's model of Docker's API: what
//! we print must survive a round trip through it unchanged, so every field
//! is one Docker has, of the type Docker gives it.

use crate::types::{
    Millis, Mode, Mount, MountKind, Network, Node, NodeRole, RestartCondition, Secret, Service,
    ServiceSpec, Ulimit, UpdateConfig,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Docker's timestamps: RFC 3339 in UTC with nanoseconds.
fn date(ms: Millis) -> Value {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)))
        .unwrap_or(Value::Null)
}

fn nanos(ms: u64) -> i64 {
    ms as i64 * 1_000_000
}

/// `true` as itself, `false` left out (Go's `omitempty`).
fn flag(b: bool) -> Value {
    if b {
        json!(true)
    } else {
        Value::Null
    }
}

/// A number, 0 left out.
fn nonzero(n: i64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(n)
    }
}

/// A JSON object without its null and empty members, as Go's `omitempty`
/// leaves them out.
fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        let empty = match &v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::String(s) => s.is_empty(),
            _ => false,
        };
        if !empty {
            m.insert(k.to_string(), v);
        }
    }
    Value::Object(m)
}

fn update_config(u: &UpdateConfig) -> Value {
    object(vec![
        ("Parallelism", json!(u.parallelism)),
        ("Delay", json!(nanos(u.delay_ms))),
        ("FailureAction", json!(u.failure_action)),
        ("Monitor", json!(nanos(u.monitor_ms))),
        (
            "MaxFailureRatio",
            json!(f64::from(u.max_failure_permille) / 1000.0),
        ),
        ("Order", json!(u.order)),
    ])
}

fn spec(s: &ServiceSpec) -> Value {
    let c = &s.container;
    let refs = |refs: &[crate::types::SecretRef], id_key: &str, name_key: &str| -> Vec<Value> {
        refs.iter()
            .map(|r| {
                let mut v = json!({
                    "File": {"Name": r.target, "UID": r.uid, "GID": r.gid, "Mode": r.mode},
                });
                v[id_key] = json!(r.id);
                v[name_key] = json!(r.name);
                v
            })
            .collect()
    };
    let health = s.healthcheck.as_ref().map(|h| {
        object(vec![
            ("Test", json!(h.test)),
            ("Interval", json!(nanos(h.interval_ms))),
            ("Timeout", json!(nanos(h.timeout_ms))),
            ("StartPeriod", json!(nanos(h.start_period_ms))),
            ("Retries", json!(h.retries)),
        ])
    });
    let container = object(vec![
        ("Image", json!(s.image)),
        ("Labels", json!(c.labels)),
        ("Command", json!(c.entrypoint)),
        ("Args", json!(s.args)),
        ("Hostname", json!(c.hostname)),
        ("Env", json!(s.env)),
        ("Dir", json!(c.working_dir)),
        ("User", json!(c.user)),
        ("TTY", flag(c.tty)),
        ("OpenStdin", flag(c.stdin_open)),
        ("ReadOnly", flag(c.read_only)),
        ("StopSignal", json!(c.stop_signal)),
        ("StopGracePeriod", json!(c.stop_grace_period_ms.map(nanos))),
        ("HealthCheck", json!(health)),
        ("Hosts", json!(c.extra_hosts)),
        ("Init", json!(c.init)),
        ("Mounts", json!(mounts(&c.mounts))),
        ("Secrets", json!(refs(&s.secrets, "SecretID", "SecretName"))),
        ("Configs", json!(refs(&s.configs, "ConfigID", "ConfigName"))),
        ("Ulimits", json!(ulimits(&c.ulimits))),
    ]);
    let log_driver = c.logging.as_ref().map(|l| {
        object(vec![
            ("Name", json!(l.driver)),
            ("Options", json!(l.options)),
        ])
    });
    let condition = match s.restart.condition {
        RestartCondition::Any => "any",
        RestartCondition::OnFailure => "on-failure",
        RestartCondition::None => "none",
    };
    let resources = object(vec![(
        "Reservations",
        object(vec![
            ("NanoCPUs", nonzero(s.resources.reserve_nano_cpus)),
            ("MemoryBytes", nonzero(s.resources.reserve_memory_bytes)),
        ]),
    )]);
    let preferences: Vec<Value> = s
        .placement
        .preferences
        .iter()
        .map(|p| {
            let label = p.strip_prefix("spread=").unwrap_or(p);
            json!({"Spread": {"SpreadDescriptor": label}})
        })
        .collect();
    let placement = object(vec![
        ("Constraints", json!(s.placement.constraints)),
        ("Preferences", json!(preferences)),
        (
            "MaxReplicas",
            nonzero(s.placement.max_replicas_per_node as i64),
        ),
    ]);
    let networks: Vec<Value> = s
        .networks
        .iter()
        .map(|n| {
            object(vec![
                ("Target", json!(n.target)),
                ("Aliases", json!(n.aliases)),
            ])
        })
        .collect();
    let template = object(vec![
        ("ContainerSpec", container),
        ("Resources", resources),
        (
            "RestartPolicy",
            json!({
                "Condition": condition,
                "Delay": nanos(s.restart.delay_ms),
                "MaxAttempts": s.restart.max_attempts,
            }),
        ),
        ("Placement", placement),
        ("Networks", json!(networks)),
        ("LogDriver", json!(log_driver)),
        ("ForceUpdate", json!(s.force_update)),
    ]);
    let mode = match s.mode {
        Mode::Replicated => json!({"Replicated": {"Replicas": s.replicas}}),
        Mode::Global => json!({"Global": {}}),
    };
    object(vec![
        ("Name", json!(s.name)),
        ("Labels", json!(s.labels)),
        ("TaskTemplate", template),
        ("Mode", mode),
        ("UpdateConfig", update_config(&s.update)),
        ("RollbackConfig", update_config(&s.rollback)),
        ("EndpointSpec", endpoint_spec(s)),
    ])
}

fn mounts(mounts: &[Mount]) -> Vec<Value> {
    mounts
        .iter()
        .map(|m| {
            let kind = match m.kind {
                MountKind::Bind => "bind",
                MountKind::Volume => "volume",
                MountKind::Tmpfs => "tmpfs",
            };
            let tmpfs = (m.kind == MountKind::Tmpfs)
                .then(|| object(vec![("SizeBytes", nonzero(m.tmpfs_size_bytes))]));
            object(vec![
                ("Type", json!(kind)),
                ("Source", json!(m.source)),
                ("Target", json!(m.target)),
                ("ReadOnly", flag(m.read_only)),
                ("TmpfsOptions", json!(tmpfs)),
            ])
        })
        .collect()
}

fn ulimits(ulimits: &BTreeMap<String, Ulimit>) -> Vec<Value> {
    ulimits
        .iter()
        .map(|(name, u)| json!({"Name": name, "Soft": u.soft, "Hard": u.hard}))
        .collect()
}

fn ports(s: &ServiceSpec) -> Vec<Value> {
    s.ports
        .iter()
        .map(|p| {
            json!({
                "Protocol": p.protocol.name(),
                "TargetPort": p.target,
                "PublishedPort": p.published,
                "PublishMode": p.mode.name(),
            })
        })
        .collect()
}

fn endpoint_spec(s: &ServiceSpec) -> Value {
    object(vec![
        ("Mode", json!(s.endpoint_mode)),
        ("Ports", json!(ports(s))),
    ])
}

/// A service; `prefix_len` gives a network's subnet prefix length by ID,
/// as Docker writes a VIP in CIDR form (`10.0.0.2/24`).
pub fn service(s: &Service, prefix_len: impl Fn(&str) -> Option<u8>) -> Value {
    let vips: Vec<Value> = s
        .endpoint
        .vips
        .iter()
        .map(|v| {
            let addr = match prefix_len(&v.network_id) {
                Some(len) => format!("{}/{len}", v.addr),
                None => v.addr.to_string(),
            };
            json!({"NetworkID": v.network_id, "Addr": addr})
        })
        .collect();
    let update = s.update_status.as_ref().map(|u| {
        object(vec![
            ("State", json!(u.state.as_str())),
            ("StartedAt", date(u.started_at)),
            ("CompletedAt", u.completed_at.map_or(Value::Null, date)),
            ("Message", json!(u.message)),
        ])
    });
    object(vec![
        ("ID", json!(s.id)),
        ("Version", json!({"Index": s.meta.version})),
        ("CreatedAt", date(s.meta.created_at)),
        ("UpdatedAt", date(s.meta.updated_at)),
        ("Spec", spec(&s.spec)),
        (
            "PreviousSpec",
            s.previous_spec.as_deref().map_or(Value::Null, spec),
        ),
        (
            "Endpoint",
            object(vec![
                ("Spec", endpoint_spec(&s.spec)),
                ("Ports", json!(ports(&s.spec))),
                ("VirtualIPs", json!(vips)),
            ]),
        ),
        ("UpdateStatus", json!(update)),
    ])
}

/// A node; `leader` says whether it is the raft leader, as the caller knows.
pub fn node(n: &Node, leader: bool) -> Value {
    let manager = (n.role == NodeRole::Manager).then(|| {
        json!({
            "Leader": leader,
            "Reachability": if n.state == crate::types::NodeState::Ready { "reachable" } else { "unreachable" },
            "Addr": n.addr,
        })
    });
    let host = n.addr.rsplit_once(':').map_or(n.addr.as_str(), |(h, _)| h);
    object(vec![
        ("ID", json!(n.id)),
        ("Version", json!({"Index": n.meta.version})),
        ("CreatedAt", date(n.meta.created_at)),
        ("UpdatedAt", date(n.meta.updated_at)),
        (
            "Spec",
            object(vec![
                ("Labels", json!(n.labels)),
                ("Role", json!(n.role.as_str())),
                ("Availability", json!(n.availability)),
            ]),
        ),
        (
            "Description",
            object(vec![
                ("Hostname", json!(n.hostname)),
                (
                    "Platform",
                    json!({"Architecture": std::env::consts::ARCH, "OS": std::env::consts::OS}),
                ),
                (
                    "Resources",
                    json!({"NanoCPUs": n.nano_cpus, "MemoryBytes": n.memory_bytes}),
                ),
                ("Engine", json!({"EngineVersion": n.engine_version})),
            ]),
        ),
        ("Status", json!({"State": n.state, "Addr": host})),
        ("ManagerStatus", json!(manager)),
    ])
}

/// A network as `docker network inspect` shows a swarm-scoped one.
pub fn network(n: &Network) -> Value {
    let options = json!({"com.docker.network.driver.overlay.vxlanid_list": n.vni.to_string()});
    object(vec![
        ("Name", json!(n.spec.name)),
        ("Id", json!(n.id)),
        ("Created", date(n.meta.created_at)),
        ("Scope", json!("swarm")),
        ("Driver", json!(n.spec.driver)),
        ("EnableIPv6", json!(false)),
        (
            "IPAM",
            json!({"Driver": "default", "Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]}),
        ),
        ("Internal", json!(n.spec.internal)),
        ("Attachable", json!(n.spec.attachable)),
        ("Ingress", json!(n.spec.ingress)),
        ("Options", options),
        ("Labels", json!(n.spec.labels)),
    ])
}

/// A secret or config: docker's shape, plus the versions it keeps (which
/// Docker has no field for). The data never shows.
pub fn secret(s: &Secret) -> Value {
    let mut v = object(vec![
        ("ID", json!(s.id)),
        ("Version", json!({"Index": s.meta.version})),
        ("CreatedAt", date(s.meta.created_at)),
        ("UpdatedAt", date(s.meta.updated_at)),
        (
            "Spec",
            object(vec![("Name", json!(s.name)), ("Labels", json!(s.labels))]),
        ),
    ]);
    let versions: Vec<Value> = s
        .versions
        .iter()
        .map(|x| json!({"Version": x.version, "CreatedAt": date(x.created_at)}))
        .collect();
    v["Versions"] = json!(versions);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{node as test_node, service as svc};
    use crate::types::{
        Attachment, HealthConfig, Logging, NetworkAttachmentSpec, NetworkSpec, PortConfig, Proto,
        PublishMode, SecretRef, UpdateState, UpdateStatus,
    };
    use serde::de::DeserializeOwned;

    /// `v` read as Docker's model and written back: equal when every field
    /// is one Docker's API has, with Docker's type.
    fn survives<T: DeserializeOwned + serde::Serialize>(v: &Value) {
        let model: T = serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("not Docker's shape: {e}\n{v:#}"));
        assert_eq!(&serde_json::to_value(&model).unwrap(), v);
    }

    #[test]
    fn a_service_has_dockers_shape() {
        let mut s = svc("s1", Mode::Replicated, 3);
        let spec = &mut s.spec;
        spec.args = vec!["-v".into()];
        spec.env = vec!["A=1".into()];
        spec.labels.insert("team".into(), "web".into());
        spec.ports.push(PortConfig {
            protocol: Proto::Tcp,
            published: 8000,
            target: 80,
            mode: PublishMode::Ingress,
            force: false,
        });
        spec.networks.push(NetworkAttachmentSpec {
            target: "net1".into(),
            aliases: vec!["web".into()],
        });
        spec.healthcheck = Some(HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            interval_ms: 1000,
            ..Default::default()
        });
        spec.secrets.push(SecretRef {
            id: "sec1".into(),
            version: 1,
            ..SecretRef::named("db")
        });
        spec.placement.constraints.push("node.role==worker".into());
        spec.resources.reserve_memory_bytes = 1 << 20;
        spec.container.mounts = vec![
            Mount {
                kind: MountKind::Bind,
                source: "/srv".into(),
                target: "/data".into(),
                read_only: true,
                tmpfs_size_bytes: 0,
            },
            Mount {
                kind: MountKind::Tmpfs,
                target: "/run".into(),
                tmpfs_size_bytes: 1 << 16,
                ..Default::default()
            },
        ];
        spec.container.ulimits.insert(
            "nofile".into(),
            Ulimit {
                soft: 1024,
                hard: 4096,
            },
        );
        spec.container.logging = Some(Logging {
            driver: "json-file".into(),
            options: [("max-size".to_string(), "10m".to_string())].into(),
        });
        s.endpoint.vips.push(Attachment {
            network_id: "net1".into(),
            addr: "10.0.0.2".parse().unwrap(),
        });
        s.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            started_at: 1_000,
            completed_at: Some(2_000),
            message: "rollback completed".into(),
            failed_task: None,
        });
        s.meta.version = 7;
        s.meta.created_at = 1_700_000_000_123;
        let v = service(&s, |id| (id == "net1").then_some(24));
        survives::<bollard::models::Service>(&v);
        let c = &v["Spec"]["TaskTemplate"]["ContainerSpec"];
        assert_eq!(
            c["Mounts"],
            json!([
                {"Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": true},
                {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 65536}},
            ])
        );
        assert_eq!(
            c["Ulimits"],
            json!([{"Name": "nofile", "Soft": 1024, "Hard": 4096}])
        );
        assert_eq!(
            v["Spec"]["TaskTemplate"]["LogDriver"],
            json!({"Name": "json-file", "Options": {"max-size": "10m"}})
        );
        assert_eq!(v["ID"], "s1");
        assert_eq!(v["Version"]["Index"], 7);
        assert_eq!(v["CreatedAt"], "2023-11-14T22:13:20.123000000Z");
        assert_eq!(v["Spec"]["Name"], "svc-s1");
        assert_eq!(v["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"], "img");
        assert_eq!(v["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
        assert_eq!(v["Spec"]["Labels"]["team"], "web");
        assert_eq!(v["Endpoint"]["VirtualIPs"][0]["Addr"], "10.0.0.2/24");
        assert_eq!(v["UpdateStatus"]["State"], "rollback_completed");
        assert_eq!(
            v["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"],
            "db"
        );
        let global = service(&svc("s2", Mode::Global, 0), |_| None);
        survives::<bollard::models::Service>(&global);
        assert_eq!(global["Spec"]["Mode"], json!({"Global": {}}));
    }

    #[test]
    fn nodes_networks_and_secrets_have_dockers_shape() {
        let mut n = test_node("n1");
        n.role = NodeRole::Manager;
        let v = node(&n, true);
        survives::<bollard::models::Node>(&v);
        assert_eq!(v["Description"]["Hostname"], n.hostname);
        assert_eq!(v["ManagerStatus"]["Leader"], true);
        assert_eq!(v["Spec"]["Role"], "manager");

        let net = Network {
            id: "net1".into(),
            spec: NetworkSpec {
                name: "front".into(),
                driver: "overlay".into(),
                subnet: None,
                gateway: None,
                attachable: false,
                internal: true,
                ingress: false,
                labels: Default::default(),
            },
            subnet: "10.0.1.0/24".parse().unwrap(),
            gateway: "10.0.1.1".parse().unwrap(),
            vni: 4097,
            meta: Default::default(),
        };
        let v = network(&net);
        survives::<bollard::models::Network>(&v);
        assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24");
        assert_eq!(v["Internal"], true);

        let s = Secret {
            id: "sec1".into(),
            kind: crate::types::SecretKind::Secret,
            name: "db".into(),
            labels: Default::default(),
            versions: vec![crate::types::SecretVersion {
                version: 1,
                created_at: 0,
                data: b"sealed".to_vec(),
            }],
            meta: Default::default(),
        };
        let mut v = secret(&s);
        assert!(!v.to_string().contains("sealed"), "{v}");
        v.as_object_mut().unwrap().remove("Versions");
        survives::<bollard::models::Secret>(&v);
        assert_eq!(v["Spec"]["Name"], "db");
    }
}
