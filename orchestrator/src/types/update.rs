//! Rolling updates: how a service's tasks move to a new spec (and back),
//! and where such an update stands. The updater (`manager/updater.rs`)
//! reads these; `State::apply` starts an update when a spec changes.

use super::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// The old task stops before its replacement starts (docker's default).
    #[default]
    StopFirst,
    /// The replacement runs (and is healthy) before the old task stops: a
    /// slot holds two live tasks for that moment.
    StartFirst,
}

impl std::str::FromStr for FailureAction {
    type Err = String;
    fn from_str(s: &str) -> Result<FailureAction, String> {
        match s {
            "pause" => Ok(FailureAction::Pause),
            "continue" => Ok(FailureAction::Continue),
            "rollback" => Ok(FailureAction::Rollback),
            other => Err(format!(
                "unknown failure action {other:?}: use pause, continue or rollback"
            )),
        }
    }
}

impl std::str::FromStr for UpdateOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<UpdateOrder, String> {
        match s {
            "stop-first" => Ok(UpdateOrder::StopFirst),
            "start-first" => Ok(UpdateOrder::StartFirst),
            other => Err(format!(
                "unknown update order {other:?}: use stop-first or start-first"
            )),
        }
    }
}

/// A failure ratio (0 to 1, docker's float) in thousandths.
pub fn permille(ratio: f64) -> Result<u32, String> {
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!("failure ratio {ratio} is not between 0 and 1"));
    }
    Ok((ratio * 1000.0).round() as u32)
}

/// `--update-*` (or `--rollback-*`), with Swarm's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Slots replaced at once; 0 means all.
    pub parallelism: u64,
    /// Wait after a replacement runs before the slot counts as done.
    pub delay_ms: u64,
    pub failure_action: FailureAction,
    /// How long after it starts a replacement's failure counts against
    /// the update.
    pub monitor_ms: u64,
    /// Failures tolerated, in thousandths of the slots updated (docker's
    /// float, kept exact).
    pub max_failure_permille: u32,
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            monitor_ms: 5_000,
            max_failure_permille: 0,
            order: UpdateOrder::StopFirst,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    /// Docker's spelling (`UpdateStatus.State`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }

    /// The updater replaces tasks in these states.
    pub fn is_active(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }

    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }
}

impl fmt::Display for UpdateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the service's latest update stands (`service inspect`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Millis>,
    pub message: String,
    /// The replacement whose failure paused or rolled back the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_task: Option<String>,
}

/// Messages as Swarm writes them.
pub const UPDATE_IN_PROGRESS: &str = "update in progress";
pub const UPDATE_COMPLETED: &str = "update completed";
pub const ROLLBACK_COMPLETED: &str = "rollback completed";
pub const MANUAL_ROLLBACK: &str = "manually requested rollback";

pub fn paused_by(task_id: &str) -> String {
    format!("update paused due to failure or early termination of task {task_id}")
}

pub fn rolled_back_by(task_id: &str) -> String {
    format!("update rolled back due to failure or early termination of task {task_id}")
}
