//! Placing many tasks of one spec without running the filters over every
//! node for each task.
//!
//! Tasks of one service and spec pass or fail the same filters on a node,
//! and placing a task changes only the node it went to. So a group runs
//! the filters over all nodes once and keeps the nodes that pass in a heap,
//! ordered as the full scan orders them: fewest of the service's tasks,
//! then fewest tasks, then lowest ID. A placement (by this group or any
//! other) makes that node's entries stale; a stale entry is checked again
//! only when it reaches the top. During a pass tasks are only added, so
//! scores only grow and filters only turn nodes away: a fresh entry at the
//! top is the true minimum, the node the full scan would pick, and a node
//! that leaves the heap never has to come back.
//!
//! Swarmkit schedules groups of identical tasks for the same reason; this
//! keeps the per-task decision of the full scan, so the order tasks are
//! placed in and the node each gets are unchanged.

use super::filters::Filter;
use super::Placed;
use crate::types::{Node, ServiceSpec, Task};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

type Filters = [Box<dyn Filter + Send + Sync>];

/// (tasks of the service on the node, tasks on the node, node index).
type Key = (usize, usize, usize);

pub struct Group<'a> {
    spec: &'a ServiceSpec,
    heap: BinaryHeap<Reverse<Key>>,
    /// Why no node fits, once the heap is empty (it stays empty for the
    /// rest of the pass, but the counts in the reason can move, so it is
    /// kept only while no task is placed).
    no_fit: Option<(usize, String)>,
}

fn passes(filters: &Filters, task: &Task, node: &Node, placed: &Placed) -> bool {
    filters.iter().all(|f| f.check(task, node, placed))
}

fn key(task: &Task, node: &Node, i: usize, placed: &Placed) -> Key {
    (
        placed.of_service(&node.id, &task.service_id),
        placed.total(&node.id),
        i,
    )
}

impl<'a> Group<'a> {
    /// Whether the group path applies: a replicated task (a global one is
    /// pinned to its node) with no spread preference (those scores move
    /// for every node sharing a label value, not only the one placed on).
    pub fn applies(task: &Task) -> bool {
        task.slot > 0 && task.spec.placement.preferences.is_empty()
    }

    /// The group of `task`'s spec: every node (`nodes`, in ID order) that
    /// passes the filters now.
    pub fn new(task: &'a Task, nodes: &[&Node], filters: &Filters, placed: &Placed) -> Group<'a> {
        let heap = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| passes(filters, task, n, placed))
            .map(|(i, n)| Reverse(key(task, n, i, placed)))
            .collect();
        Group {
            spec: &task.spec,
            heap,
            no_fit: None,
        }
    }

    /// Whether `task` has this group's spec (a service's tasks of one
    /// version always do).
    pub fn holds(&self, task: &Task) -> bool {
        *self.spec == task.spec
    }

    /// The index of the node for `task`, as the full scan would choose it,
    /// or None when no node passes. The caller places the task there.
    pub fn pick(
        &mut self,
        task: &Task,
        nodes: &[&Node],
        filters: &Filters,
        placed: &Placed,
    ) -> Option<usize> {
        while let Some(Reverse(entry)) = self.heap.pop() {
            let (_, total, i) = entry;
            let node = nodes[i];
            if total == placed.total(&node.id) {
                // Back in as it is: the placement about to be made makes
                // it stale, so it is looked at again when next on top.
                self.heap.push(Reverse(entry));
                return Some(i);
            }
            if passes(filters, task, node, placed) {
                self.heap.push(Reverse(key(task, node, i, placed)));
            }
        }
        None
    }

    /// Why no node fits: `explain()`'s answer, worked out again only when
    /// a task was placed since (`placements` counts them in this pass).
    pub fn no_fit(&mut self, placements: usize, explain: impl FnOnce() -> String) -> String {
        match &self.no_fit {
            Some((at, why)) if *at == placements => why.clone(),
            _ => {
                let why = explain();
                self.no_fit = Some((placements, why.clone()));
                why
            }
        }
    }
}
