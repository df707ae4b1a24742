//! The task reaper: deletes tasks that are finished with. A task marked for
//! removal goes once its agent reports it stopped (or if it never reached a
//! node), and each slot keeps only the newest few ended tasks as history.

use super::Plan;
use crate::state::{Command, State};
use crate::types::{Millis, TaskState};
use std::collections::BTreeMap;

/// Ended tasks kept per slot, as Swarm's default task history limit.
pub const HISTORY_PER_SLOT: usize = 5;

/// A slot's identity: service, replica slot, and node for global tasks.
type SlotKey<'a> = (&'a str, u64, Option<&'a str>);

pub fn plan(st: &State, _now: Millis) -> Plan {
    let mut delete = Vec::new();
    let mut history: BTreeMap<SlotKey, Vec<(Millis, &str)>> = BTreeMap::new();
    for t in st.tasks.values() {
        if t.desired_state >= TaskState::Remove {
            let never_placed = t.status.state <= TaskState::Pending;
            if t.status.state.is_terminal() || never_placed {
                delete.push(t.id.clone());
            }
            continue;
        }
        if !t.is_live() {
            let node = if t.slot == 0 {
                t.node_id.as_deref()
            } else {
                None
            };
            history
                .entry((t.service_id.as_str(), t.slot, node))
                .or_default()
                .push((t.meta.created_at, t.id.as_str()));
        }
    }
    for (_, mut ended) in history {
        if ended.len() > HISTORY_PER_SLOT {
            ended.sort();
            let excess = ended.len() - HISTORY_PER_SLOT;
            delete.extend(ended[..excess].iter().map(|(_, id)| id.to_string()));
        }
    }
    let mut out = Plan::default();
    if !delete.is_empty() {
        out.commands.push(Command::DeleteTasks(delete));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::*;
    use crate::types::Mode;

    #[test]
    fn removed_tasks_go_once_stopped() {
        let s = service("s", Mode::Replicated, 1);
        let mut running = task("a", &s, 1, TaskState::Running);
        running.desired_state = TaskState::Remove;
        let mut stopped = task("b", &s, 2, TaskState::Shutdown);
        stopped.desired_state = TaskState::Remove;
        let st = state(&[node("n1")], &[s], &[running, stopped]);
        let p = plan(&st, 0);
        assert_eq!(p.commands, vec![Command::DeleteTasks(vec!["b".into()])]);
    }

    #[test]
    fn keeps_only_recent_history_per_slot() {
        let s = service("s", Mode::Replicated, 1);
        let mut tasks: Vec<_> = (0..8)
            .map(|i| {
                let mut t = task(&format!("t{i}"), &s, 1, TaskState::Failed);
                t.meta.created_at = i;
                t.desired_state = TaskState::Shutdown;
                t
            })
            .collect();
        tasks.push(task("live", &s, 1, TaskState::Running));
        let st = state(&[node("n1")], &[s], &tasks);
        let p = plan(&st, 0);
        assert_eq!(
            p.commands,
            vec![Command::DeleteTasks(vec![
                "t0".into(),
                "t1".into(),
                "t2".into()
            ])]
        );
    }
}
