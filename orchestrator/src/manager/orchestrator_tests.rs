use super::*;
use crate::manager::testutil::*;
use crate::types::{Mode, NodeState, RestartCondition, TaskState};

/// Apply a plan's commands to a copy of the state, the way raft would.
fn apply(st: &State, p: &Plan) -> State {
    let mut next = st.clone();
    for c in &p.commands {
        next.apply(c.clone());
    }
    next
}

fn live(st: &State) -> Vec<u64> {
    let mut slots: Vec<u64> = st
        .tasks
        .values()
        .filter(|t| t.is_live())
        .map(|t| t.slot)
        .collect();
    slots.sort();
    slots
}

#[test]
fn creates_one_task_per_missing_slot() {
    let s = service("s", Mode::Replicated, 3);
    let st = state(
        &[node("n1")],
        std::slice::from_ref(&s),
        &[task("a", &s, 2, TaskState::Running)],
    );
    let next = apply(&st, &plan(&st, 5_000));
    assert_eq!(live(&next), vec![1, 2, 3]);
    // A second pass over the converged state changes nothing.
    assert!(plan(&next, 5_000).commands.is_empty());
}

#[test]
fn scale_down_removes_highest_slots() {
    let mut s = service("s", Mode::Replicated, 3);
    let tasks: Vec<_> = (1..=3)
        .map(|i| task(&format!("t{i}"), &s, i, TaskState::Running))
        .collect();
    s.spec.replicas = 1;
    let st = state(&[node("n1")], std::slice::from_ref(&s), &tasks);
    let next = apply(&st, &plan(&st, 5_000));
    assert_eq!(live(&next), vec![1]);
    assert_eq!(next.tasks["t3"].desired_state, TaskState::Remove);
}

#[test]
fn failed_task_is_replaced_after_restart_delay() {
    let s = service("s", Mode::Replicated, 1); // default delay 5 s
    let st = state(
        &[node("n1")],
        std::slice::from_ref(&s),
        &[task("a", &s, 1, TaskState::Failed)],
    );
    let p = plan(&st, 2_000);
    assert_eq!(p.wake_at, Some(6_000), "wakes when the delay ends");
    let next = apply(&st, &p);
    assert_eq!(
        next.tasks["a"].desired_state,
        TaskState::Shutdown,
        "old task stays as history"
    );
    let new = next.tasks.values().find(|t| t.id != "a").unwrap();
    assert_eq!((new.desired_state, new.attempt), (TaskState::Ready, 1));
    // Before the delay ends nothing starts; after it, the task may run.
    assert!(plan(&next, 5_999).commands.is_empty());
    let started = apply(&next, &plan(&next, 6_000));
    assert_eq!(started.tasks[&new.id].desired_state, TaskState::Running);
}

#[test]
fn restart_policy_none_and_on_failure() {
    let mut s = service("s", Mode::Replicated, 1);
    s.spec.restart.condition = RestartCondition::None;
    let st = state(
        &[node("n1")],
        std::slice::from_ref(&s),
        &[task("a", &s, 1, TaskState::Failed)],
    );
    assert!(plan(&st, 10_000).commands.is_empty());

    s.spec.restart.condition = RestartCondition::OnFailure;
    let done = state(
        &[node("n1")],
        std::slice::from_ref(&s),
        &[task("a", &s, 1, TaskState::Complete)],
    );
    assert!(
        plan(&done, 10_000).commands.is_empty(),
        "exit 0 is not a failure"
    );
    let failed = state(
        &[node("n1")],
        std::slice::from_ref(&s),
        &[task("a", &s, 1, TaskState::Failed)],
    );
    assert!(!plan(&failed, 10_000).commands.is_empty());
}

#[test]
fn max_attempts_stops_restarts() {
    let mut s = service("s", Mode::Replicated, 1);
    s.spec.restart.max_attempts = 2;
    let mut t = task("a", &s, 1, TaskState::Failed);
    t.attempt = 2;
    let st = state(&[node("n1")], std::slice::from_ref(&s), &[t]);
    assert!(plan(&st, 10_000).commands.is_empty());
}

#[test]
fn global_service_runs_one_task_per_active_node() {
    let s = service("s", Mode::Global, 0);
    let mut drained = node("n3");
    drained.availability = crate::types::Availability::Drain;
    let mut down = node("n4");
    down.state = crate::types::NodeState::Down;
    let st = state(
        &[node("n1"), node("n2"), drained, down],
        std::slice::from_ref(&s),
        &[],
    );
    let next = apply(&st, &plan(&st, 0));
    let mut nodes: Vec<_> = next
        .tasks
        .values()
        .map(|t| t.node_id.clone().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2"]);
    assert!(plan(&next, 0).commands.is_empty());
}

#[test]
fn global_task_on_drained_node_is_removed() {
    let s = service("s", Mode::Global, 0);
    let mut n = node("n1");
    n.availability = crate::types::Availability::Drain;
    let st = state(
        &[n],
        std::slice::from_ref(&s),
        &[task("a", &s, 0, TaskState::Running)],
    );
    let next = apply(&st, &plan(&st, 0));
    assert_eq!(next.tasks["a"].desired_state, TaskState::Remove);
}

#[test]
fn replicas_on_down_drained_or_removed_nodes_are_replaced_at_once() {
    let s = service("s", Mode::Replicated, 3);
    let mut down = node("n1");
    down.state = NodeState::Down;
    let mut drained = node("n2");
    drained.availability = crate::types::Availability::Drain;
    let mut tasks = vec![
        task("a", &s, 1, TaskState::Running),
        task("b", &s, 2, TaskState::Running),
        task("c", &s, 3, TaskState::Running),
    ];
    tasks[1].node_id = Some("n2".into());
    tasks[2].node_id = Some("gone".into());
    let st = state(
        &[down, drained, node("n3")],
        std::slice::from_ref(&s),
        &tasks,
    );
    let next = apply(&st, &plan(&st, 5_000));
    // Every old task is shut down and each slot has exactly one new one,
    // not yet placed, with no restart delay.
    for id in ["a", "b", "c"] {
        assert_eq!(next.tasks[id].desired_state, TaskState::Shutdown, "{id}");
    }
    assert_eq!(live(&next), vec![1, 2, 3]);
    assert!(next
        .tasks
        .values()
        .filter(|t| t.is_live())
        .all(|t| t.node_id.is_none() && t.restart_at.is_none()));
}
