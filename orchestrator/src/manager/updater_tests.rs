use super::*;
use crate::manager::testutil::{node, service, state, task};
use crate::types::UPDATE_IN_PROGRESS;

const START: Millis = 10_000;

/// A service of `n` replicas whose spec changed (image 1 → 2) at START,
/// with one old task running in each slot.
fn updating(n: u64, cfg: UpdateConfig) -> (Service, Vec<Task>) {
    let mut svc = service("s", Mode::Replicated, n);
    let old_spec = svc.spec.clone();
    let tasks = (1..=n)
        .map(|i| task(&format!("old{i}"), &svc, i, TaskState::Running))
        .collect();
    svc.spec.image = "img:2".into();
    svc.spec.update = cfg;
    svc.previous_spec = Some(Box::new(old_spec));
    svc.update_status = Some(UpdateStatus {
        state: UpdateState::Updating,
        started_at: START,
        completed_at: None,
        message: UPDATE_IN_PROGRESS.into(),
        failed_task: None,
    });
    (svc, tasks)
}

fn fresh(svc: &Service, id: &str, slot: u64, state: TaskState, at: Millis) -> Task {
    let mut t = task(id, svc, slot, state);
    t.meta.created_at = at;
    t.status.timestamp = at;
    t
}

fn created(p: &Plan) -> Vec<(u64, Option<String>)> {
    p.commands
        .iter()
        .flat_map(|c| match c {
            Command::Atomic(cs) => cs.clone(),
            c => vec![c.clone()],
        })
        .filter_map(|c| match c {
            Command::CreateTasks(ts) => Some(ts.iter().map(|t| (t.slot, None)).collect::<Vec<_>>()),
            Command::StartFirst { task, replaces } => Some(vec![(task.slot, Some(replaces))]),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn stop_first_replaces_parallelism_slots_at_a_time_shutting_the_old_task_with_it() {
    let cfg = UpdateConfig {
        parallelism: 2,
        ..UpdateConfig::default()
    };
    let (svc, tasks) = updating(5, cfg);
    let st = state(&[node("n1")], std::slice::from_ref(&svc), &tasks);
    let p = plan(&st, START + 1);
    assert_eq!(created(&p), [(1, None), (2, None)]);
    let Command::Atomic(first) = &p.commands[0] else {
        panic!("{:?}", p.commands)
    };
    assert!(matches!(
        &first[0],
        Command::SetDesiredState { ids, state: TaskState::Shutdown } if ids == &["old1".to_string()]
    ));

    // Slot 1's replacement runs and slot 2's is still starting: one more.
    let mut tasks = tasks;
    tasks.retain(|t| t.id != "old1" && t.id != "old2");
    tasks.push(fresh(&svc, "new1", 1, TaskState::Running, START + 2));
    tasks.push(fresh(&svc, "new2", 2, TaskState::Starting, START + 2));
    let st = state(&[node("n1")], &[svc], &tasks);
    assert_eq!(created(&plan(&st, START + 3)), [(3, None)]);
}

#[test]
fn the_delay_holds_the_next_slot_after_a_replacement_runs() {
    let cfg = UpdateConfig {
        delay_ms: 10_000,
        ..UpdateConfig::default()
    };
    let (svc, mut tasks) = updating(2, cfg);
    tasks.retain(|t| t.id != "old1");
    tasks.push(fresh(&svc, "new1", 1, TaskState::Running, START + 100));
    let st = state(&[node("n1")], &[svc], &tasks);
    let p = plan(&st, START + 5_000);
    assert!(created(&p).is_empty());
    assert_eq!(p.wake_at, Some(START + 10_100));
    assert_eq!(created(&plan(&st, START + 10_100)), [(2, None)]);
}

#[test]
fn start_first_keeps_the_old_task_until_its_replacement_runs() {
    let cfg = UpdateConfig {
        order: UpdateOrder::StartFirst,
        ..UpdateConfig::default()
    };
    let (svc, mut tasks) = updating(1, cfg);
    let st = state(&[node("n1")], std::slice::from_ref(&svc), &tasks);
    assert_eq!(created(&plan(&st, START + 1)), [(1, Some("old1".into()))]);

    tasks.push(fresh(&svc, "new1", 1, TaskState::Starting, START + 1));
    let st = state(&[node("n1")], std::slice::from_ref(&svc), &tasks);
    let p = plan(&st, START + 2);
    assert!(
        p.commands.is_empty(),
        "both live until it runs: {:?}",
        p.commands
    );

    tasks.pop();
    tasks.push(fresh(&svc, "new1", 1, TaskState::Running, START + 3));
    let st = state(&[node("n1")], &[svc], &tasks);
    let p = plan(&st, START + 4);
    assert!(matches!(
        &p.commands[..],
        [Command::SetDesiredState { ids, state: TaskState::Shutdown }] if ids == &["old1".to_string()]
    ));
}

#[test]
fn a_failed_replacement_rolls_back_when_the_service_asks_and_pauses_otherwise() {
    let rollback = UpdateConfig {
        failure_action: FailureAction::Rollback,
        order: UpdateOrder::StartFirst,
        ..UpdateConfig::default()
    };
    let (svc, mut tasks) = updating(2, rollback);
    let mut bad = fresh(&svc, "new1", 1, TaskState::Failed, START + 50);
    bad.status.err = Some("task: unhealthy container".into());
    tasks.push(bad);
    let st = state(&[node("n1")], std::slice::from_ref(&svc), &tasks);
    let p = plan(&st, START + 100);
    assert_eq!(p.commands.len(), 1, "{:?}", p.commands);
    let Command::RollbackService {
        message,
        failed_task,
        ..
    } = &p.commands[0]
    else {
        panic!("{:?}", p.commands)
    };
    assert_eq!(
        message,
        "update rolled back due to failure or early termination of task new1"
    );
    assert_eq!(failed_task.as_deref(), Some("new1"));

    let mut paused = svc.clone();
    paused.spec.update.failure_action = FailureAction::Pause;
    let st = state(&[node("n1")], &[paused], &tasks);
    let p = plan(&st, START + 100);
    let Command::SetUpdateStatus { status, .. } = &p.commands[0] else {
        panic!("{:?}", p.commands)
    };
    assert_eq!(status.state, UpdateState::Paused);
    assert_eq!(
        status.message,
        "update paused due to failure or early termination of task new1"
    );

    // A failure before this update started does not count.
    let mut old_failure = tasks.clone();
    old_failure.last_mut().unwrap().meta.created_at = START - 1;
    let st = state(&[node("n1")], &[svc], &old_failure);
    assert!(!plan(&st, START + 100)
        .commands
        .iter()
        .any(|c| matches!(c, Command::RollbackService { .. })));
}

#[test]
fn an_update_completes_once_its_last_replacement_outlived_the_monitor() {
    let (svc, _) = updating(1, UpdateConfig::default());
    let tasks = vec![fresh(&svc, "new1", 1, TaskState::Running, START + 1_000)];
    let st = state(&[node("n1")], &[svc], &tasks);
    let watching = plan(&st, START + 2_000);
    assert!(watching.commands.is_empty());
    assert_eq!(watching.wake_at, Some(START + 6_000));
    let p = plan(&st, START + 6_000);
    let Command::SetUpdateStatus { status, .. } = &p.commands[0] else {
        panic!("{:?}", p.commands)
    };
    assert_eq!(
        (status.state, status.message.as_str(), status.completed_at),
        (
            UpdateState::Completed,
            "update completed",
            Some(START + 6_000)
        )
    );
}

#[test]
fn a_paused_or_finished_update_is_left_alone() {
    let (mut svc, tasks) = updating(2, UpdateConfig::default());
    for s in [
        UpdateState::Paused,
        UpdateState::Completed,
        UpdateState::RollbackPaused,
    ] {
        svc.update_status.as_mut().unwrap().state = s;
        let st = state(&[node("n1")], std::slice::from_ref(&svc), &tasks);
        assert!(plan(&st, START + 1).commands.is_empty(), "{s}");
    }
}
