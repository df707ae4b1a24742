//! The orchestrator: keeps each service at its declared shape. Replicated
//! services get one live task per slot 1..N; global services one per eligible
//! node. A task that ends by itself is replaced according to the service's
//! restart policy (condition, delay, max attempts), which is what Swarm's
//! separate restart supervisor does; keeping both in one pass means no two
//! writers ever race to fill the same slot.

use super::Plan;
use crate::state::{Command, State};
use crate::types::{
    new_id, Availability, Meta, Millis, Mode, NodeState, RestartCondition, Service, Task,
    TaskState, TaskStatus,
};
use std::collections::BTreeMap;

pub fn plan(st: &State, now: Millis) -> Plan {
    let mut out = Plan::default();
    let mut create = Vec::new();
    let mut promote = Vec::new();
    let mut supersede = Vec::new();
    let mut remove = Vec::new();

    // A node that is DOWN, drained or removed from the swarm keeps no
    // replicas: they start elsewhere.
    let on_down_node = |t: &Task| {
        t.node_id.as_deref().is_some_and(|n| {
            st.nodes
                .get(n)
                .is_none_or(|n| n.state == NodeState::Down || n.availability == Availability::Drain)
        })
    };
    for svc in st.services.values() {
        let groups = match svc.spec.mode {
            Mode::Replicated => replicated_groups(st, svc, &mut remove),
            Mode::Global => global_groups(st, svc, &mut remove),
        };
        for (key, tasks) in groups {
            let action = match &key {
                // A replica on a node that stopped answering (or is drained)
                // is replaced at once; when the node comes back its agent
                // sees the old task shut down, so the slot never has two
                // live tasks.
                SlotKey::Slot(_) => match tasks.iter().find(|t| t.is_live() && on_down_node(t)) {
                    Some(lost) => SlotAction::Create {
                        attempt: lost.attempt,
                        not_before: 0,
                        replaces: Some(lost.id.clone()),
                    },
                    None => slot_action(svc, &tasks, now),
                },
                SlotKey::Node(_) => slot_action(svc, &tasks, now),
            };
            match action {
                SlotAction::Keep => {}
                SlotAction::Start(id) => promote.push(id),
                SlotAction::WaitUntil(at) => {
                    out.wake_at = Some(out.wake_at.map_or(at, |w: Millis| w.min(at)))
                }
                SlotAction::Create {
                    attempt,
                    not_before,
                    replaces,
                } => {
                    create.push(new_task(svc, key, attempt, not_before, now));
                    supersede.extend(replaces);
                    if not_before > now {
                        out.wake_at = Some(out.wake_at.map_or(not_before, |w| w.min(not_before)));
                    }
                }
            }
        }
    }

    // Mark replaced tasks first so the slot is free when the new task lands.
    if !supersede.is_empty() {
        out.commands.push(Command::SetDesiredState {
            ids: supersede,
            state: TaskState::Shutdown,
        });
    }
    if !remove.is_empty() {
        out.commands.push(Command::SetDesiredState {
            ids: remove,
            state: TaskState::Remove,
        });
    }
    if !promote.is_empty() {
        out.commands.push(Command::SetDesiredState {
            ids: promote,
            state: TaskState::Running,
        });
    }
    if !create.is_empty() {
        out.commands.push(Command::CreateTasks(create));
    }
    out
}

/// Where a task lives: a replica slot, or a node for global services.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SlotKey {
    Slot(u64),
    Node(String),
}

type Groups<'a> = BTreeMap<SlotKey, Vec<&'a Task>>;

/// Tasks of a replicated service grouped by slot, with one (possibly empty)
/// group for every wanted slot. Live tasks in slots above N are scaled away.
fn replicated_groups<'a>(st: &'a State, svc: &'a Service, remove: &mut Vec<String>) -> Groups<'a> {
    let mut groups: Groups = (1..=svc.spec.replicas)
        .map(|s| (SlotKey::Slot(s), Vec::new()))
        .collect();
    for t in st.tasks_of(&svc.id) {
        if t.desired_state >= TaskState::Remove {
            continue;
        }
        if t.slot > svc.spec.replicas {
            remove.push(t.id.clone());
        } else {
            groups.entry(SlotKey::Slot(t.slot)).or_default().push(t);
        }
    }
    groups
}

/// Tasks of a global service grouped by node. Nodes that accept new tasks get
/// a group; tasks on drained or vanished nodes are removed. Paused nodes keep
/// what they run but get nothing new.
fn global_groups<'a>(st: &'a State, svc: &'a Service, remove: &mut Vec<String>) -> Groups<'a> {
    let mut groups: Groups = st
        .nodes
        .values()
        .filter(|n| n.state == NodeState::Ready && n.availability == Availability::Active)
        .filter(|n| svc.spec.placement.allows(n))
        .map(|n| (SlotKey::Node(n.id.clone()), Vec::new()))
        .collect();
    for t in st.tasks_of(&svc.id) {
        if t.desired_state >= TaskState::Remove {
            continue;
        }
        let node = t.node_id.clone().unwrap_or_default();
        let keep = match st.nodes.get(&node) {
            Some(n) => n.availability != Availability::Drain,
            None => false,
        };
        if keep {
            groups.entry(SlotKey::Node(node)).or_default().push(t);
        } else if t.desired_state <= TaskState::Running {
            remove.push(t.id.clone());
        }
    }
    groups
}

#[derive(Debug, PartialEq)]
enum SlotAction {
    Keep,
    /// A delayed restart whose delay is over.
    Start(String),
    WaitUntil(Millis),
    Create {
        attempt: u64,
        not_before: Millis,
        replaces: Option<String>,
    },
}

fn slot_action(svc: &Service, tasks: &[&Task], now: Millis) -> SlotAction {
    if let Some(live) = tasks.iter().find(|t| t.is_live()) {
        return match (live.desired_state, live.restart_at) {
            (TaskState::Ready, Some(at)) if at > now => SlotAction::WaitUntil(at),
            (TaskState::Ready, _) => SlotAction::Start(live.id.clone()),
            _ => SlotAction::Keep,
        };
    }
    let latest = tasks.iter().max_by_key(|t| (t.meta.created_at, t.attempt));
    match latest {
        // The task ended by itself: the restart policy decides.
        Some(t) if t.desired_state <= TaskState::Running => {
            if !should_restart(svc, t) {
                return SlotAction::Keep;
            }
            let ended = t.status.timestamp;
            SlotAction::Create {
                attempt: t.attempt + 1,
                not_before: ended.saturating_add(svc.spec.restart.delay_ms),
                replaces: Some(t.id.clone()),
            }
        }
        // An empty slot, or one whose last task was deliberately stopped.
        _ => SlotAction::Create {
            attempt: 0,
            not_before: 0,
            replaces: None,
        },
    }
}

fn should_restart(svc: &Service, ended: &Task) -> bool {
    let policy = &svc.spec.restart;
    let condition_met = match policy.condition {
        RestartCondition::Any => true,
        RestartCondition::None => false,
        RestartCondition::OnFailure => ended.status.state != TaskState::Complete,
    };
    let attempts_left = policy.max_attempts == 0 || ended.attempt < policy.max_attempts;
    condition_met && attempts_left
}

pub(super) fn new_task(
    svc: &Service,
    key: SlotKey,
    attempt: u64,
    not_before: Millis,
    now: Millis,
) -> Task {
    let (slot, node_id) = match key {
        SlotKey::Slot(s) => (s, None),
        SlotKey::Node(n) => (0, Some(n)),
    };
    let delayed = not_before > now;
    Task {
        id: new_id(),
        service_id: svc.id.clone(),
        service_name: svc.spec.name.clone(),
        slot,
        node_id,
        spec: svc.spec.clone(),
        spec_version: svc.meta.version,
        desired_state: if delayed {
            TaskState::Ready
        } else {
            TaskState::Running
        },
        status: TaskStatus {
            timestamp: now,
            ..TaskStatus::new(TaskState::New, "created")
        },
        meta: Meta::new(now),
        restart_at: delayed.then_some(not_before),
        attempt,
        networks: None,
    }
}

#[cfg(test)]
#[path = "orchestrator_tests.rs"]
mod tests;
