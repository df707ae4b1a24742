//! Stacks: a compose document (in swarm_compose's normal form, which the
//! CLI loads from the user's files) becomes the specs of its networks and
//! services, named `STACK_NAME` and labelled with the stack's namespace, as
//! docker's stack deploy converts them. Pure: `plan.rs` decides what of it
//! the cluster lacks.

pub mod plan;

use crate::placement::parse_cpus;
use crate::types::{
    permille, validate_name, EndpointMode, FailureAction, HealthConfig, Mode,
    NetworkAttachmentSpec, NetworkSpec, Placement, PortConfig, PublishMode, Resources,
    RestartCondition, RestartPolicy, SecretKind, SecretRef, ServiceSpec, UpdateConfig,
    STACK_NAMESPACE,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What a compose document asks of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct StackSpec {
    pub name: String,
    /// Networks the stack owns, named `STACK_NAME` unless given a name.
    pub networks: Vec<NetworkSpec>,
    /// Networks that must exist already (`external: true`), by name.
    pub external_networks: Vec<String>,
    /// Their network attachments name networks, and their secret and
    /// config references secrets and configs, not IDs.
    pub services: Vec<ServiceSpec>,
    /// The top-level `secrets:` and `configs:`.
    pub data: Vec<StackData>,
    /// What the deploy ignored, in docker's words where docker has them.
    pub warnings: Vec<String>,
}

/// A top-level secret or config of a compose file.
#[derive(Debug, Clone, PartialEq)]
pub struct StackData {
    pub kind: SecretKind,
    /// Its key in the file (what services' `source` names).
    pub key: String,
    /// Its name in the cluster: `name:`, or `STACK_KEY` for one the stack
    /// owns (the key itself for an external one).
    pub name: String,
    /// Must exist already; the stack neither creates nor removes it.
    pub external: bool,
    /// Where its bytes come from (an absolute path, read by the CLI).
    pub file: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Keys stack deploy reads but a swarm service cannot honour: docker warns
/// and goes on.
const UNSUPPORTED: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
];

/// Keys a swarm service has in docker, but this project does not yet.
const NOT_YET: &[&str] = &[
    "credential_spec",
    "dns",
    "dns_search",
    "entrypoint",
    "expose",
    "extra_hosts",
    "hostname",
    "init",
    "isolation",
    "labels",
    "logging",
    "read_only",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "user",
    "volumes",
    "working_dir",
];

pub fn namespace_labels(stack: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(STACK_NAMESPACE.to_string(), stack.to_string())])
}

/// The stack an object's labels put it in.
pub fn stack_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(STACK_NAMESPACE).map(String::as_str)
}

fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn labels(v: &Value, stack: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = obj(v, "labels")
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    out.extend(namespace_labels(stack));
    out
}

fn go_ms(d: &str, what: &str) -> Result<u64, String> {
    swarm_compose::parse_duration(d)
        .map(|ns| (ns.max(0) / 1_000_000) as u64)
        .ok_or_else(|| format!("{what}: invalid duration {d:?}"))
}

pub fn convert(stack: &str, doc: &Value) -> Result<StackSpec, String> {
    validate_name("stack", stack)?;
    let mut spec = StackSpec {
        name: stack.to_string(),
        networks: Vec::new(),
        external_networks: Vec::new(),
        services: Vec::new(),
        data: data(stack, doc)?,
        warnings: Vec::new(),
    };
    let declared = obj(doc, "networks").cloned().unwrap_or_default();
    // Each compose network key, as the name the cluster knows it by.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (key, net) in &declared {
        let external = net.get("external") == Some(&Value::Bool(true));
        let name = text(net, "name").unwrap_or_else(|| format!("{stack}_{key}"));
        if external {
            let name = text(net, "name").unwrap_or_else(|| key.clone());
            names.insert(key.clone(), name.clone());
            spec.external_networks.push(name);
            continue;
        }
        let driver = text(net, "driver").unwrap_or_else(|| "overlay".into());
        if driver != "overlay" {
            return Err(format!(
                "network {key}: driver {driver:?} is not supported: swarm networks use the overlay driver"
            ));
        }
        let subnet = net
            .pointer("/ipam/config/0/subnet")
            .and_then(Value::as_str)
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("network {key}: invalid subnet {s:?}"))
            })
            .transpose()?;
        names.insert(key.clone(), name.clone());
        spec.networks.push(NetworkSpec {
            name,
            driver,
            subnet,
            gateway: None,
            attachable: net.get("attachable") == Some(&Value::Bool(true)),
            internal: net.get("internal") == Some(&Value::Bool(true)),
            ingress: false,
            labels: labels(net, stack),
        });
    }
    let mut unsupported = Vec::new();
    let mut not_yet: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut needs_default = false;
    let mut unordered = Vec::new();
    for (key, svc) in obj(doc, "services").into_iter().flatten() {
        for k in svc
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
        {
            if UNSUPPORTED.contains(&k) && !unsupported.contains(&k) {
                unsupported.push(k);
            }
            if let Some(k) = NOT_YET.iter().find(|n| **n == k) {
                not_yet.entry(k).or_default().push(key.clone());
            }
        }
        let mut s = service(stack, key, svc)?;
        let (deps, others) = depends_on(stack, svc);
        for d in &deps {
            let dep = d.strip_prefix(&format!("{stack}_")).unwrap_or(d);
            if obj(doc, "services").is_none_or(|all| !all.contains_key(dep)) {
                return Err(format!(
                    "service {key} depends on undefined service {dep}: invalid compose project"
                ));
            }
        }
        s.depends_on = deps;
        if others {
            unordered.push(key.clone());
        }
        s.secrets = refs(&spec.data, SecretKind::Secret, key, svc)?;
        s.configs = refs(&spec.data, SecretKind::Config, key, svc)?;
        let wanted: Vec<(String, Vec<String>)> = match obj(svc, "networks") {
            Some(nets) => nets
                .iter()
                .map(|(n, cfg)| {
                    let aliases = cfg
                        .get("aliases")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect();
                    (n.clone(), aliases)
                })
                .collect(),
            None => vec![("default".to_string(), Vec::new())],
        };
        for (net, mut aliases) in wanted {
            let name = match names.get(&net) {
                Some(name) => name.clone(),
                None if net == "default" => {
                    needs_default = true;
                    format!("{stack}_default")
                }
                None => {
                    return Err(format!(
                        "service {key} refers to undefined network {net}: invalid compose project"
                    ))
                }
            };
            // Other services of the stack find this one by its short name,
            // as in docker.
            aliases.insert(0, key.clone());
            s.networks.push(NetworkAttachmentSpec {
                target: name,
                aliases,
            });
        }
        spec.services.push(s);
    }
    if needs_default {
        spec.networks.push(NetworkSpec {
            name: format!("{stack}_default"),
            driver: "overlay".into(),
            subnet: None,
            gateway: None,
            attachable: false,
            internal: false,
            ingress: false,
            labels: namespace_labels(stack),
        });
    }
    if !unsupported.is_empty() {
        spec.warnings.push(format!(
            "Ignoring unsupported options: {}",
            unsupported.join(", ")
        ));
    }
    for (k, services) in not_yet {
        spec.warnings.push(format!(
            "Ignoring {k} (not supported by swarm yet): {}",
            services.join(", ")
        ));
    }
    if !unordered.is_empty() {
        spec.warnings.push(format!(
            "Ignoring depends_on without condition: service_healthy (a swarm starts services together): {}",
            unordered.join(", ")
        ));
    }
    Ok(spec)
}

/// The top-level secrets and configs, as the cluster will name them.
fn data(stack: &str, doc: &Value) -> Result<Vec<StackData>, String> {
    let mut out = Vec::new();
    for kind in [SecretKind::Secret, SecretKind::Config] {
        let section = format!("{kind}s");
        for (key, d) in obj(doc, &section).into_iter().flatten() {
            let external = d.get("external") == Some(&Value::Bool(true));
            let name = match (text(d, "name"), external) {
                (Some(n), _) => n,
                (None, true) => key.clone(),
                (None, false) => format!("{stack}_{key}"),
            };
            let file = text(d, "file");
            if !external && file.is_none() {
                return Err(format!(
                    "{section}.{key}: a {kind} the stack creates needs file: (or external: true)"
                ));
            }
            out.push(StackData {
                kind,
                key: key.clone(),
                name,
                external,
                file,
                labels: labels(d, stack),
            });
        }
    }
    Ok(out)
}

/// A service's `secrets:` or `configs:` (normal form: long syntax), each
/// naming its top-level entry by key. The target defaults to the key, as
/// in docker (a config's to `/KEY`).
fn refs(
    data: &[StackData],
    kind: SecretKind,
    svc_key: &str,
    svc: &Value,
) -> Result<Vec<SecretRef>, String> {
    let mut out = Vec::new();
    let section = format!("{kind}s");
    for r in svc
        .get(&section)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let source = text(r, "source").unwrap_or_default();
        let d = data
            .iter()
            .find(|d| d.kind == kind && d.key == source)
            .ok_or_else(|| {
                format!("service {svc_key} refers to undefined {kind} {source}: invalid compose project")
            })?;
        let mut sr = SecretRef::named(&d.name);
        sr.target = text(r, "target").unwrap_or(source);
        if let Some(uid) = text(r, "uid") {
            sr.uid = uid;
        }
        if let Some(gid) = text(r, "gid") {
            sr.gid = gid;
        }
        if let Some(mode) = r.get("mode").and_then(Value::as_u64) {
            sr.mode = u32::try_from(mode)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| format!("service {svc_key}: {section}: invalid mode {mode}"))?;
        }
        out.push(sr);
    }
    Ok(out)
}

fn service(stack: &str, key: &str, svc: &Value) -> Result<ServiceSpec, String> {
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
    })
}

/// compose's `depends_on`: the services whose health this one's start
/// waits for (`condition: service_healthy`, named in the cluster), and
/// whether it lists others, which a swarm starts together anyway.
fn depends_on(stack: &str, svc: &Value) -> (Vec<String>, bool) {
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

#[cfg(test)]
mod tests;
