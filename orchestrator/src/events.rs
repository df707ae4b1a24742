//! Cluster events, as `docker events` shows Swarm's: derived on each
//! manager from the committed state it applies, so every manager tells the
//! same story. Each change of a service, node, task, network, secret or
//! config is one event with docker's fields (`Type`, `Action`, `Actor`,
//! `scope`, `time`, `timeNano`). A manager keeps the latest events for
//! `--since` and streams new ones as they are applied.

use crate::state::State;
use crate::store::Store;
use crate::types::{SecretKind, Task};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events kept for `--since` (docker keeps 256 in its daemon).
const KEPT: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Service,
    Node,
    Task,
    Network,
    Secret,
    Config,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Remove,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, in the shape docker's events API gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: Kind,
    #[serde(rename = "Action")]
    pub action: Action,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: &'static str,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// The word serde gives a unit enum value (the one `--format json` prints).
fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Old and new value of a field that changed, as `KEY.old`/`KEY.new`.
fn changed(attrs: &mut BTreeMap<String, String>, key: &str, old: String, new: String) {
    if old != new {
        attrs.insert(format!("{key}.old"), old);
        attrs.insert(format!("{key}.new"), new);
    }
}

/// Diff one map of objects: `describe(old, new)` gives an object's
/// attributes (`old` is `None` on create).
fn diff_map<V: Clone + PartialEq>(
    old: &im::OrdMap<String, V>,
    new: &im::OrdMap<String, V>,
    describe: impl Fn(Option<&V>, &V) -> (Kind, BTreeMap<String, String>),
    out: &mut Vec<(Kind, Action, String, BTreeMap<String, String>)>,
) {
    if old.ptr_eq(new) {
        return;
    }
    use im::ordmap::DiffItem;
    for item in old.diff(new) {
        match item {
            DiffItem::Add(id, v) => {
                let (k, attrs) = describe(None, v);
                out.push((k, Action::Create, id.clone(), attrs));
            }
            DiffItem::Update {
                old: (_, was),
                new: (id, v),
            } => {
                let (k, attrs) = describe(Some(was), v);
                out.push((k, Action::Update, id.clone(), attrs));
            }
            DiffItem::Remove(id, v) => {
                let (k, attrs) = describe(None, v);
                out.push((k, Action::Remove, id.clone(), attrs));
            }
        }
    }
}

fn task_attrs(old: Option<&Task>, t: &Task) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        ("name".to_string(), t.name()),
        ("service".to_string(), t.service_name.clone()),
    ]);
    if let Some(node) = &t.node_id {
        a.insert("node.id".into(), node.clone());
    }
    if let Some(was) = old {
        changed(
            &mut a,
            "state",
            word(&was.status.state),
            word(&t.status.state),
        );
        changed(
            &mut a,
            "desiredstate",
            word(&was.desired_state),
            word(&t.desired_state),
        );
    } else {
        a.insert("state".into(), word(&t.status.state));
    }
    a
}

/// The events between two states `old` and `new`, at `time_nano`.
pub fn diff(old: &State, new: &State, time_nano: i64) -> Vec<Event> {
    let mut out = Vec::new();
    diff_map(
        &old.services,
        &new.services,
        |was, s| {
            let mut a = BTreeMap::from([("name".to_string(), s.spec.name.clone())]);
            if let Some(was) = was {
                changed(
                    &mut a,
                    "image",
                    was.spec.image.clone(),
                    s.spec.image.clone(),
                );
                changed(
                    &mut a,
                    "replicas",
                    was.spec.replicas.to_string(),
                    s.spec.replicas.to_string(),
                );
                let state = |s: &crate::types::Service| {
                    s.update_status
                        .as_ref()
                        .map_or(String::new(), |u| u.state.as_str().to_string())
                };
                changed(&mut a, "updatestate", state(was), state(s));
            }
            (Kind::Service, a)
        },
        &mut out,
    );
    diff_map(
        &old.nodes,
        &new.nodes,
        |was, n| {
            let mut a = BTreeMap::from([("name".to_string(), n.hostname.clone())]);
            if let Some(was) = was {
                changed(&mut a, "state", word(&was.state), word(&n.state));
                changed(
                    &mut a,
                    "availability",
                    word(&was.availability),
                    word(&n.availability),
                );
                changed(&mut a, "role", word(&was.role), word(&n.role));
            }
            (Kind::Node, a)
        },
        &mut out,
    );
    diff_map(
        &old.tasks,
        &new.tasks,
        |was, t| (Kind::Task, task_attrs(was.map(|t| &**t), t)),
        &mut out,
    );
    diff_map(
        &old.networks,
        &new.networks,
        |_, n| {
            let a = BTreeMap::from([("name".to_string(), n.spec.name.clone())]);
            (Kind::Network, a)
        },
        &mut out,
    );
    diff_map(
        &old.secrets,
        &new.secrets,
        |_, s| {
            let kind = match s.kind {
                SecretKind::Secret => Kind::Secret,
                SecretKind::Config => Kind::Config,
            };
            (kind, BTreeMap::from([("name".to_string(), s.name.clone())]))
        },
        &mut out,
    );
    out.into_iter()
        // A task's own bookkeeping (a new address, the same state) is no
        // event: docker's events are changes an operator acts on.
        .filter(|(k, action, _, a)| {
            *k != Kind::Task || *action != Action::Update || a.keys().any(|k| k.ends_with(".new"))
        })
        .map(|(kind, action, id, attributes)| Event {
            kind,
            action,
            actor: Actor { id, attributes },
            scope: "swarm",
            time: time_nano / 1_000_000_000,
            time_nano,
        })
        .collect()
}

/// `--filter KEY=VALUE` as docker's events take it: values of one key are
/// alternatives, keys must all match. `type` and `event` (the action)
/// match by word; an object key (`service`, `node`, `task`, `network`,
/// `secret`, `config`) matches events of that type by ID, ID prefix or
/// name.
#[derive(Debug, Default)]
pub struct Filter {
    by_key: BTreeMap<String, Vec<String>>,
}

const FILTER_KEYS: &[&str] = &[
    "type", "event", "service", "node", "task", "network", "secret", "config",
];

impl Filter {
    pub fn parse(args: &[String]) -> Result<Filter, String> {
        let mut f = Filter::default();
        for arg in args {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| format!("bad filter {arg:?}: expected KEY=VALUE"))?;
            if !FILTER_KEYS.contains(&k) {
                return Err(format!(
                    "invalid filter '{k}': events filter by {}",
                    FILTER_KEYS.join(", ")
                ));
            }
            f.by_key.entry(k.into()).or_default().push(v.into());
        }
        Ok(f)
    }

    pub fn matches(&self, e: &Event) -> bool {
        let kind = word(&e.kind);
        self.by_key.iter().all(|(key, values)| match key.as_str() {
            "type" => values.contains(&kind),
            "event" => values.contains(&word(&e.action)),
            _ => {
                *key == kind
                    && values.iter().any(|v| {
                        e.actor.id.starts_with(v.as_str())
                            || e.actor.attributes.get("name") == Some(v)
                    })
            }
        })
    }
}

/// An event with its number in this manager's log.
type Numbered = (u64, Event);

/// A manager's events: the latest ones, and a feed of new ones.
pub struct Log {
    kept: Mutex<VecDeque<Numbered>>,
    live: broadcast::Sender<Numbered>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            kept: Mutex::default(),
            live: broadcast::channel(KEPT).0,
        }
    }
}

impl Log {
    /// The kept events and the feed after them, numbered so that a caller
    /// can drop from the feed what it already had.
    fn subscribe(&self) -> (Vec<Numbered>, broadcast::Receiver<Numbered>) {
        let kept = self.kept.lock().expect("events lock");
        (kept.iter().cloned().collect(), self.live.subscribe())
    }

    /// The kept events from `since` (ns) on, then new ones as they come,
    /// until `until` (ns) when it is set, or the receiver goes.
    pub fn stream(
        &self,
        since: i64,
        until: Option<i64>,
        filter: Filter,
    ) -> tokio::sync::mpsc::Receiver<Event> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let (kept, mut live) = self.subscribe();
        let within =
            move |e: &Event| e.time_nano >= since && until.is_none_or(|u| e.time_nano <= u);
        tokio::spawn(async move {
            let mut last = 0;
            for (seq, e) in kept {
                last = seq;
                if within(&e) && filter.matches(&e) && tx.send(e).await.is_err() {
                    return;
                }
            }
            let now = crate::types::now_ns();
            let left = match until {
                Some(u) if u <= now => return,
                Some(u) => std::time::Duration::from_nanos((u - now) as u64),
                None => std::time::Duration::MAX,
            };
            let end = tokio::time::sleep(left.min(std::time::Duration::from_secs(86400 * 365)));
            tokio::pin!(end);
            loop {
                let (seq, e) = tokio::select! {
                    _ = &mut end => return,
                    _ = tx.closed() => return,
                    r = live.recv() => match r {
                        Ok(item) => item,
                        // Too slow a reader misses events rather than
                        // holding the manager up.
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "an events reader fell behind");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                if seq <= last || !within(&e) || !filter.matches(&e) {
                    continue;
                }
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        });
        rx
    }

    fn push(&self, seq: u64, e: Event) {
        let mut kept = self.kept.lock().expect("events lock");
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((seq, e.clone()));
        let _ = self.live.send((seq, e));
    }

    /// Turn every state this manager applies into events, until `stop`.
    pub async fn record(self: Arc<Self>, store: Store, stop: CancellationToken) {
        let mut changes = store.subscribe();
        let mut seen = changes.borrow_and_update().clone();
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
            }
            let now = changes.borrow_and_update().clone();
            let nanos = crate::types::now_ns();
            for e in diff(&seen, &now, nanos) {
                seq += 1;
                self.push(seq, e);
            }
            seen = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{node, service, state, task};
    use crate::types::{Mode, NodeState, TaskState};

    fn brief(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let attrs: Vec<String> = e
                    .actor
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    "{} {} {} ({})",
                    word(&e.kind),
                    word(&e.action),
                    e.actor.id,
                    attrs.join(", ")
                )
            })
            .collect()
    }

    #[test]
    fn filters_match_as_dockers_do() {
        let svc = service("s1", Mode::Replicated, 1);
        let st = state(
            &[node("n1")],
            std::slice::from_ref(&svc),
            &[task("t1", &svc, 1, TaskState::Assigned)],
        );
        let events = diff(&state(&[node("n1")], &[], &[]), &st, 0);
        let kept = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let f = Filter::parse(&args).unwrap();
            brief(
                &events
                    .iter()
                    .filter(|e| f.matches(e))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .into_iter()
            .map(|l| l.split(" (").next().unwrap().to_string())
            .collect::<Vec<_>>()
        };
        assert_eq!(kept(&["type=task"]), vec!["task create t1"]);
        assert_eq!(
            kept(&["type=task", "type=service"]).len(),
            2,
            "one key's values are alternatives"
        );
        assert_eq!(kept(&["service=svc-s1"]), vec!["service create s1"]);
        assert_eq!(
            kept(&["service=s"]),
            vec!["service create s1"],
            "an ID prefix"
        );
        assert!(
            kept(&["type=task", "event=remove"]).is_empty(),
            "keys must all match"
        );
        let err = Filter::parse(&["colour=red".into()]).unwrap_err();
        assert!(err.contains("invalid filter 'colour'"), "{err}");
        assert!(Filter::parse(&["type".into()])
            .unwrap_err()
            .contains("KEY=VALUE"));
    }

    #[test]
    fn changes_become_dockers_events_with_old_and_new_values() {
        let svc = service("s1", Mode::Replicated, 2);
        let before = state(&[node("n1")], &[], &[]);
        let mut after = state(
            &[node("n1")],
            std::slice::from_ref(&svc),
            &[task("t1", &svc, 1, TaskState::Assigned)],
        );
        assert_eq!(
            brief(&diff(&before, &after, 5_000_000_123)),
            vec![
                "service create s1 (name=svc-s1)",
                "task create t1 (name=svc-s1.1, node.id=n1, service=svc-s1, state=assigned)",
            ]
        );
        let e = &diff(&before, &after, 5_000_000_123)[0];
        assert_eq!((e.time, e.time_nano, e.scope), (5, 5_000_000_123, "swarm"));

        let next = {
            let mut s = after.clone();
            s.task_mut("t1").unwrap().status.state = TaskState::Running;
            let mut n = s.nodes.get("n1").unwrap().clone();
            n.state = NodeState::Down;
            s.nodes.insert("n1".into(), n);
            s
        };
        assert_eq!(
            brief(&diff(&after, &next, 0)),
            vec![
                "node update n1 (name=n1, state.new=down, state.old=ready)",
                "task update t1 (name=svc-s1.1, node.id=n1, service=svc-s1, state.new=running, state.old=assigned)",
            ]
        );
        // A change that moves no state a user sees is no task event.
        let mut quiet = next.clone();
        quiet.task_mut("t1").unwrap().status.message = "still running".into();
        assert!(diff(&next, &quiet, 0).is_empty());

        after.tasks.remove("t1");
        after.services.remove("s1");
        assert_eq!(
            brief(&diff(&next, &after, 0)),
            vec![
                "service remove s1 (name=svc-s1)",
                "node update n1 (name=n1, state.new=ready, state.old=down)",
                "task remove t1 (name=svc-s1.1, node.id=n1, service=svc-s1, state=running)",
            ]
        );
    }
}
