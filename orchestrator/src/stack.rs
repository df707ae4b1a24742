//! Stacks: a compose document (in swarm_compose's normal form, which the
//! CLI loads from the user's files) becomes the specs of its networks and
//! services, named `STACK_NAME` and labelled with the stack's namespace, as
//! docker's stack deploy converts them. Pure: `plan.rs` decides what of it
//! the cluster lacks.

pub mod plan;
mod service;

use service::{container, depends_on, service};

use crate::types::{
    validate_name, NetworkAttachmentSpec, NetworkSpec, SecretKind, SecretRef, ServiceSpec,
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
    "expose",
    "isolation",
    "sysctls",
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
        s.container = container(stack, key, svc, doc)?;
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

#[cfg(test)]
mod tests;
