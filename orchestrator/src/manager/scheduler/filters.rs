//! The placement pipeline's steps. Each says whether a node may run a task,
//! given what is already placed, and explains a rejection in the words
//! `service ps` shows: "no suitable node (1 node with insufficient memory)".

use super::Placed;
use crate::ports::PublishMode;
use crate::types::{Availability, Node, NodeState, Task};

/// One step of the placement pipeline.
pub trait Filter {
    /// Whether `node` may run `task`, given what is already placed.
    fn check(&self, task: &Task, node: &Node, placed: &Placed) -> bool;
    /// Why `rejected` nodes were turned away, for the pending message.
    fn explain(&self, rejected: usize) -> String;
}

pub fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

pub fn pipeline() -> Vec<Box<dyn Filter + Send + Sync>> {
    vec![
        Box::new(ReadyFilter),
        Box::new(PinnedNodeFilter),
        Box::new(ConstraintFilter),
        Box::new(MaxPerNodeFilter),
        Box::new(CpuFilter),
        Box::new(MemoryFilter),
        Box::new(HostPortFilter),
    ]
}

/// The node is up and accepts new tasks (not paused or drained).
pub struct ReadyFilter;

impl Filter for ReadyFilter {
    fn check(&self, _task: &Task, node: &Node, _: &Placed) -> bool {
        node.state == NodeState::Ready && node.availability == Availability::Active
    }
    fn explain(&self, rejected: usize) -> String {
        format!("{} not available for new tasks", nodes(rejected))
    }
}

/// A global task may only run on the node it was made for.
pub struct PinnedNodeFilter;

impl Filter for PinnedNodeFilter {
    fn check(&self, task: &Task, node: &Node, _: &Placed) -> bool {
        task.slot > 0 || task.node_id.as_deref() == Some(node.id.as_str())
    }
    fn explain(&self, rejected: usize) -> String {
        format!("{} not the global task's node", nodes(rejected))
    }
}

/// `--constraint`: every expression must hold on the node.
pub struct ConstraintFilter;

impl Filter for ConstraintFilter {
    fn check(&self, task: &Task, node: &Node, _: &Placed) -> bool {
        task.spec.placement.allows(node)
    }
    fn explain(&self, rejected: usize) -> String {
        format!(
            "scheduling constraints not satisfied on {}",
            nodes(rejected)
        )
    }
}

/// `--replicas-max-per-node`.
pub struct MaxPerNodeFilter;

impl Filter for MaxPerNodeFilter {
    fn check(&self, task: &Task, node: &Node, placed: &Placed) -> bool {
        let max = task.spec.placement.max_replicas_per_node;
        max == 0 || (placed.of_service(&node.id, &task.service_id) as u64) < max
    }
    fn explain(&self, rejected: usize) -> String {
        format!("max replicas per node limit reached on {}", nodes(rejected))
    }
}

/// `--reserve-cpu` against the node's CPUs minus what placed tasks reserve.
pub struct CpuFilter;

impl Filter for CpuFilter {
    fn check(&self, task: &Task, node: &Node, placed: &Placed) -> bool {
        let want = task.spec.resources.reserve_nano_cpus;
        want == 0 || placed.reserved(&node.id).reserve_nano_cpus + want <= node.nano_cpus
    }
    fn explain(&self, rejected: usize) -> String {
        format!("{} with insufficient CPU", nodes(rejected))
    }
}

/// `--reserve-memory` against the node's memory minus placed reservations.
pub struct MemoryFilter;

impl Filter for MemoryFilter {
    fn check(&self, task: &Task, node: &Node, placed: &Placed) -> bool {
        let want = task.spec.resources.reserve_memory_bytes;
        want == 0 || placed.reserved(&node.id).reserve_memory_bytes + want <= node.memory_bytes
    }
    fn explain(&self, rejected: usize) -> String {
        format!("{} with insufficient memory", nodes(rejected))
    }
}

/// Host-mode published ports: one task per node and port.
pub struct HostPortFilter;

impl Filter for HostPortFilter {
    fn check(&self, task: &Task, node: &Node, placed: &Placed) -> bool {
        task.spec
            .ports
            .iter()
            .filter(|p| p.mode == PublishMode::Host)
            .all(|p| !placed.host_port_taken(&node.id, p.protocol, p.published))
    }
    fn explain(&self, rejected: usize) -> String {
        format!("host-mode port already in use on {}", nodes(rejected))
    }
}
