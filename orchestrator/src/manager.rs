//! Manager loops. Each loop is a pure decision function (state snapshot in,
//! commands out) driven by a small runner that re-plans whenever the store
//! changes, when a timer the plan asked for expires, and on a slow tick. Loops
//! never call each other: they only read and write the store.

pub mod allocator;
pub mod orchestrator;
pub mod reaper;
pub mod scheduler;
#[cfg(test)]
pub mod testutil;
pub mod updater;

use crate::state::{Command, State};
use crate::store::{Store, StoreError};
use crate::types::{now_ms, Millis};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What one pass of a loop decided.
#[derive(Debug, Default)]
pub struct Plan {
    pub commands: Vec<Command>,
    /// When the loop must look again even if nothing changes (restart delays).
    pub wake_at: Option<Millis>,
}

type PlanFn = fn(&State, Millis) -> Plan;

/// Start every manager loop. They run only while this node leads raft.
pub fn spawn(store: Store, stop: CancellationToken) {
    let loops: [(&'static str, PlanFn); 5] = [
        ("orchestrator", orchestrator::plan),
        ("updater", updater::plan),
        ("allocator", allocator::plan),
        ("scheduler", scheduler::plan),
        ("reaper", reaper::plan),
    ];
    for (name, plan) in loops {
        tokio::spawn(run(name, store.clone(), plan, stop.clone()));
    }
}

/// Longest time a loop sleeps without a reason; covers leadership changes.
const TICK: Duration = Duration::from_secs(1);
/// After a rejected write, wait before re-planning so a bad plan cannot spin.
const BACKOFF: Duration = Duration::from_millis(500);

/// One pass of a loop, with a panic caught and logged rather than ending
/// the loop for good (the next pass may see a state that does not trip it).
fn plan_safely(name: &str, plan: PlanFn, state: &State, now: Millis) -> Option<Plan> {
    // The plan only reads the state, so nothing is left half-changed.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(state, now))) {
        Ok(p) => Some(p),
        Err(e) => {
            let why = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(loop_ = name, panic = %why, "manager loop panicked; it plans again after a pause");
            None
        }
    }
}

async fn run(name: &'static str, store: Store, plan: PlanFn, stop: CancellationToken) {
    let mut changes = store.subscribe();
    loop {
        let mut sleep_for = TICK;
        if store.is_leader() {
            let state = changes.borrow_and_update().clone();
            let now = now_ms();
            let Some(p) = plan_safely(name, plan, &state, now) else {
                // Supervised: a loop that panicked plans again after a pause.
                tokio::time::sleep(BACKOFF).await;
                continue;
            };
            if let Some(at) = p.wake_at {
                sleep_for = sleep_for.min(Duration::from_millis(at.saturating_sub(now)));
            }
            for cmd in p.commands {
                match store.write(cmd).await {
                    Ok(()) => {}
                    Err(StoreError::Rejected(e)) => {
                        tracing::debug!(target: "manager", loop_ = name, error = %e, "command rejected");
                        sleep_for = sleep_for.min(BACKOFF);
                        tokio::time::sleep(BACKOFF).await;
                    }
                    Err(e) => {
                        tracing::warn!(loop_ = name, error = %e, "write failed");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_pass_is_caught_and_the_next_one_runs() {
        fn boom(_: &State, _: Millis) -> Plan {
            panic!("a bug")
        }
        fn fine(_: &State, now: Millis) -> Plan {
            Plan {
                commands: Vec::new(),
                wake_at: Some(now),
            }
        }
        let st = State::default();
        assert!(plan_safely("boom", boom, &st, 1).is_none());
        assert_eq!(plan_safely("fine", fine, &st, 7).unwrap().wake_at, Some(7));
    }
}
