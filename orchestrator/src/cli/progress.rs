//! Waiting for a service to converge, with docker's progress display:
//!
//! ```text
//! overall progress: 2 out of 3 tasks
//! 1/3: running   [==================================================>]
//! 2/3: preparing [=================================>                 ]
//! 3/3: running   [==================================================>]
//! ```
//!
//! Unlike docker, it stops and says why as soon as the service cannot
//! converge: a rejected task, or a task that keeps failing.

use super::service::fetch_tasks;
use crate::api::client::Client;
use crate::types::{Millis, Mode, Service, Task, TaskState, UpdateState};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(200);
/// How long all tasks must stay running before the service counts as converged.
const VERIFY: Duration = Duration::from_secs(2);
/// Failures of one slot during a wait that mean it will not converge.
const MAX_FAILURES: usize = 3;
/// Hard limit, so a wait never hangs a script forever.
const GIVE_UP: Duration = Duration::from_secs(600);

/// The progress of one slot (or, for global services, one node).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotView {
    pub label: String,
    pub state: TaskState,
    pub err: Option<String>,
}

/// What the display shows at one moment, and whether the wait is over.
#[derive(Debug, PartialEq)]
pub struct View {
    pub slots: Vec<SlotView>,
    pub running: usize,
    /// Running task IDs, to check stability across the verify window.
    pub running_ids: BTreeSet<String>,
    /// Tasks outside the wanted slots that still run (scale-down in progress).
    pub draining: usize,
    /// A rolling update (or rollback) is still replacing tasks.
    pub updating: bool,
    pub failure: Option<String>,
}

impl View {
    pub fn converged(&self) -> bool {
        self.running == self.slots.len() && self.draining == 0 && !self.updating
    }
}

/// Why an update begun at or after `since` ended the wait: it paused, or
/// rolled back on its own (once the rollback is over), naming the task
/// whose failure did it and that task's error.
fn update_failure(svc: &Service, tasks: &[Task], since: Millis) -> Option<String> {
    let u = svc
        .update_status
        .as_ref()
        .filter(|u| u.started_at >= since)?;
    let ended = match u.state {
        UpdateState::Paused | UpdateState::RollbackPaused => true,
        UpdateState::RollbackCompleted => u.failed_task.is_some(),
        _ => false,
    };
    if !ended {
        return None;
    }
    let why = u
        .failed_task
        .as_ref()
        .and_then(|id| tasks.iter().find(|t| &t.id == id))
        .map(|t| {
            let err = t
                .status
                .err
                .clone()
                .unwrap_or_else(|| t.status.message.clone());
            format!("task {} failed: {err}", t.name())
        })
        .unwrap_or_else(|| u.message.clone());
    Some(match u.state {
        UpdateState::RollbackCompleted => format!("the update was rolled back: {why}"),
        _ => format!("{}: {why}", u.message),
    })
}

/// Summarise a service's tasks. Pure, so the convergence rules are testable.
///
/// Tasks created at or after `since` count towards failure: any rejection, or
/// `MAX_FAILURES` failures in one slot, means the service will not converge.
pub fn view(svc: &Service, tasks: &[Task], since: Millis) -> View {
    let mut groups: BTreeMap<(u64, String), Vec<&Task>> = BTreeMap::new();
    let mut draining = 0;
    for t in tasks {
        let wanted = t.desired_state <= TaskState::Running
            || (t.desired_state == TaskState::Shutdown && t.status.state.is_terminal());
        if t.desired_state >= TaskState::Remove
            || (svc.spec.mode == Mode::Replicated && t.slot > svc.spec.replicas)
        {
            if !t.status.state.is_terminal() && t.status.state >= TaskState::Assigned {
                draining += 1;
            }
            continue;
        }
        if wanted {
            let key = (t.slot, t.node_id.clone().unwrap_or_default());
            let key = if t.slot > 0 {
                (t.slot, String::new())
            } else {
                key
            };
            groups.entry(key).or_default().push(t);
        }
    }
    if svc.spec.mode == Mode::Replicated {
        for s in 1..=svc.spec.replicas {
            groups.entry((s, String::new())).or_default();
        }
    }
    let total = groups.len();
    let mut slots = Vec::new();
    let mut running_ids = BTreeSet::new();
    let mut failure = None;
    for (i, ((slot, node), ts)) in groups.iter().enumerate() {
        let current = ts
            .iter()
            .filter(|t| t.is_live())
            .max_by_key(|t| t.meta.created_at)
            .or_else(|| ts.iter().max_by_key(|t| t.meta.created_at));
        let label = if *slot > 0 {
            format!("{slot}/{total}")
        } else {
            format!("{}/{total} ({})", i + 1, &node[..node.len().min(12)])
        };
        let (state, err) = match current {
            Some(t) => (t.status.state, t.status.err.clone()),
            None => (TaskState::New, None),
        };
        let recent = |state: TaskState| {
            ts.iter()
                .filter(move |t| t.meta.created_at >= since && t.status.state == state)
        };
        if let Some(t) = recent(TaskState::Rejected).next() {
            failure.get_or_insert(format!(
                "task {} rejected: {}",
                t.name(),
                t.status.err.clone().unwrap_or_default()
            ));
        }
        if let Some(t) = recent(TaskState::Failed).nth(MAX_FAILURES - 1) {
            let why = t
                .status
                .err
                .clone()
                .unwrap_or_else(|| t.status.message.clone());
            failure.get_or_insert(format!(
                "task {} keeps failing ({MAX_FAILURES} failures): {why}",
                t.name()
            ));
        }
        if let Some(t) = current {
            // A task of an older spec is not what the wait is for.
            let current_spec = t.spec.same_tasks(&svc.spec);
            if t.status.state == TaskState::Running
                && t.desired_state == TaskState::Running
                && current_spec
            {
                running_ids.insert(t.id.clone());
            }
            // The task ended with a failure and its restart policy leaves the slot empty.
            if t.status.state == TaskState::Failed && t.desired_state == TaskState::Running {
                let why = t.status.err.clone().unwrap_or_default();
                failure.get_or_insert(format!(
                    "task {} failed: {why}; the restart policy does not restart it",
                    t.name()
                ));
            }
        }
        slots.push(SlotView { label, state, err });
    }
    let updating = svc
        .update_status
        .as_ref()
        .is_some_and(|u| u.state.is_active());
    if let Some(why) = update_failure(svc, tasks, since) {
        failure = Some(why);
    }
    View {
        running: running_ids.len(),
        running_ids,
        slots,
        draining,
        updating,
        failure,
    }
}

fn bar(state: TaskState) -> String {
    const W: usize = 50;
    let step = (state.min(TaskState::Running) as usize) + 1;
    let filled = W * step / (TaskState::Running as usize + 1);
    if filled >= W {
        format!("[{}>]", "=".repeat(W))
    } else {
        format!("[{}>{}]", "=".repeat(filled), " ".repeat(W - filled))
    }
}

fn render(v: &View) -> Vec<String> {
    let mut lines = vec![format!(
        "overall progress: {} out of {} tasks",
        v.running,
        v.slots.len()
    )];
    for s in &v.slots {
        let mut line = format!("{}: {:<9} {}", s.label, s.state.as_str(), bar(s.state));
        if let (Some(e), true) = (&s.err, s.state.is_terminal()) {
            line.push_str(&format!(" {e}"));
        }
        lines.push(line);
    }
    lines
}

/// The progress lines on the terminal: redrawn in place on a TTY, and only
/// new lines otherwise (logs, CI).
struct Screen {
    tty: bool,
    quiet: bool,
    shown: Vec<String>,
}

impl Screen {
    fn new(quiet: bool) -> Screen {
        Screen {
            tty: std::io::stdout().is_terminal(),
            quiet,
            shown: Vec::new(),
        }
    }

    fn show(&mut self, lines: Vec<String>) -> std::io::Result<()> {
        if self.quiet || lines == self.shown {
            return Ok(());
        }
        let mut out = std::io::stdout();
        if self.tty && !self.shown.is_empty() {
            write!(out, "\x1b[{}A", self.shown.len())?;
        }
        for l in &lines {
            if self.tty {
                writeln!(out, "\x1b[2K{l}")?;
            } else if !self.shown.contains(l) {
                writeln!(out, "{l}")?;
            }
        }
        out.flush()?;
        self.shown = lines;
        Ok(())
    }

    fn line(&self, text: &str) -> std::io::Result<()> {
        if !self.quiet {
            writeln!(std::io::stdout(), "{text}")?;
        }
        Ok(())
    }
}

/// Converged, with the same tasks running, for `VERIFY`.
#[derive(Default)]
struct Steady(Option<(Instant, BTreeSet<String>)>);

impl Steady {
    fn held(&mut self, converged: bool, running: &BTreeSet<String>) -> bool {
        self.0 = match (converged, self.0.take()) {
            (false, _) => None,
            (true, Some((at, ids))) if ids == *running => Some((at, ids)),
            (true, _) => Some((Instant::now(), running.clone())),
        };
        self.0
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() >= VERIFY)
    }
}

pub async fn wait_converged(c: &mut Client, svc: &Service, quiet: bool) -> Result<()> {
    let mut screen = Screen::new(quiet);
    let started = Instant::now();
    let mut steady = Steady::default();
    // Tasks made for this change: the service's last update or later.
    let since = svc.meta.updated_at;
    loop {
        let svc = &super::service::fetch_service(c, &svc.id).await?;
        let tasks = fetch_tasks(c, &svc.id).await?;
        let v = view(svc, &tasks, since);
        let mut lines = render(&v);
        if let Some(u) = svc.update_status.as_ref().filter(|u| u.started_at >= since) {
            lines.insert(0, format!("{}: {}", u.state, u.message));
        }
        screen.show(lines)?;
        if let Some(why) = v.failure {
            bail!(
                "service {} did not converge: {why}\nThe service exists; see `swarm service ps {}`, then fix it or remove it with `swarm service rm {}`",
                svc.spec.name, svc.spec.name, svc.spec.name
            );
        }
        if steady.held(v.converged(), &v.running_ids) {
            screen.line(&format!("verify: Service {} converged", svc.spec.name))?;
            return Ok(());
        }
        if started.elapsed() > GIVE_UP {
            bail!(
                "service {} did not converge within {}s; see `swarm service ps {}`",
                svc.spec.name,
                GIVE_UP.as_secs(),
                svc.spec.name
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait for every service of a stack to converge, one line per service
/// (`demo_web  2/2 running`), and fail naming the service and its task's
/// error as soon as one cannot converge.
pub async fn wait_stack(c: &mut Client, stack: &str, quiet: bool) -> Result<()> {
    let mut screen = Screen::new(quiet);
    let started = Instant::now();
    let mut steady = Steady::default();
    // Each service's last change as the wait began: what it waits for.
    let mut since: BTreeMap<String, Millis> = BTreeMap::new();
    loop {
        let services = super::stack::fetch_stack_services(c, stack).await?;
        let tasks = fetch_tasks(c, "").await?;
        let width = services
            .iter()
            .map(|s| s.spec.name.len())
            .max()
            .unwrap_or(0);
        let mut lines = Vec::new();
        let mut all_ids = BTreeSet::new();
        let mut converged = true;
        for svc in &services {
            let mine: Vec<Task> = tasks
                .iter()
                .filter(|t| t.service_id == svc.id)
                .cloned()
                .collect();
            let from = *since.entry(svc.id.clone()).or_insert(svc.meta.updated_at);
            let v = view(svc, &mine, from);
            if let Some(why) = v.failure {
                bail!(
                    "service {} did not converge: {why}\nSee `swarm service ps {}`; the rest of stack {stack} is deployed",
                    svc.spec.name,
                    svc.spec.name
                );
            }
            converged &= v.converged();
            all_ids.extend(v.running_ids.iter().cloned());
            let state = match &svc.update_status {
                _ if v.converged() => "running".to_string(),
                Some(u) if u.state.is_active() => format!("{} ({})", u.state, u.message),
                _ => "starting".to_string(),
            };
            lines.push(format!(
                "{:<width$}  {}/{} {state}",
                svc.spec.name,
                v.running,
                v.slots.len()
            ));
        }
        screen.show(lines)?;
        if steady.held(converged, &all_ids) {
            return Ok(());
        }
        if started.elapsed() > GIVE_UP {
            bail!(
                "stack {stack} did not converge within {}s; see `swarm stack ps {stack}`",
                GIVE_UP.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{service, task};

    #[test]
    fn counts_running_slots_and_spots_rejection() {
        let s = service("s", Mode::Replicated, 3);
        let tasks = vec![
            task("a", &s, 1, TaskState::Running),
            task("b", &s, 2, TaskState::Preparing),
        ];
        let v = view(&s, &tasks, 0);
        assert_eq!(
            (v.running, v.slots.len(), v.failure.is_none()),
            (1, 3, true)
        );

        // A rejected task fails the wait even while its replacement is pending.
        let mut r = task("c", &s, 3, TaskState::Rejected);
        r.status.err = Some("No such image: nope:latest".into());
        r.desired_state = TaskState::Shutdown;
        let mut next = task("d", &s, 3, TaskState::New);
        next.desired_state = TaskState::Ready;
        let v = view(&s, &[tasks.clone(), vec![r, next]].concat(), 0);
        assert!(v.failure.unwrap().contains("No such image"));
        // ...but not one from before the change being waited for.
        let v = view(&s, &tasks, 5_000);
        assert!(v.failure.is_none());
    }

    #[test]
    fn an_update_is_waited_for_and_its_rollback_fails_the_wait_naming_the_task() {
        use crate::types::{UpdateStatus, UPDATE_IN_PROGRESS};
        let old = service("s", Mode::Replicated, 1);
        let mut s = old.clone();
        s.spec.image = "img:2".into();
        s.update_status = Some(UpdateStatus {
            state: UpdateState::Updating,
            started_at: 5_000,
            completed_at: None,
            message: UPDATE_IN_PROGRESS.into(),
            failed_task: None,
        });
        let running_old = task("a", &old, 1, TaskState::Running);
        let v = view(&s, std::slice::from_ref(&running_old), 5_000);
        assert!(!v.converged(), "a task of the old spec is not the goal");
        let mut bad = task("b", &s, 1, TaskState::Failed);
        bad.status.err = Some("task: unhealthy container".into());
        bad.meta.created_at = 5_001;
        s.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            message: "update rolled back due to failure or early termination of task b".into(),
            failed_task: Some("b".into()),
            ..s.update_status.clone().unwrap()
        });
        let v = view(&s, &[running_old, bad], 5_000);
        assert_eq!(
            v.failure.unwrap(),
            "the update was rolled back: task svc-s.1 failed: task: unhealthy container"
        );
    }

    #[test]
    fn scale_down_waits_for_extra_tasks_to_stop() {
        let s = service("s", Mode::Replicated, 1);
        let mut extra = task("b", &s, 2, TaskState::Running);
        extra.desired_state = TaskState::Remove;
        let v = view(&s, &[task("a", &s, 1, TaskState::Running), extra], 0);
        assert_eq!((v.running, v.slots.len(), v.draining), (1, 1, 1));
    }

    #[test]
    fn repeated_failures_end_the_wait() {
        let s = service("s", Mode::Replicated, 1);
        let mut tasks: Vec<Task> = (0..3)
            .map(|i| {
                let mut t = task(&format!("f{i}"), &s, 1, TaskState::Failed);
                t.desired_state = TaskState::Shutdown;
                t
            })
            .collect();
        tasks.push(task("a", &s, 1, TaskState::Starting));
        assert!(
            view(&s, &tasks[1..], 0).failure.is_none(),
            "two failures may still recover"
        );
        assert!(view(&s, &tasks, 0)
            .failure
            .unwrap()
            .contains("keeps failing"));
    }
}
