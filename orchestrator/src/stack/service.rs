//! One compose service as a service spec: the `deploy:` keys, ports,
//! healthcheck, update settings and container options, in docker's normal
//! form as `swarm_compose` loads it.

use super::{go_ms, labels, obj, text};
use crate::placement::parse_cpus;
use crate::types::{
    permille, ContainerOptions, EndpointMode, FailureAction, HealthConfig, Logging, Mode, Mount,
    MountKind, Placement, PortConfig, PublishMode, Resources, RestartCondition, RestartPolicy,
    ServiceSpec, Ulimit, UpdateConfig,
};
use serde_json::Value;

pub(super) fn service(stack: &str, key: &str, svc: &Value) -> Result<ServiceSpec, String> {
    let image = text(svc, "image").ok_or_else(|| {
        format!("Service {key} has neither an image nor a build context specified. At least one must be provided.")
    })?;
    let deploy = svc.get("deploy").cloned().unwrap_or(Value::Null);
    let mode = match text(&deploy, "mode").as_deref() {
        None | Some("replicated") => Mode::Replicated,
        Some("global") => Mode::Global,
        Some(m) => return Err(format!("service {key}: unknown mode: {m}")),
    };
    if mode == Mode::Global && deploy.get("replicas").is_some() {
        return Err(format!(
            "service {key}: replicas can only be used with replicated mode"
        ));
    }
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let env = obj(svc, "environment")
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect();
    let restart = match deploy.get("restart_policy") {
        None => RestartPolicy::default(),
        Some(r) => RestartPolicy {
            condition: match text(r, "condition").as_deref() {
                None | Some("any") => RestartCondition::Any,
                Some("on-failure") => RestartCondition::OnFailure,
                Some("none") => RestartCondition::None,
                Some(c) => {
                    return Err(format!(
                        "service {key}: unknown restart policy condition {c:?}"
                    ))
                }
            },
            delay_ms: match text(r, "delay") {
                Some(d) => go_ms(&d, &format!("service {key}: restart_policy.delay"))?,
                None => RestartPolicy::default().delay_ms,
            },
            max_attempts: r.get("max_attempts").and_then(Value::as_u64).unwrap_or(0),
        },
    };
    let placement = deploy.get("placement").cloned().unwrap_or(Value::Null);
    let placement = Placement {
        constraints: strings(placement.get("constraints")),
        preferences: placement
            .get("preferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| text(p, "spread").map(|s| format!("spread={s}")))
            .collect(),
        max_replicas_per_node: placement
            .get("max_replicas_per_node")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    placement
        .validate()
        .map_err(|e| format!("service {key}: {e}"))?;
    let reserve = deploy
        .pointer("/resources/reservations")
        .cloned()
        .unwrap_or(Value::Null);
    let resources = Resources {
        reserve_nano_cpus: text(&reserve, "cpus")
            .map(|c| parse_cpus(&c))
            .transpose()
            .map_err(|e| format!("service {key}: {e}"))?
            .unwrap_or(0),
        reserve_memory_bytes: text(&reserve, "memory")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
    };
    let mut ports = Vec::new();
    for p in svc
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let port = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        let bad = |what: &str| format!("service {key}: invalid port {what}: {p}");
        ports.push(PortConfig {
            protocol: text(p, "protocol")
                .as_deref()
                .unwrap_or("tcp")
                .parse()
                .map_err(|e| format!("service {key}: {e}"))?,
            published: u16::try_from(port("published")).map_err(|_| bad("published"))?,
            target: u16::try_from(port("target"))
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| bad("target"))?,
            mode: match text(p, "mode") {
                None => PublishMode::Ingress,
                Some(m) => m.parse().map_err(|e| format!("service {key}: port {e}"))?,
            },
            force: false,
        });
    }
    crate::ports::validate(&ports).map_err(|e| format!("service {key}: {e}"))?;
    Ok(ServiceSpec {
        name: format!("{stack}_{key}"),
        image,
        args: strings(svc.get("command")),
        env,
        mode,
        replicas: match mode {
            Mode::Replicated => deploy.get("replicas").and_then(Value::as_u64).unwrap_or(1),
            Mode::Global => 0,
        },
        restart,
        placement,
        resources,
        ports,
        networks: Vec::new(),
        endpoint_mode: match text(&deploy, "endpoint_mode").as_deref() {
            None | Some("vip") => EndpointMode::Vip,
            Some("dnsrr") => EndpointMode::Dnsrr,
            Some(m) => return Err(format!("service {key}: unknown endpoint mode {m:?}")),
        },
        labels: labels(&deploy, stack),
        healthcheck: svc
            .get("healthcheck")
            .map(|h| healthcheck(key, h))
            .transpose()?,
        secrets: Vec::new(),
        configs: Vec::new(),
        update: update_config(key, "update_config", deploy.get("update_config"))?,
        rollback: update_config(key, "rollback_config", deploy.get("rollback_config"))?,
        force_update: 0,
        depends_on: Vec::new(),
        container: Default::default(),
    })
}

/// A service's container options (normal form: Go durations, long-syntax
/// volumes, ulimits as numbers or soft/hard).
pub(super) fn container(
    stack: &str,
    key: &str,
    svc: &Value,
    doc: &Value,
) -> Result<ContainerOptions, String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let flag = |k: &str| svc.get(k) == Some(&Value::Bool(true));
    let mut c = ContainerOptions {
        entrypoint: svc.get("entrypoint").map(strings),
        user: text(svc, "user"),
        working_dir: text(svc, "working_dir"),
        hostname: text(svc, "hostname"),
        tty: flag("tty"),
        stdin_open: flag("stdin_open"),
        read_only: flag("read_only"),
        init: svc.get("init").and_then(Value::as_bool),
        stop_signal: text(svc, "stop_signal"),
        stop_grace_period_ms: text(svc, "stop_grace_period")
            .map(|d| go_ms(&d, &format!("service {key}: stop_grace_period")))
            .transpose()?,
        labels: obj(svc, "labels")
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        extra_hosts: svc.get("extra_hosts").map(strings).unwrap_or_default(),
        logging: svc.get("logging").map(|l| Logging {
            driver: text(l, "driver").unwrap_or_default(),
            options: obj(l, "options")
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        }),
        ..Default::default()
    };
    for (name, u) in obj(svc, "ulimits").into_iter().flatten() {
        let limit = match u.as_i64() {
            Some(n) => Ulimit { soft: n, hard: n },
            None => Ulimit {
                soft: u.get("soft").and_then(Value::as_i64).unwrap_or(0),
                hard: u.get("hard").and_then(Value::as_i64).unwrap_or(0),
            },
        };
        c.ulimits.insert(name.clone(), limit);
    }
    for t in svc.get("tmpfs").map(strings).unwrap_or_default() {
        c.mounts.push(Mount {
            kind: MountKind::Tmpfs,
            target: t,
            ..Default::default()
        });
    }
    let volumes = obj(doc, "volumes").cloned().unwrap_or_default();
    for v in svc
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let target = text(v, "target").unwrap_or_default();
        let source = text(v, "source").unwrap_or_default();
        let kind = match text(v, "type").as_deref() {
            Some("bind") => MountKind::Bind,
            Some("volume") | None => MountKind::Volume,
            Some("tmpfs") => MountKind::Tmpfs,
            Some(other) => {
                return Err(format!(
                    "service {key}: volume type {other:?} is not supported"
                ))
            }
        };
        // A named volume is the stack's (`STACK_NAME`) unless external or
        // named, as docker names it.
        let source = match (kind, volumes.get(&source)) {
            (MountKind::Volume, Some(decl)) if !source.is_empty() => {
                let external = decl.get("external") == Some(&Value::Bool(true));
                match (text(decl, "name"), external) {
                    (Some(n), _) => n,
                    (None, true) => source,
                    (None, false) => format!("{stack}_{source}"),
                }
            }
            (MountKind::Volume, None) if !source.is_empty() => {
                return Err(format!(
                    "service {key} refers to undefined volume {source}: invalid compose project"
                ))
            }
            _ => source,
        };
        c.mounts.push(Mount {
            kind,
            source,
            target,
            read_only: v.get("read_only") == Some(&Value::Bool(true)),
            tmpfs_size_bytes: v
                .pointer("/tmpfs/size")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        });
    }
    Ok(c)
}

/// compose's `depends_on`: the services whose health this one's start
/// waits for (`condition: service_healthy`, named in the cluster), and
/// whether it lists others, which a swarm starts together anyway.
pub(super) fn depends_on(stack: &str, svc: &Value) -> (Vec<String>, bool) {
    match svc.get("depends_on") {
        Some(Value::Object(deps)) => {
            let healthy: Vec<String> = deps
                .iter()
                .filter(|(_, d)| text(d, "condition").as_deref() == Some("service_healthy"))
                .map(|(k, _)| format!("{stack}_{k}"))
                .collect();
            let others = healthy.len() < deps.len();
            (healthy, others)
        }
        Some(Value::Array(deps)) => (Vec::new(), !deps.is_empty()),
        _ => (Vec::new(), false),
    }
}

/// compose's `deploy.update_config` / `rollback_config`, over Swarm's
/// defaults.
fn update_config(key: &str, what: &str, v: Option<&Value>) -> Result<UpdateConfig, String> {
    let mut c = UpdateConfig::default();
    let Some(v) = v else {
        return Ok(c);
    };
    let at = |k: &str| format!("service {key}: {what}.{k}");
    if let Some(p) = v.get("parallelism").and_then(Value::as_u64) {
        c.parallelism = p;
    }
    if let Some(d) = text(v, "delay") {
        c.delay_ms = go_ms(&d, &at("delay"))?;
    }
    if let Some(d) = text(v, "monitor") {
        c.monitor_ms = go_ms(&d, &at("monitor"))?;
    }
    if let Some(a) = text(v, "failure_action") {
        c.failure_action = a
            .parse()
            .map_err(|e| format!("{}: {e}", at("failure_action")))?;
        if what == "rollback_config" && c.failure_action == FailureAction::Rollback {
            return Err(format!(
                "{}: a rollback cannot roll back",
                at("failure_action")
            ));
        }
    }
    if let Some(r) = v.get("max_failure_ratio").and_then(Value::as_f64) {
        c.max_failure_permille =
            permille(r).map_err(|e| format!("{}: {e}", at("max_failure_ratio")))?;
    }
    if let Some(o) = text(v, "order") {
        c.order = o.parse().map_err(|e| format!("{}: {e}", at("order")))?;
    }
    Ok(c)
}

/// compose's `healthcheck:` (normal form: Go durations, test as a list).
fn healthcheck(key: &str, h: &Value) -> Result<HealthConfig, String> {
    if h.get("disable") == Some(&Value::Bool(true)) {
        return Ok(HealthConfig::disabled());
    }
    let ms = |k: &str| -> Result<u64, String> {
        text(h, k).map_or(Ok(0), |d| {
            go_ms(&d, &format!("service {key}: healthcheck.{k}"))
        })
    };
    let test: Vec<String> = h
        .get("test")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    if test
        .first()
        .is_some_and(|f| !["CMD", "CMD-SHELL", "NONE"].contains(&f.as_str()))
    {
        return Err(format!(
            "service {key}: healthcheck.test must start with CMD, CMD-SHELL or NONE, not {:?}",
            test[0]
        ));
    }
    Ok(HealthConfig {
        test,
        interval_ms: ms("interval")?,
        timeout_ms: ms("timeout")?,
        start_period_ms: ms("start_period")?,
        retries: h.get("retries").and_then(Value::as_u64).unwrap_or(0),
    })
}
