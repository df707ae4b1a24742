//! The agent: runs the tasks assigned to this node on the Docker Engine and
//! reports their observed state. It is level-triggered: every pass compares
//! the tasks in the store with the containers Docker has (found by label), so
//! a restarted agent adopts what is already running and never duplicates it.

pub mod engine;
pub mod session;

use crate::ports::PublishMode;
use crate::types::{Task, TaskState, TaskStatus};
use engine::{has_exited, is_running, label, Engine, TaskContainers, LABEL_ADDR};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_mesh::hostports::{self, HostPort};
use swarm_mesh::sandbox::{self, Gateway};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Seconds a task's container gets to exit after SIGTERM.
const STOP_GRACE_SECS: i64 = 10;
/// Longest gap between passes when nothing signals a change.
const RESYNC: Duration = Duration::from_secs(2);

pub struct Agent {
    pub link: session::Link,
    pub engine: Engine,
    pub gateway: Gateway,
    pub pause_image: String,
}

impl Agent {
    pub async fn run(self, stop: CancellationToken) {
        if let Err(e) = sandbox::ensure_bridge(&self.gateway).await {
            tracing::error!(error = %e, bridge = %self.gateway.bridge, "cannot set up the gateway bridge; tasks will fail to start");
        }
        let wake = Arc::new(Notify::new());
        let died = Arc::new(Mutex::new(HashSet::new()));
        let watcher = watch_engine(
            self.engine.clone(),
            wake.clone(),
            died.clone(),
            stop.clone(),
        );
        tokio::spawn(watcher);
        let mut changes = self.link.assigned.clone();
        let mut published = None;
        loop {
            let assigned = changes.borrow_and_update().clone();
            // Until the dispatcher sent the full set, every container would
            // look like an orphan: wait for it.
            if let Some(assigned) = assigned {
                let died = std::mem::take(&mut *died.lock().expect("died set lock"));
                match self.pass(&assigned.tasks, &died).await {
                    Ok(ports) => publish(&mut published, ports).await,
                    Err(e) => tracing::warn!(error = %e, "agent pass failed; retrying"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = wake.notified() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    /// One reconcile pass over this node's tasks and containers; returns
    /// the host-mode ports the tasks meant to run publish.
    /// `died` names containers Docker just reported dead: the container list
    /// can still call them running for a moment, so they are checked one by one.
    async fn pass(
        &self,
        assigned: &[Task],
        died: &HashSet<String>,
    ) -> Result<Vec<HostPort>, engine::EngineError> {
        let mut containers = self.engine.task_containers().await?;
        for task in containers.values_mut() {
            for c in [&mut task.app, &mut task.pause].into_iter().flatten() {
                let id = c.id.clone().unwrap_or_default();
                if is_running(c) && died.contains(&id) && !self.engine.is_running(&id).await? {
                    c.state = Some("exited".into());
                }
            }
        }
        let mine: Vec<&Task> = assigned.iter().collect();

        // Containers of tasks the store no longer has (reaped, or from a
        // service removed while this agent was down) are orphans.
        let known: HashSet<&str> = mine.iter().map(|t| t.id.as_str()).collect();
        let orphans: Vec<String> = containers
            .keys()
            .filter(|id| !known.contains(id.as_str()))
            .cloned()
            .collect();
        for id in orphans {
            if let Some(c) = containers.remove(&id) {
                self.teardown(&id, &c, true).await;
            }
        }

        let used: Mutex<HashSet<Ipv4Addr>> = Mutex::new(
            containers
                .values()
                .filter_map(|c| c.pause.as_ref())
                .filter_map(|p| label(p, LABEL_ADDR)?.parse().ok())
                .collect(),
        );
        // Tasks progress concurrently: one slow stop must not hold up the rest.
        let steps = mine.iter().map(|task| {
            let have = containers.get(&task.id).cloned().unwrap_or_default();
            let used = &used;
            async move { (task.id.clone(), self.step(task, &have, used).await) }
        });
        let updates: Vec<(String, TaskStatus)> = futures::future::join_all(steps)
            .await
            .into_iter()
            .filter_map(|(id, st)| Some((id, st?)))
            .collect();
        let ports = host_ports(&mine, &updates, &containers);
        if !updates.is_empty() {
            self.send(updates);
        }
        Ok(ports)
    }

    /// Move one task towards its desired state; returns a status to report.
    async fn step(
        &self,
        task: &Task,
        have: &TaskContainers,
        used: &Mutex<HashSet<Ipv4Addr>>,
    ) -> Option<TaskStatus> {
        let observed = task.status.state;
        if task.desired_state >= TaskState::Shutdown {
            let remove = task.desired_state >= TaskState::Remove;
            let any_running = have.app.iter().chain(&have.pause).any(is_running);
            if any_running || (remove && have.ids().next().is_some()) {
                self.teardown(&task.id, have, remove).await;
            }
            return (!observed.is_terminal())
                .then(|| TaskStatus::new(TaskState::Shutdown, "shutdown"));
        }
        if task.desired_state < TaskState::Running || observed.is_terminal() {
            return None;
        }
        match (&have.app, observed) {
            (Some(app), _) if is_running(app) => {
                (observed < TaskState::Running).then(|| self.running(task, have))
            }
            // The container ran and stopped: the task is over.
            (Some(app), TaskState::Running | TaskState::Starting) if has_exited(app) => {
                let id = app.id.clone().unwrap_or_default();
                let code = self.engine.exit_code(&id).await.unwrap_or(-1);
                // Free the namespace holder; containers stay for `logs` until reaped.
                if let Some(p) = have.pause.as_ref().and_then(|p| p.id.as_deref()) {
                    let _ = self.engine.stop(p, 0).await;
                }
                Some(exited(code, &id))
            }
            _ => Some(self.start(task, have, used).await),
        }
    }

    fn running(&self, task: &Task, have: &TaskContainers) -> TaskStatus {
        let mut st = TaskStatus::new(TaskState::Running, "started");
        st.container_id = have.app.as_ref().and_then(|c| c.id.clone());
        st.addr = have
            .pause
            .as_ref()
            .and_then(|p| label(p, LABEL_ADDR).map(str::to_string));
        tracing::info!(task = %task.name(), id = %task.id, "task running");
        st
    }

    /// Prepare the sandbox and start the task. Errors before the container
    /// exists reject the task; errors starting it fail the task.
    async fn start(
        &self,
        task: &Task,
        have: &TaskContainers,
        used: &Mutex<HashSet<Ipv4Addr>>,
    ) -> TaskStatus {
        self.report(task, TaskState::Preparing, "preparing").await;
        if let Err(msg) = self.engine.check_image(&task.spec.image).await {
            return TaskStatus::new(TaskState::Rejected, "preparing failed").with_err(msg);
        }
        if let Err(msg) = self.engine.check_image(&self.pause_image).await {
            let err = format!("{msg} (the pause image is built by scripts/images.sh)");
            return TaskStatus::new(TaskState::Rejected, "preparing failed").with_err(err);
        }
        // Any leftovers from an interrupted start are replaced, never reused
        // half-plumbed.
        self.teardown(&task.id, have, true).await;
        let addr = {
            let mut used = used.lock().expect("address set lock");
            let free = self.gateway.task_addrs().find(|a| !used.contains(a));
            free.inspect(|a| {
                used.insert(*a);
            })
        };
        let Some(addr) = addr else {
            let err = format!("no free address on gateway {}", self.gateway.addr);
            return TaskStatus::new(TaskState::Rejected, "preparing failed").with_err(err);
        };
        let pause = match self
            .engine
            .start_pause(task, &self.pause_image, &addr.to_string())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                return TaskStatus::new(TaskState::Rejected, "preparing failed")
                    .with_err(e.to_string())
            }
        };
        if let Err(e) = sandbox::attach(pause.1, &self.gateway, addr, &veth_name(&task.id)).await {
            let _ = self.engine.remove(&pause.0).await;
            return TaskStatus::new(TaskState::Rejected, "network setup failed")
                .with_err(e.to_string());
        }
        let app = match self.engine.create_app(task, &pause.0).await {
            Ok(id) => id,
            Err(e) => {
                let _ = self.engine.remove(&pause.0).await;
                return TaskStatus::new(TaskState::Rejected, "create failed")
                    .with_err(e.to_string());
            }
        };
        self.report(task, TaskState::Starting, "starting").await;
        if let Err(e) = self.engine.start(&app).await {
            let _ = self.engine.stop(&pause.0, 0).await;
            return TaskStatus::new(TaskState::Failed, "starting container failed")
                .with_err(e.to_string());
        }
        let mut st = TaskStatus::new(TaskState::Running, "started");
        st.container_id = Some(app);
        st.addr = Some(addr.to_string());
        tracing::info!(task = %task.name(), id = %task.id, %addr, "task started");
        st
    }

    /// Report an intermediate state right away, so `service ps` and the
    /// progress display follow a slow start step by step.
    async fn report(&self, task: &Task, state: TaskState, message: &str) {
        if task.status.state >= state {
            return;
        }
        self.send(vec![(task.id.clone(), TaskStatus::new(state, message))]);
    }

    fn send(&self, report: session::Report) {
        if self.link.reports.send(report).is_err() {
            tracing::warn!("the dispatcher session is gone; task status not reported");
        }
    }

    /// Stop a task's containers, and remove them when `remove` is set.
    async fn teardown(&self, task_id: &str, have: &TaskContainers, remove: bool) {
        for id in have.ids() {
            let result = if remove {
                self.engine.remove(id).await
            } else {
                self.engine.stop(id, STOP_GRACE_SECS).await
            };
            if let Err(e) = result {
                tracing::warn!(task = task_id, container = id, error = %e, "container cleanup failed");
            }
        }
        if remove {
            let _ = sandbox::detach(&veth_name(task_id)).await;
        }
    }
}

/// The host-mode ports of the tasks meant to run here, each to its task's
/// address: the one just reported, or the one on its sandbox container.
fn host_ports(
    mine: &[&Task],
    updates: &[(String, TaskStatus)],
    containers: &HashMap<String, TaskContainers>,
) -> Vec<HostPort> {
    let addr_of = |id: &str| -> Option<Ipv4Addr> {
        updates
            .iter()
            .find(|(t, _)| t == id)
            .and_then(|(_, st)| st.addr.clone())
            .or_else(|| {
                let pause = containers.get(id)?.pause.as_ref()?;
                label(pause, LABEL_ADDR).map(str::to_string)
            })?
            .parse()
            .ok()
    };
    let mut ports: Vec<HostPort> = mine
        .iter()
        .filter(|t| t.desired_state == TaskState::Running && !t.status.state.is_terminal())
        .flat_map(|t| {
            let addr = addr_of(&t.id);
            t.spec
                .ports
                .iter()
                .filter(|p| p.mode == PublishMode::Host)
                .filter_map(move |p| {
                    Some(HostPort {
                        proto: crate::ports::mesh_proto(p.protocol),
                        published: p.published,
                        addr: addr?,
                        target: p.target,
                    })
                })
        })
        .collect();
    ports.sort();
    ports
}

/// Program this node's host-mode ports when they changed (`applied` is what
/// the last successful sync wrote; None before the first). A failure is
/// retried on the next pass.
async fn publish(applied: &mut Option<Vec<HostPort>>, want: Vec<HostPort>) {
    if applied.as_ref() == Some(&want) {
        return;
    }
    if applied.is_none() && want.is_empty() {
        // Nothing to publish: only drop what an earlier run may have left,
        // without requiring iptables on nodes that never publish.
        let _ = tokio::task::spawn_blocking(hostports::clear).await;
        *applied = Some(want);
        return;
    }
    let ports = want.clone();
    match tokio::task::spawn_blocking(move || hostports::sync(&ports)).await {
        Ok(Ok(())) => {
            tracing::info!(ports = want.len(), "host-mode ports published");
            *applied = Some(want);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot publish host-mode ports; retrying"),
        Err(e) => tracing::warn!(error = %e, "host-mode port sync panicked; retrying"),
    }
}

/// The status of a task whose container exited with `code`.
fn exited(code: i64, container: &str) -> TaskStatus {
    let mut st = if code == 0 {
        TaskStatus::new(TaskState::Complete, "finished")
    } else {
        TaskStatus::new(TaskState::Failed, "task: non-zero exit")
            .with_err(format!("task: non-zero exit ({code})"))
    };
    st.exit_code = Some(code);
    st.container_id = Some(container.to_string());
    st
}

/// Host-side veth name for a task: unique and within the 15-byte limit.
fn veth_name(task_id: &str) -> String {
    format!("sw{}", &task_id[..task_id.len().min(11)])
}

/// Wake the agent as soon as one of its containers starts or dies, instead of
/// waiting for the next resync.
async fn watch_engine(
    engine: Engine,
    wake: Arc<Notify>,
    died: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
) {
    use bollard::system::EventsOptions;
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                vec!["die".to_string(), "start".to_string()],
            ),
        ]);
        let mut events = engine.docker.events(Some(EventsOptions::<String> {
            filters,
            ..Default::default()
        }));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        if ev.action.as_deref() == Some("die") {
                            if let Some(id) = ev.actor.and_then(|a| a.id) {
                                died.lock().expect("died set lock").insert(id);
                            }
                        }
                        wake.notify_one()
                    }
                    Some(Err(e)) => { tracing::debug!(error = %e, "docker event stream"); break; }
                    None => break,
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_swarm_states() {
        assert_eq!(exited(0, "c").state, TaskState::Complete);
        let failed = exited(137, "c");
        assert_eq!(failed.state, TaskState::Failed);
        assert_eq!(failed.err.as_deref(), Some("task: non-zero exit (137)"));
    }

    #[test]
    fn veth_names_fit_the_kernel_limit() {
        assert!(veth_name("abcdefghijklmnopqrstuvwxy").len() <= 15);
    }
}
