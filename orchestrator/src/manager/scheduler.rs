//! The scheduler: places unassigned tasks on nodes. Each candidate node runs
//! through a pipeline of filters; among the nodes that pass, the one running
//! the fewest tasks of the same service wins (spread), then the one running
//! the fewest tasks overall. When no node passes, the task stays pending and
//! each filter explains how many nodes it turned away, as Swarm does:
//! "no suitable node (2 nodes not available for new tasks)".

pub mod filters;
mod spread;

use super::Plan;
use crate::placement::Resources;
use crate::ports::{Proto, PublishMode};
use crate::state::{Assignment, Command, State};
use crate::types::{Millis, Node, Task, TaskState};
use filters::{pipeline, Filter};
use spread::Group;
use std::collections::{HashMap, HashSet};

/// What is already placed, kept up to date as the pass places more: the
/// filters and the spread score read it. Keys borrow from the state, so a
/// lookup allocates nothing.
#[derive(Default)]
pub struct Placed<'a> {
    /// Live tasks per node. It only grows during a pass, so it also tells
    /// whether anything about a node changed since it was last looked at.
    total: HashMap<&'a str, usize>,
    /// Live tasks per (node, service).
    by_service: HashMap<(&'a str, &'a str), usize>,
    /// Reservations of live tasks per node.
    reserved: HashMap<&'a str, Resources>,
    /// Live tasks per (service, label name, label value) for spread
    /// preferences; nodes without the label count under "".
    by_label: HashMap<(String, String, String), usize>,
    /// Host-mode ports taken, as (node, protocol, published port).
    host_ports: HashSet<(&'a str, Proto, u16)>,
}

impl<'a> Placed<'a> {
    fn of(st: &'a State) -> Placed<'a> {
        let mut p = Placed::default();
        for t in st.tasks.values().filter(|t| t.is_live()) {
            if t.status.state < TaskState::Assigned {
                continue;
            }
            if let Some(node) = t.node_id.as_deref().and_then(|n| st.nodes.get(n)) {
                p.add(t, node);
            }
        }
        p
    }

    fn add(&mut self, t: &'a Task, node: &'a Node) {
        *self.total.entry(&node.id).or_default() += 1;
        *self
            .by_service
            .entry((&node.id, &t.service_id))
            .or_default() += 1;
        let r = self.reserved.entry(&node.id).or_default();
        r.reserve_nano_cpus += t.spec.resources.reserve_nano_cpus;
        r.reserve_memory_bytes += t.spec.resources.reserve_memory_bytes;
        for p in t.spec.ports.iter().filter(|p| p.mode == PublishMode::Host) {
            self.host_ports.insert((&node.id, p.protocol, p.published));
        }
        for label in t.spec.placement.spread_labels() {
            let value = node.labels.get(&label).cloned().unwrap_or_default();
            *self
                .by_label
                .entry((t.service_id.clone(), label, value))
                .or_default() += 1;
        }
    }

    pub fn total(&self, node: &str) -> usize {
        self.total.get(node).copied().unwrap_or(0)
    }

    pub fn of_service(&self, node: &str, service: &str) -> usize {
        self.by_service.get(&(node, service)).copied().unwrap_or(0)
    }

    pub fn host_port_taken(&self, node: &str, protocol: Proto, port: u16) -> bool {
        self.host_ports.contains(&(node, protocol, port))
    }

    pub fn reserved(&self, node: &str) -> Resources {
        self.reserved.get(node).copied().unwrap_or_default()
    }

    /// Spread score of `node` for `task`: lower is better. Preferences
    /// first (fewest of the service's tasks among nodes with the same label
    /// value), then the service's tasks on the node, then all its tasks.
    fn score(&self, task: &Task, labels: &[String], node: &Node) -> (Vec<usize>, usize, usize) {
        let prefs = labels
            .iter()
            .map(|l| {
                let value = node.labels.get(l).cloned().unwrap_or_default();
                self.by_label
                    .get(&(task.service_id.clone(), l.clone(), value))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        (
            prefs,
            self.of_service(&node.id, &task.service_id),
            self.total(&node.id),
        )
    }
}

/// Run the pipeline for one task: the nodes that pass, or the explanation.
pub fn candidates<'a>(
    filters: &[Box<dyn Filter + Send + Sync>],
    task: &Task,
    all: impl Iterator<Item = &'a Node>,
    placed: &Placed,
) -> Result<Vec<&'a Node>, String> {
    let mut passing: Vec<&Node> = all.collect();
    let mut reasons = Vec::new();
    for f in filters {
        let before = passing.len();
        passing.retain(|n| f.check(task, n, placed));
        let rejected = before - passing.len();
        if rejected > 0 {
            reasons.push(f.explain(rejected));
        }
    }
    if passing.is_empty() {
        if reasons.is_empty() {
            reasons.push("no nodes in the cluster".into());
        }
        return Err(format!("no suitable node ({})", reasons.join("; ")));
    }
    Ok(passing)
}

/// Whether a service has a task that runs and passes its healthcheck, as
/// a task that depends on it (compose's `depends_on` with `condition:
/// service_healthy`) needs before it may start. Asked once per pass and
/// name: it scans the tasks.
fn healthy(st: &State, name: &str) -> bool {
    st.service_by_name(name).is_some_and(|s| {
        st.tasks_of(&s.id)
            .any(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
    })
}

/// Why a task may not start yet: a service it depends on is not healthy.
fn waiting_on<'a>(
    st: &State,
    task: &'a Task,
    known: &mut HashMap<&'a str, bool>,
) -> Option<String> {
    let dep = task
        .spec
        .depends_on
        .iter()
        .find(|dep| !*known.entry(dep).or_insert_with(|| healthy(st, dep)))?;
    Some(format!("waiting for service {dep} to have a healthy task"))
}

/// The node the full scan picks for `task`: of those that pass every
/// filter, the best spread score, then the lowest ID.
fn best_of<'a>(
    filters: &[Box<dyn Filter + Send + Sync>],
    task: &Task,
    st: &'a State,
    placed: &Placed,
) -> Result<&'a Node, String> {
    let labels = task.spec.placement.spread_labels();
    let nodes = candidates(filters, task, st.nodes.values(), placed)?;
    Ok(nodes
        .into_iter()
        .min_by(|a, b| {
            (placed.score(task, &labels, a), &a.id).cmp(&(placed.score(task, &labels, b), &b.id))
        })
        .expect("candidates returns at least one node"))
}

pub fn plan(st: &State, now: Millis) -> Plan {
    place(st, now, true)
}

/// One pass; `grouped` picks nodes through `spread::Group` where it
/// applies, or else by the full scan for every task (which the tests
/// compare it with).
fn place(st: &State, now: Millis, grouped: bool) -> Plan {
    let filters = pipeline();
    let mut placed = Placed::of(st);
    let mut assignments = Vec::new();
    let mut pending: Vec<&Task> = st
        .tasks
        .values()
        .map(|t| &**t)
        .filter(|t| {
            // Only the allocator's PENDING tasks: they have their addresses.
            t.status.state == TaskState::Pending
                && t.networks.is_some()
                && t.desired_state <= TaskState::Running
        })
        .collect();
    // Oldest first, then by slot, so placement order is stable.
    pending.sort_by(|a, b| {
        (a.meta.created_at, a.slot, &a.id).cmp(&(b.meta.created_at, b.slot, &b.id))
    });
    let nodes: Vec<&Node> = st.nodes.values().collect();
    let mut groups: HashMap<(&str, u64), Group> = HashMap::new();
    let mut healthy = HashMap::new();
    let mut placements = 0;

    for task in pending {
        let placement = if let Some(why) = waiting_on(st, task, &mut healthy) {
            Err(why)
        } else if grouped && Group::applies(task) {
            let group = groups
                .entry((&task.service_id, task.spec_version))
                .or_insert_with(|| Group::new(task, &nodes, &filters, &placed));
            if group.holds(task) {
                match group.pick(task, &nodes, &filters, &placed) {
                    Some(i) => Ok(nodes[i]),
                    None => Err(group.no_fit(placements, || {
                        candidates(&filters, task, st.nodes.values(), &placed)
                            .expect_err("a node passes the filters that the group ran")
                    })),
                }
            } else {
                best_of(&filters, task, st, &placed)
            }
        } else {
            best_of(&filters, task, st, &placed)
        };
        match placement {
            Ok(best) => {
                placed.add(task, best);
                placements += 1;
                assignments.push(Assignment {
                    task_id: task.id.clone(),
                    node_id: Some(best.id.clone()),
                    message: "scheduled".into(),
                    at: now,
                });
            }
            Err(why) => {
                // Re-write a pending reason only when it changes, so an
                // unschedulable task does not fill the raft log.
                if task.status.state != TaskState::Pending || task.status.message != why {
                    assignments.push(Assignment {
                        task_id: task.id.clone(),
                        node_id: None,
                        message: why,
                        at: now,
                    });
                }
            }
        }
    }
    let mut out = Plan::default();
    if !assignments.is_empty() {
        out.commands.push(Command::Assign(assignments));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::*;
    use crate::types::{Availability, Mode, NodeState};

    fn unassigned(id: &str, svc: &crate::types::Service, slot: u64) -> Task {
        let mut t = task(id, svc, slot, TaskState::Pending);
        t.node_id = None;
        t
    }

    /// Unplaced tasks t1..tN in slots 1..N of `svc`.
    fn slots(svc: &crate::types::Service, n: u64) -> Vec<Task> {
        (1..=n)
            .map(|i| unassigned(&format!("t{i}"), svc, i))
            .collect()
    }

    /// The state after one scheduling pass is committed.
    fn after_plan(st: &State) -> State {
        let mut next = st.clone();
        for c in plan(st, 0).commands {
            next.apply(c);
        }
        next
    }

    /// Pending tasks and their reasons.
    fn pending(st: &State) -> Vec<String> {
        st.tasks
            .values()
            .filter(|t| t.status.state == TaskState::Pending)
            .map(|t| t.status.message.clone())
            .collect()
    }

    fn placed(st: &State) -> HashMap<String, usize> {
        let next = after_plan(st);
        let mut per_node = HashMap::new();
        for t in next.tasks.values() {
            if t.status.state == TaskState::Assigned {
                *per_node.entry(t.node_id.clone().unwrap()).or_default() += 1;
            }
        }
        per_node
    }

    #[test]
    fn spreads_replicas_across_nodes() {
        let s = service("s", Mode::Replicated, 4);
        let tasks = slots(&s, 4);
        let st = state(&[node("n1"), node("n2")], &[s], &tasks);
        let per_node = placed(&st);
        assert_eq!((per_node["n1"], per_node["n2"]), (2, 2));
    }

    #[test]
    fn paused_drained_and_down_nodes_get_nothing_and_the_reason_is_explained() {
        let s = service("s", Mode::Replicated, 1);
        let mut paused = node("n1");
        paused.availability = Availability::Pause;
        let mut drained = node("n2");
        drained.availability = Availability::Drain;
        let mut down = node("n3");
        down.state = NodeState::Down;
        let st = state(
            &[paused, drained, down],
            std::slice::from_ref(&s),
            &[unassigned("t", &s, 1)],
        );
        let p = plan(&st, 0);
        let Command::Assign(a) = &p.commands[0] else {
            panic!("expected an assignment")
        };
        assert_eq!(a[0].node_id, None);
        assert_eq!(
            a[0].message,
            "no suitable node (3 nodes not available for new tasks)"
        );
        // The same reason is not written again.
        let mut next = st.clone();
        next.apply(p.commands[0].clone());
        assert!(plan(&next, 0).commands.is_empty());
    }

    #[test]
    fn global_task_goes_only_to_its_node() {
        let s = service("s", Mode::Global, 0);
        let mut t = task("t", &s, 0, TaskState::Pending);
        t.node_id = Some("n2".into());
        let st = state(&[node("n1"), node("n2")], &[s], &[t]);
        assert_eq!(placed(&st).get("n2"), Some(&1));
        assert_eq!(placed(&st).get("n1"), None);
    }

    fn pending_reason(st: &State) -> String {
        let p = plan(st, 0);
        let Command::Assign(a) = &p.commands[0] else {
            panic!("expected an assignment")
        };
        assert_eq!(a[0].node_id, None);
        a[0].message.clone()
    }

    #[test]
    fn constraints_pick_matching_nodes_and_explain_the_rest() {
        let mut s = service("s", Mode::Replicated, 2);
        s.spec.placement.constraints = vec!["node.labels.zone==east".into()];
        let mut east = node("n2");
        east.labels.insert("zone".into(), "east".into());
        let tasks = [unassigned("t1", &s, 1), unassigned("t2", &s, 2)];
        let st = state(
            &[node("n1"), east.clone()],
            std::slice::from_ref(&s),
            &tasks,
        );
        assert_eq!(placed(&st).get("n2"), Some(&2));
        assert_eq!(placed(&st).get("n1"), None);
        let st = state(&[node("n1"), node("n3")], &[s.clone()], &tasks);
        assert_eq!(
            pending_reason(&st),
            "no suitable node (scheduling constraints not satisfied on 2 nodes)"
        );
    }

    #[test]
    fn reservations_count_what_is_already_placed() {
        let mut s = service("s", Mode::Replicated, 3);
        s.spec.resources.reserve_memory_bytes = 600;
        let mut small = node("n1");
        small.memory_bytes = 1000;
        small.nano_cpus = 1_000_000_000;
        let mut big = node("n2");
        big.memory_bytes = 1300;
        big.nano_cpus = 1_000_000_000;
        let tasks = slots(&s, 3);
        let st = state(&[small, big], std::slice::from_ref(&s), &tasks);
        let mut next = after_plan(&st);
        let assigned = next
            .tasks
            .values()
            .filter(|t| t.status.state == TaskState::Assigned)
            .count();
        // 600 fits once on n1 (1000) and twice on n2 (1200 ≤ 1300).
        assert_eq!(assigned, 3);
        let mut more = service("m", Mode::Replicated, 1);
        more.spec.resources.reserve_memory_bytes = 600;
        next.services
            .insert("m".into(), std::sync::Arc::new(more.clone()));
        next.tasks
            .insert("x".into(), std::sync::Arc::new(unassigned("x", &more, 1)));
        assert_eq!(
            pending_reason(&next),
            "no suitable node (2 nodes with insufficient memory)"
        );
    }

    #[test]
    fn max_replicas_per_node_caps_each_node() {
        let mut s = service("s", Mode::Replicated, 3);
        s.spec.placement.max_replicas_per_node = 1;
        let tasks = slots(&s, 3);
        let st = state(&[node("n1"), node("n2")], std::slice::from_ref(&s), &tasks);
        let next = after_plan(&st);
        assert_eq!(
            pending(&next),
            ["no suitable node (max replicas per node limit reached on 2 nodes)"]
        );
    }

    #[test]
    fn a_host_mode_port_holds_one_task_per_node_across_services() {
        let port = crate::ports::PortConfig {
            protocol: Proto::Tcp,
            published: 8080,
            target: 80,
            mode: PublishMode::Host,
            force: false,
        };
        let mut web = service("web", Mode::Replicated, 3);
        web.spec.ports = vec![port.clone()];
        let mut other = service("other", Mode::Replicated, 1);
        other.spec.ports = vec![crate::ports::PortConfig {
            protocol: Proto::Udp,
            ..port.clone()
        }];
        let mut tasks = slots(&web, 3);
        tasks.push(unassigned("u", &other, 1));
        let st = state(&[node("n1"), node("n2")], &[web.clone(), other], &tasks);
        let next = after_plan(&st);
        let web_nodes: Vec<_> = next
            .tasks
            .values()
            .filter(|t| t.service_id == "web" && t.status.state == TaskState::Assigned)
            .map(|t| t.node_id.clone().unwrap())
            .collect();
        assert_eq!(web_nodes.len(), 2);
        assert_ne!(web_nodes[0], web_nodes[1]);
        // The same number over UDP is another port.
        assert_eq!(next.tasks["u"].status.state, TaskState::Assigned);
        assert_eq!(
            pending(&next),
            ["no suitable node (host-mode port already in use on 2 nodes)"]
        );
    }

    #[test]
    fn spread_preference_balances_label_values_before_nodes() {
        let mut s = service("s", Mode::Replicated, 4);
        s.spec.placement.preferences = vec!["spread=node.labels.zone".into()];
        // Zone a has three nodes, zone b one: spreading over zones puts
        // half the tasks on the lone b node.
        let mut nodes = Vec::new();
        for (id, zone) in [("n1", "a"), ("n2", "a"), ("n3", "a"), ("n4", "b")] {
            let mut n = node(id);
            n.labels.insert("zone".into(), zone.into());
            nodes.push(n);
        }
        let tasks = slots(&s, 4);
        let st = state(&nodes, &[s], &tasks);
        assert_eq!(placed(&st).get("n4"), Some(&2));
    }

    #[test]
    fn a_task_waits_for_the_services_it_depends_on_to_be_healthy() {
        let db = service("db", Mode::Replicated, 1);
        let mut api = service("api", Mode::Replicated, 1);
        api.spec.depends_on = vec![db.spec.name.clone()];
        let starting = task("d1", &db, 1, TaskState::Starting);
        let waiting = unassigned("a1", &api, 1);
        let st = state(
            &[node("n1")],
            &[db.clone(), api.clone()],
            &[starting, waiting.clone()],
        );
        let p = plan(&st, 5);
        let Command::Assign(a) = &p.commands[0] else {
            panic!("{:?}", p.commands)
        };
        assert_eq!(a[0].node_id, None);
        assert_eq!(
            a[0].message,
            "waiting for service svc-db to have a healthy task"
        );
        let healthy = task("d1", &db, 1, TaskState::Running);
        let st = state(&[node("n1")], &[db, api], &[healthy, waiting]);
        let p = plan(&st, 6);
        let Command::Assign(a) = &p.commands[0] else {
            panic!("{:?}", p.commands)
        };
        assert_eq!(a[0].node_id.as_deref(), Some("n1"));
    }
    #[test]
    fn grouped_placement_picks_the_node_the_full_scan_picks() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..200 {
            let mut nodes = Vec::new();
            for i in 0..rng.gen_range(1..12) {
                let mut n = node(&format!("n{i:02}"));
                n.nano_cpus = rng.gen_range(1..4) * 1_000_000_000;
                n.memory_bytes = rng.gen_range(1..4) * 1000;
                match rng.gen_range(0..10) {
                    0 => n.state = NodeState::Down,
                    1 => n.availability = Availability::Drain,
                    _ => {}
                }
                let zone = ["a", "b"][rng.gen_range(0..2)];
                n.labels.insert("zone".into(), zone.into());
                nodes.push(n);
            }
            let mut services = Vec::new();
            let mut tasks = Vec::new();
            for k in 0..rng.gen_range(1..5) {
                let mut s = service(&format!("s{k}"), Mode::Replicated, 0);
                let p = &mut s.spec.placement;
                p.max_replicas_per_node = rng.gen_range(0..3);
                if rng.gen_bool(0.3) {
                    p.constraints = vec!["node.labels.zone==a".into()];
                }
                if rng.gen_bool(0.2) {
                    p.preferences = vec!["spread=node.labels.zone".into()];
                }
                s.spec.resources.reserve_memory_bytes = rng.gen_range(0..3) * 400;
                s.spec.resources.reserve_nano_cpus = rng.gen_range(0..2) * 500_000_000;
                if rng.gen_bool(0.2) {
                    s.spec.ports = vec![crate::ports::PortConfig {
                        protocol: Proto::Tcp,
                        published: 8080,
                        target: 80,
                        mode: PublishMode::Host,
                        force: false,
                    }];
                }
                for slot in 1..=rng.gen_range(1..25) {
                    let mut t = unassigned(&format!("t{k}-{slot}"), &s, slot);
                    // Some already run somewhere; some were made later.
                    if rng.gen_bool(0.2) {
                        t.status.state = TaskState::Running;
                        t.node_id = Some(nodes[rng.gen_range(0..nodes.len())].id.clone());
                    }
                    t.meta.created_at = rng.gen_range(0..3);
                    tasks.push(t);
                }
                services.push(s);
            }
            let st = state(&nodes, &services, &tasks);
            let (fast, full) = (place(&st, 0, true), place(&st, 0, false));
            assert_eq!(
                format!("{:?}", fast.commands),
                format!("{:?}", full.commands),
                "round {round}"
            );
        }
    }
}
