//! The updater: rolls a service's tasks onto its current spec once
//! `State::apply` has started an update (or a rollback). It replaces the
//! tasks of at most `parallelism` slots at a time, stop-first (the old task
//! is shut down as its replacement is created) or start-first (the old task
//! is shut down once its replacement runs, and a healthy replacement only
//! runs once its healthcheck passes), waits `delay` after each replacement
//! runs, and counts replacements that fail: past `max_failure_ratio` it
//! pauses, carries on, or rolls back, as the service says. Progress is
//! recorded in the service's update status.
//!
//! Replacing a task that ended by itself, and filling empty slots, stay
//! the orchestrator's: it makes them from the current spec already.

use super::orchestrator::{new_task, SlotKey};
use super::Plan;
use crate::state::{Command, State};
use crate::types::{
    paused_by, rolled_back_by, FailureAction, Millis, Mode, Service, Task, TaskState, UpdateConfig,
    UpdateOrder, UpdateState, UpdateStatus, ROLLBACK_COMPLETED, UPDATE_COMPLETED,
};
use std::collections::BTreeMap;

pub fn plan(st: &State, now: Millis) -> Plan {
    let mut out = Plan::default();
    for svc in st.services.values() {
        let Some(status) = svc.update_status.as_ref().filter(|u| u.state.is_active()) else {
            continue;
        };
        let cfg = if status.state.is_rollback() {
            &svc.spec.rollback
        } else {
            &svc.spec.update
        };
        let step = step(st, svc, status, cfg, now);
        out.commands.extend(step.commands);
        if let Some(at) = step.wake_at {
            out.wake_at = Some(out.wake_at.map_or(at, |w: Millis| w.min(at)));
        }
    }
    out
}

/// The live tasks of each slot (or node) of a service.
fn slots<'a>(st: &'a State, svc: &'a Service) -> BTreeMap<SlotKey, Vec<&'a Task>> {
    let mut groups: BTreeMap<SlotKey, Vec<&Task>> = BTreeMap::new();
    for t in st.tasks_of(&svc.id).filter(|t| t.is_live()) {
        let key = match svc.spec.mode {
            Mode::Replicated if t.slot > svc.spec.replicas => continue,
            Mode::Replicated => SlotKey::Slot(t.slot),
            Mode::Global => match &t.node_id {
                Some(n) => SlotKey::Node(n.clone()),
                None => continue,
            },
        };
        groups.entry(key).or_default().push(t);
    }
    groups
}

/// When a task started running, if it runs.
fn running_since(t: &Task) -> Option<Millis> {
    (t.status.state == TaskState::Running).then_some(t.status.timestamp)
}

fn step(st: &State, svc: &Service, status: &UpdateStatus, cfg: &UpdateConfig, now: Millis) -> Plan {
    let mut out = Plan::default();
    let mut wake = |at: Millis| {
        out.wake_at = Some(out.wake_at.map_or(at, |w: Millis| w.min(at)));
    };
    let is_new = |t: &Task| t.spec.same_tasks(&svc.spec);
    let groups = slots(st, svc);

    // Replacements made for this update that ended by themselves.
    let failed: Vec<&Task> = st
        .tasks_of(&svc.id)
        .filter(|t| {
            t.meta.created_at >= status.started_at
                && is_new(t)
                && t.desired_state <= TaskState::Running
                && t.status.state.is_terminal()
        })
        .collect();
    let total = groups.len().max(1) as u64;
    let too_many = !failed.is_empty()
        && (failed.len() as u64) * 1000 > u64::from(cfg.max_failure_permille) * total;
    if too_many && cfg.failure_action != FailureAction::Continue {
        let task = failed
            .iter()
            .max_by_key(|t| t.meta.created_at)
            .expect("a failure");
        let rolling_back = status.state.is_rollback();
        let cmd = if cfg.failure_action == FailureAction::Rollback
            && !rolling_back
            && svc.previous_spec.is_some()
        {
            Command::RollbackService {
                id: svc.id.clone(),
                expected_version: svc.meta.version,
                message: rolled_back_by(&task.id),
                failed_task: Some(task.id.clone()),
                at: now,
            }
        } else {
            let (state, message) = match rolling_back {
                false => (UpdateState::Paused, paused_by(&task.id)),
                true => (
                    UpdateState::RollbackPaused,
                    format!(
                        "rollback paused due to failure or early termination of task {}",
                        task.id
                    ),
                ),
            };
            Command::SetUpdateStatus {
                id: svc.id.clone(),
                expected_version: svc.meta.version,
                status: UpdateStatus {
                    state,
                    message,
                    failed_task: Some(task.id.clone()),
                    ..status.clone()
                },
            }
        };
        out.commands.push(cmd);
        return out;
    }

    let mut pending = Vec::new();
    let mut busy = 0u64;
    let mut retire = Vec::new();
    let mut watched_until: Option<Millis> = None;
    for (key, tasks) in &groups {
        let fresh = tasks.iter().find(|t| is_new(t));
        let old: Vec<&Task> = tasks.iter().copied().filter(|t| !is_new(t)).collect();
        match (fresh, old.is_empty()) {
            (None, false) => pending.push((key.clone(), old[0])),
            // Start-first: the old task goes once its replacement runs.
            (Some(f), false) => {
                busy += 1;
                if running_since(f).is_some() {
                    retire.extend(old.iter().map(|t| t.id.clone()));
                }
            }
            (Some(f), true) => match running_since(f) {
                None => busy += 1,
                Some(since) => {
                    if since.saturating_add(cfg.delay_ms) > now {
                        busy += 1;
                        wake(since + cfg.delay_ms);
                    }
                    if since >= status.started_at {
                        let until = since.saturating_add(cfg.monitor_ms);
                        watched_until = Some(watched_until.map_or(until, |w| w.max(until)));
                    }
                }
            },
            (None, true) => {}
        }
    }

    if !retire.is_empty() {
        out.commands.push(Command::SetDesiredState {
            ids: retire,
            state: TaskState::Shutdown,
        });
    }
    let room = match cfg.parallelism {
        0 => pending.len() as u64,
        p => p.saturating_sub(busy),
    };
    for (key, old) in pending.iter().take(room as usize) {
        let task = new_task(svc, key.clone(), 0, 0, now);
        out.commands.push(match cfg.order {
            UpdateOrder::StopFirst => Command::Atomic(vec![
                Command::SetDesiredState {
                    ids: vec![old.id.clone()],
                    state: TaskState::Shutdown,
                },
                Command::CreateTasks(vec![task]),
            ]),
            UpdateOrder::StartFirst => Command::StartFirst {
                replaces: old.id.clone(),
                task: Box::new(task),
            },
        });
    }

    let done = pending.is_empty() && busy == 0;
    if done {
        match watched_until {
            // The last replacements are still watched for failure.
            Some(until) if until > now => wake(until),
            _ => {
                let (state, message) = match status.state.is_rollback() {
                    false => (UpdateState::Completed, UPDATE_COMPLETED),
                    true => (UpdateState::RollbackCompleted, ROLLBACK_COMPLETED),
                };
                out.commands.push(Command::SetUpdateStatus {
                    id: svc.id.clone(),
                    expected_version: svc.meta.version,
                    status: UpdateStatus {
                        state,
                        completed_at: Some(now),
                        message: message.into(),
                        ..status.clone()
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "updater_tests.rs"]
mod tests;
