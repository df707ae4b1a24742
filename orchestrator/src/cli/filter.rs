//! docker's `-f/--filter KEY=VALUE` for `service ls`, `node ls` and
//! `service ps`/`node ps`: values of one key are alternatives (any may
//! match), different keys must all match. `name` and `id` match a prefix,
//! as docker's do; `label` is `KEY` (present) or `KEY=VALUE`.

use crate::types::{Mode, Node, NodeRole, Service, Task, TaskState};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};

/// Parsed filters: key → the values given for it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parse `KEY=VALUE` arguments, refusing keys not in `allowed` in
    /// docker's words (`invalid filter 'foo'`).
    pub fn parse(args: &[String], allowed: &[&str]) -> Result<Filters> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in args {
            let Some((key, value)) = a.split_once('=') else {
                bail!("bad format of filter (expected name=value): {a}");
            };
            let key = key.trim().to_ascii_lowercase();
            if !allowed.contains(&key.as_str()) {
                bail!(
                    "invalid filter '{key}' (this command takes {})",
                    allowed.join(", ")
                );
            }
            out.entry(key).or_default().push(value.to_string());
        }
        Ok(Filters(out))
    }

    /// Whether, for every key given, `matches` holds for one of its values.
    fn all(&self, mut matches: impl FnMut(&str, &str) -> bool) -> bool {
        self.0
            .iter()
            .all(|(key, values)| values.iter().any(|v| matches(key, v)))
    }
}

fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(want),
    }
}

pub const SERVICE_KEYS: &[&str] = &["id", "label", "mode", "name"];
pub const NODE_KEYS: &[&str] = &["id", "label", "membership", "name", "role"];
pub const TASK_KEYS: &[&str] = &["desired-state", "id", "name", "node"];

pub fn service(f: &Filters, s: &Service) -> bool {
    f.all(|key, v| match key {
        "id" => s.id.starts_with(v),
        "name" => s.spec.name.starts_with(v),
        "label" => label_matches(&s.spec.labels, v),
        "mode" => match s.spec.mode {
            Mode::Replicated => v == "replicated",
            Mode::Global => v == "global",
        },
        _ => false,
    })
}

pub fn node(f: &Filters, n: &Node) -> bool {
    f.all(|key, v| match key {
        "id" => n.id.starts_with(v),
        "name" => n.hostname.starts_with(v),
        "label" => label_matches(&n.labels, v),
        "role" => v.parse::<NodeRole>().is_ok_and(|r| r == n.role),
        // Nodes here are in the swarm once they join: there is no
        // pending state to approve.
        "membership" => v == "accepted",
        _ => false,
    })
}

/// `nodes` maps node IDs to hostnames: `node=` takes either.
pub fn task(f: &Filters, t: &Task, nodes: &HashMap<String, String>) -> bool {
    f.all(|key, v| match key {
        "id" => t.id.starts_with(v),
        "name" => t.name().starts_with(v),
        "node" => t
            .node_id
            .as_ref()
            .is_some_and(|n| n == v || nodes.get(n).is_some_and(|h| h == v)),
        "desired-state" => match v {
            "running" => t.desired_state == TaskState::Running,
            "shutdown" => t.desired_state >= TaskState::Shutdown,
            "accepted" => t.desired_state < TaskState::Running,
            _ => false,
        },
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{node as mk_node, service as mk_service, task as mk_task};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_key_is_any_of_its_values_and_keys_are_all_required() {
        let mut web = mk_service("w1", Mode::Replicated, 2);
        web.spec.name = "web".into();
        web.spec.labels.insert("tier".into(), "front".into());
        let mut db = mk_service("d1", Mode::Global, 0);
        db.spec.name = "db".into();
        let f = |a: &[&str]| Filters::parse(&args(a), SERVICE_KEYS).unwrap();
        assert!(service(&f(&["name=we"]), &web) && !service(&f(&["name=we"]), &db));
        assert!(service(&f(&["name=web", "name=db"]), &db));
        assert!(!service(&f(&["name=web", "mode=global"]), &web));
        assert!(service(&f(&["mode=global"]), &db));
        assert!(service(&f(&["label=tier"]), &web) && !service(&f(&["label=tier"]), &db));
        assert!(service(&f(&["label=tier=front"]), &web));
        assert!(!service(&f(&["label=tier=back"]), &web));
        assert!(service(&f(&["id=w"]), &web));
        assert!(service(&Filters::default(), &db));
    }

    #[test]
    fn nodes_filter_by_role_name_label_and_membership() {
        let mut n = mk_node("abc123");
        n.hostname = "n1".into();
        n.labels.insert("zone".into(), "east".into());
        let f = |a: &[&str]| Filters::parse(&args(a), NODE_KEYS).unwrap();
        assert!(node(&f(&["role=manager", "name=n", "label=zone=east"]), &n));
        assert!(!node(&f(&["role=worker"]), &n));
        assert!(node(&f(&["membership=accepted", "id=abc"]), &n));
        assert!(!node(&f(&["membership=pending"]), &n));
    }

    #[test]
    fn tasks_filter_by_node_name_or_id_and_desired_state() {
        let s = mk_service("s", Mode::Replicated, 1);
        let t = mk_task("t1", &s, 1, TaskState::Running);
        let nodes = HashMap::from([("n1".to_string(), "host-1".to_string())]);
        let f = |a: &[&str]| Filters::parse(&args(a), TASK_KEYS).unwrap();
        assert!(task(&f(&["node=host-1"]), &t, &nodes) && task(&f(&["node=n1"]), &t, &nodes));
        assert!(!task(&f(&["node=host-2"]), &t, &nodes));
        assert!(task(
            &f(&["desired-state=running", "name=svc-s.1"]),
            &t,
            &nodes
        ));
        assert!(!task(&f(&["desired-state=shutdown"]), &t, &nodes));
    }

    #[test]
    fn unknown_keys_and_missing_values_are_refused_by_name() {
        let e = Filters::parse(&args(&["colour=red"]), SERVICE_KEYS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid filter 'colour' (this command takes id, label, mode, name)"
        );
        let e = Filters::parse(&args(&["name"]), SERVICE_KEYS).unwrap_err();
        assert!(e.to_string().contains("expected name=value"), "{e}");
    }
}
