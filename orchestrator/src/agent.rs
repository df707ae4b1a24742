//! The agent: runs the tasks assigned to this node on the Docker Engine and
//! reports their observed state. It is level-triggered: every pass compares
//! the tasks in the store with the containers Docker has (found by label), so
//! a restarted agent adopts what is already running and never duplicates it.

pub mod dns;
pub mod engine;
pub mod exec;
pub mod mesh;
pub mod network;
pub mod options;
pub mod pause;
pub mod secrets;
pub mod session;
pub mod task_io;

use crate::ports::PublishMode;
use crate::types::{NodeView, Task, TaskState, TaskStatus};
use engine::{is_running, label, Engine, Health, TaskContainers, LABEL_ADDR};
use exec::Controller;
use futures::StreamExt;
use network::Networks;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_mesh::hostports::{self, HostPort};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Longest gap between passes when nothing signals a change.
const RESYNC: Duration = Duration::from_secs(2);

pub struct Agent {
    pub link: session::Link,
    pub engine: Engine,
    pub networks: Networks,
    pub pause_image: String,
    /// Where per-task files (resolv.conf) live: `<data dir>/tasks/<id>/`.
    pub data_dir: PathBuf,
    /// This node's underlay address, the source of its overlay tunnels.
    pub underlay: Option<Ipv4Addr>,
    pub dns: dns::TaskDns,
    /// The data plane, when it could be attached.
    pub mesh: Option<mesh::SharedMesh>,
    /// Where tasks' secret and config files live (a tmpfs).
    pub secrets: secrets::SecretFiles,
}

impl Agent {
    pub async fn run(self, stop: CancellationToken) {
        if let Err(e) = self.networks.ensure_gateway().await {
            tracing::error!(error = %e, bridge = %self.networks.gateway.bridge, "cannot set up the gateway bridge; tasks will fail to start");
        }
        if let Some(addr) = self.underlay {
            if let Err(e) = self.networks.set_underlay(addr).await {
                tracing::error!(error = %e, %addr, "cannot find the underlay link; overlay networks will not work");
            }
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
                if let Err(e) = self.networks.sync(&assigned.view).await {
                    tracing::warn!(error = %e, "cannot build this node's overlays; retrying");
                }
                self.dns.update(&assigned.view);
                self.program_mesh(&assigned.view).await;
                let died = std::mem::take(&mut *died.lock().expect("died set lock"));
                match self.pass(&assigned, &died).await {
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
        assigned: &session::Assigned,
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
        let mine: Vec<&Task> = assigned.tasks.iter().collect();

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
                exec::teardown(self, &id, &c, exec::Teardown::Remove).await;
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
            async move {
                (
                    task.id.clone(),
                    self.step(task, assigned, &have, used).await,
                )
            }
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
        assigned: &session::Assigned,
        have: &TaskContainers,
        used: &Mutex<HashSet<Ipv4Addr>>,
    ) -> Option<TaskStatus> {
        let ctl = Controller {
            agent: self,
            task,
            view: &assigned.view,
            secrets: &assigned.secrets,
        };
        let observed = task.status.state;
        if task.desired_state >= TaskState::Shutdown {
            let remove = task.desired_state >= TaskState::Remove;
            let any_running = have.app.iter().chain(&have.pause).any(is_running);
            if remove && have.ids().next().is_some() {
                ctl.remove(have).await;
            } else if any_running {
                ctl.shutdown(have).await;
            }
            return (!observed.is_terminal())
                .then(|| TaskStatus::new(TaskState::Shutdown, "shutdown"));
        }
        if task.desired_state < TaskState::Running || observed.is_terminal() {
            return None;
        }
        match (&have.app, observed) {
            (Some(app), _) if is_running(app) => {
                // A restarted agent adopts the task: its DNS listener too.
                if !self.dns.serves(&task.id) {
                    self.serve_dns(task, have).await;
                }
                match engine::health(app) {
                    // Not a backend, and not in DNS, until its check passes.
                    Health::Starting => None,
                    Health::Unhealthy => {
                        ctl.shutdown(have).await;
                        let mut st =
                            TaskStatus::new(TaskState::Failed, "task: unhealthy container")
                                .with_err("task: unhealthy container");
                        st.container_id = app.id.clone();
                        Some(st)
                    }
                    Health::Healthy | Health::None => {
                        (observed < TaskState::Running).then(|| self.running(task, have))
                    }
                }
            }
            // The container ran and stopped: the task is over.
            (Some(_), TaskState::Running | TaskState::Starting) => ctl.wait(have).await,
            _ => Some(self.start(&ctl, have, used).await),
        }
    }

    fn running(&self, task: &Task, have: &TaskContainers) -> TaskStatus {
        let mut st = TaskStatus::new(TaskState::Running, "started");
        st.container_id = have.app.as_ref().and_then(|c| c.id.clone());
        st.addr = exec::gateway_addr(have);
        tracing::info!(task = %task.name(), id = %task.id, "task running");
        st
    }

    /// Prepare the sandbox and start the task.
    async fn start(
        &self,
        ctl: &Controller<'_>,
        have: &TaskContainers,
        used: &Mutex<HashSet<Ipv4Addr>>,
    ) -> TaskStatus {
        self.report(ctl.task, TaskState::Preparing, "preparing")
            .await;
        let sb = match ctl.prepare(have, used).await {
            Ok(sb) => sb,
            Err(st) => return st,
        };
        let app = match ctl.start(&sb).await {
            Ok(app) => app,
            Err(st) => return st,
        };
        // With a healthcheck the task stays STARTING until it passes.
        let checked = self.engine.has_healthcheck(&app).await.unwrap_or(false);
        let mut st = match checked {
            true => TaskStatus::new(TaskState::Starting, "starting (health: starting)"),
            false => TaskStatus::new(TaskState::Running, "started"),
        };
        st.container_id = Some(app);
        st.addr = sb.gw_addr.map(|a| a.to_string());
        tracing::info!(task = %ctl.task.name(), id = %ctl.task.id, pid = sb.pid, "task started");
        st
    }

    /// Report an intermediate state right away, so `service ps` and the
    /// progress display follow a slow start step by step.
    async fn report(&self, task: &Task, state: TaskState, message: &str) {
        if task.status.state < state {
            self.progress(task, state, message);
        }
    }

    /// Report a step's progress, also within the state the task is in
    /// already (an image pull's lines).
    fn progress(&self, task: &Task, state: TaskState, message: &str) {
        self.send(vec![(task.id.clone(), TaskStatus::new(state, message))]);
    }

    fn send(&self, report: session::Report) {
        if self.link.reports.send(report).is_err() {
            tracing::warn!("the dispatcher session is gone; task status not reported");
        }
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.data_dir.join("tasks").join(task_id)
    }

    /// Write the task's resolv.conf, which points at the node's embedded
    /// DNS server inside the task's own namespace; returns its path.
    fn resolv_conf(&self, task: &Task) -> std::io::Result<String> {
        let dir = self.task_dir(&task.id);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("resolv.conf");
        std::fs::write(&path, RESOLV_CONF)?;
        // Readable by the task's user, whoever it is (the daemon's umask
        // keeps its own files private).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(path.display().to_string())
    }

    /// Program the data plane from the view. Failures are retried on the
    /// next pass.
    async fn program_mesh(&self, view: &NodeView) {
        let Some(m) = self.mesh.clone() else {
            return;
        };
        let view = view.clone();
        let synced =
            tokio::task::spawn_blocking(move || m.lock().expect("mesh lock").sync(&view)).await;
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot program the data plane; retrying"),
            Err(e) => tracing::warn!(error = %e, "programming the data plane panicked; retrying"),
        }
    }

    /// Drop what the agent kept for a task that is gone.
    fn forget(&self, task_id: &str) {
        self.dns.forget(task_id);
        self.secrets.forget(task_id);
        let _ = std::fs::remove_dir_all(self.task_dir(task_id));
    }

    /// Start the DNS listener of a task whose sandbox already runs.
    async fn serve_dns(&self, task: &Task, have: &TaskContainers) {
        let Some(pause) = have.pause.as_ref().and_then(|p| p.id.as_deref()) else {
            return;
        };
        let result = match self.engine.pid(pause).await {
            Ok(pid) => self.dns.ensure(task, pid).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(task = %task.name(), error = %e, "cannot start the task's DNS listener");
        }
    }
}

/// Every task resolves through the embedded DNS server, which listens on
/// 127.0.0.11 inside the task's namespace (Docker's address for it).
const RESOLV_CONF: &str = "nameserver 127.0.0.11\noptions ndots:0\n";

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
                // A health change moves a task STARTING -> RUNNING or to
                // FAILED: act on it at once, not at the next resync.
                vec![
                    "die".to_string(),
                    "start".to_string(),
                    "health_status".to_string(),
                ],
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
