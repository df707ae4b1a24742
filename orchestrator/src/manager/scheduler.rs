//! The scheduler: places unassigned tasks on nodes. Each candidate node runs
//! through a pipeline of filters; among the nodes that pass, the one running
//! the fewest tasks of the same service wins (spread), then the one running
//! the fewest tasks overall. When no node passes, the task stays pending and
//! each filter explains how many nodes it turned away, as Swarm does:
//! "no suitable node (2 nodes not available for new tasks)".

use super::Plan;
use crate::state::{Assignment, Command, State};
use crate::types::{Availability, Millis, Node, NodeState, Task, TaskState};
use std::collections::HashMap;

/// One step of the placement pipeline.
pub trait Filter {
    /// Whether `node` may run `task`.
    fn check(&self, task: &Task, node: &Node) -> bool;
    /// Why `rejected` nodes were turned away, for the pending message.
    fn explain(&self, rejected: usize) -> String;
}

fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

/// The node is up and accepts new tasks (not paused or drained).
pub struct ReadyFilter;

impl Filter for ReadyFilter {
    fn check(&self, _task: &Task, node: &Node) -> bool {
        node.state == NodeState::Ready && node.availability == Availability::Active
    }
    fn explain(&self, rejected: usize) -> String {
        format!("{} not available for new tasks", nodes(rejected))
    }
}

/// A global task may only run on the node it was made for.
pub struct PinnedNodeFilter;

impl Filter for PinnedNodeFilter {
    fn check(&self, task: &Task, node: &Node) -> bool {
        task.slot > 0 || task.node_id.as_deref() == Some(node.id.as_str())
    }
    fn explain(&self, rejected: usize) -> String {
        format!("{} not the global task's node", nodes(rejected))
    }
}

pub fn pipeline() -> Vec<Box<dyn Filter + Send + Sync>> {
    vec![Box::new(ReadyFilter), Box::new(PinnedNodeFilter)]
}

/// Run the pipeline for one task: the nodes that pass, or the explanation.
pub fn candidates<'a>(
    filters: &[Box<dyn Filter + Send + Sync>],
    task: &Task,
    all: impl Iterator<Item = &'a Node>,
) -> Result<Vec<&'a Node>, String> {
    let mut passing: Vec<&Node> = all.collect();
    let mut reasons = Vec::new();
    for f in filters {
        let before = passing.len();
        passing.retain(|n| f.check(task, n));
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

pub fn plan(st: &State, now: Millis) -> Plan {
    let filters = pipeline();
    // Live tasks per node, overall and per service, updated as we place.
    let mut load: HashMap<&str, usize> = HashMap::new();
    let mut service_load: HashMap<(&str, &str), usize> = HashMap::new();
    for t in st.tasks.values().filter(|t| t.is_live()) {
        if let (Some(node), true) = (t.node_id.as_deref(), t.status.state >= TaskState::Assigned) {
            *load.entry(node).or_default() += 1;
            *service_load
                .entry((node, t.service_id.as_str()))
                .or_default() += 1;
        }
    }

    let mut assignments = Vec::new();
    let mut pending: Vec<&Task> = st
        .tasks
        .values()
        .filter(|t| t.status.state <= TaskState::Pending && t.desired_state <= TaskState::Running)
        .collect();
    // Oldest first, then by slot, so placement order is stable.
    pending.sort_by_key(|t| (t.created_at, t.slot, t.id.clone()));

    for task in pending {
        match candidates(&filters, task, st.nodes.values()) {
            Ok(nodes) => {
                let best = nodes
                    .into_iter()
                    .min_by_key(|n| {
                        let svc = service_load
                            .get(&(n.id.as_str(), task.service_id.as_str()))
                            .copied()
                            .unwrap_or(0);
                        (
                            svc,
                            load.get(n.id.as_str()).copied().unwrap_or(0),
                            n.id.clone(),
                        )
                    })
                    .expect("candidates returns at least one node");
                *load.entry(best.id.as_str()).or_default() += 1;
                *service_load
                    .entry((best.id.as_str(), task.service_id.as_str()))
                    .or_default() += 1;
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
    use crate::types::Mode;

    fn unassigned(id: &str, svc: &crate::types::Service, slot: u64) -> Task {
        let mut t = task(id, svc, slot, TaskState::New);
        t.node_id = None;
        t
    }

    fn placed(st: &State) -> HashMap<String, usize> {
        let mut next = st.clone();
        for c in plan(st, 0).commands {
            next.apply(c);
        }
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
        let tasks: Vec<_> = (1..=4)
            .map(|i| unassigned(&format!("t{i}"), &s, i))
            .collect();
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
        let mut t = task("t", &s, 0, TaskState::New);
        t.node_id = Some("n2".into());
        let st = state(&[node("n1"), node("n2")], &[s], &[t]);
        assert_eq!(placed(&st).get("n2"), Some(&1));
        assert_eq!(placed(&st).get("n1"), None);
    }
}
