//! The executor seam: how one task becomes containers and back, in
//! SwarmKit's controller shape (prepare, start, wait, shutdown, remove).
//! The agent's pass decides *which* step a task needs; this says *how*, on
//! the Docker Engine with a pause sandbox whose network is plumbed before
//! the application starts.

use super::engine::{has_exited, label, TaskContainers, LABEL_ADDR};
use super::mesh::TaskEndpoint;
use super::network::{self, Networks};
use super::Agent;
use crate::types::{NodeView, Task, TaskState, TaskStatus};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// A prepared sandbox: the pause container holding the task's namespace.
pub struct Sandbox {
    pub pause_id: String,
    pub pid: u32,
    /// The task's address on the node's gateway bridge, if it has one.
    pub gw_addr: Option<Ipv4Addr>,
}

pub struct Controller<'a> {
    pub agent: &'a Agent,
    pub task: &'a Task,
    pub view: &'a NodeView,
    pub secrets: &'a super::secrets::Received,
}

const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn rejected(message: &str, err: impl ToString) -> TaskStatus {
    TaskStatus::new(TaskState::Rejected, message).with_err(err.to_string())
}

impl Controller<'_> {
    /// Check the images, replace any leftovers of an interrupted start,
    /// start the pause container and plumb its network. A failure rejects
    /// the task.
    pub async fn prepare(
        &self,
        have: &TaskContainers,
        used: &Mutex<HashSet<Ipv4Addr>>,
    ) -> Result<Sandbox, TaskStatus> {
        let (agent, task) = (self.agent, self.task);
        if agent.engine.check_image(&task.spec.image).await.is_err() {
            self.pull().await?;
        }
        if let Err(err) = super::pause::ensure(&agent.engine, &agent.pause_image).await {
            return Err(rejected("preparing failed", err));
        }
        let missing = Networks::missing(task, self.view);
        if !missing.is_empty() {
            // The view travels with the task, so this means the overlay
            // could not be built here: say so rather than start half-wired.
            let err = format!(
                "networks not available on this node: {}",
                missing.join(", ")
            );
            return Err(rejected("network setup failed", err));
        }
        self.remove(have).await;
        let gw_addr = if Networks::wants_gateway(task, self.view) {
            let mut used = used.lock().expect("address set lock");
            let free = agent
                .networks
                .gateway
                .task_addrs()
                .find(|a| !used.contains(a));
            let Some(a) = free else {
                let err = format!("no free address on gateway {}", agent.networks.gateway.addr);
                return Err(rejected("preparing failed", err));
            };
            used.insert(a);
            Some(a)
        } else {
            None
        };
        let label_addr = gw_addr.map(|a| a.to_string()).unwrap_or_default();
        let (pause_id, pid) = agent
            .engine
            .start_pause(task, &agent.pause_image, &label_addr)
            .await
            .map_err(|e| rejected("preparing failed", e))?;
        let ports = agent.networks.ports(task, self.view, gw_addr);
        let plumbed = async {
            agent
                .networks
                .attach(pid, &ports)
                .await
                .map_err(|e| e.to_string())?;
            agent
                .dns
                .ensure(task, pid)
                .await
                .map_err(|e| e.to_string())?;
            let overlay_ports: Vec<String> = ports
                .iter()
                .filter(|p| p.mac.is_some())
                .map(|p| p.host_if.clone())
                .collect();
            // Published ports lead to ingress addresses: the data plane may
            // hand those packets straight to the task's ingress port.
            let ingress = agent.networks.ingress_bridge(self.view);
            let endpoints: Vec<TaskEndpoint> = ports
                .iter()
                .filter(|p| Some(&p.bridge) == ingress.as_ref())
                .filter_map(|p| {
                    Some(TaskEndpoint {
                        addr: p.addr.addr(),
                        iface: p.host_if.clone(),
                        mac: p.mac?,
                    })
                })
                .collect();
            if let Some(m) = agent.mesh.clone() {
                tokio::task::spawn_blocking(move || {
                    m.lock()
                        .expect("mesh lock")
                        .attach_task(&overlay_ports, &endpoints)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };
        if let Err(e) = plumbed.await {
            let _ = agent.engine.remove(&pause_id).await;
            agent.networks.detach(&task.id).await;
            agent.dns.forget(&task.id);
            return Err(rejected("network setup failed", e));
        }
        Ok(Sandbox {
            pause_id,
            pid,
            gw_addr,
        })
    }

    /// Pull the task's image, its progress shown in the task's PREPARING
    /// state (at most one report a second). A failed pull rejects the task
    /// with Docker's message.
    async fn pull(&self) -> Result<(), TaskStatus> {
        let image = &self.task.spec.image;
        let mut last = std::time::Instant::now() - PROGRESS_EVERY;
        let progress = |line: String| {
            if last.elapsed() >= PROGRESS_EVERY {
                last = std::time::Instant::now();
                self.agent.progress(
                    self.task,
                    TaskState::Preparing,
                    &format!("pulling {image}: {line}"),
                );
            }
        };
        self.agent
            .engine
            .pull(image, progress)
            .await
            .map_err(|e| rejected("preparing failed", format!("pulling image {image}: {e}")))
    }

    /// Create and start the application inside the sandbox. A failure to
    /// create rejects the task; a failure to start fails it.
    pub async fn start(&self, sb: &Sandbox) -> Result<String, TaskStatus> {
        let engine = &self.agent.engine;
        let resolv = self
            .agent
            .resolv_conf(self.task)
            .map_err(|e| rejected("create failed", e))?;
        let mut files = vec![(resolv, "/etc/resolv.conf".to_string())];
        match self.agent.secrets.write(self.task, self.secrets) {
            Ok(mounts) => files.extend(mounts),
            Err(e) => {
                let _ = engine.remove(&sb.pause_id).await;
                return Err(rejected("setting up secrets failed", e));
            }
        }
        let app = match engine.create_app(self.task, &sb.pause_id, &files).await {
            Ok(id) => id,
            Err(e) => {
                let _ = engine.remove(&sb.pause_id).await;
                return Err(rejected("create failed", e));
            }
        };
        self.agent
            .report(self.task, TaskState::Starting, "starting")
            .await;
        if let Err(e) = engine.start(&app).await {
            let _ = engine.stop(&sb.pause_id, 0).await;
            return Err(
                TaskStatus::new(TaskState::Failed, "starting container failed")
                    .with_err(e.to_string()),
            );
        }
        Ok(app)
    }

    /// The task's end, once its application has exited: COMPLETE or
    /// FAILED with the exit code. `None` while it runs or never ran.
    pub async fn wait(&self, have: &TaskContainers) -> Option<TaskStatus> {
        let app = have.app.as_ref().filter(|a| has_exited(a))?;
        let id = app.id.clone().unwrap_or_default();
        let code = self.agent.engine.exit_code(&id).await.unwrap_or(-1);
        // Free the namespace holder; containers stay for `logs` until reaped.
        if let Some(p) = have.pause.as_ref().and_then(|p| p.id.as_deref()) {
            let _ = self.agent.engine.stop(p, 0).await;
        }
        Some(exited(code, &id))
    }

    /// Stop the task's containers, keeping them for `logs`: the stop
    /// signal, then SIGKILL after the service's grace period.
    pub async fn shutdown(&self, have: &TaskContainers) {
        let grace = super::options::stop_grace_secs(self.task);
        teardown(self.agent, &self.task.id, have, Teardown::Stop { grace }).await
    }

    /// Remove the task's containers and its veths.
    pub async fn remove(&self, have: &TaskContainers) {
        teardown(self.agent, &self.task.id, have, Teardown::Remove).await
    }
}

/// The address the sandbox container was labelled with.
pub fn gateway_addr(have: &TaskContainers) -> Option<String> {
    have.pause.as_ref().and_then(|p| {
        label(p, LABEL_ADDR)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
    })
}

pub enum Teardown {
    /// Stop, giving the containers `grace` seconds before SIGKILL.
    Stop { grace: i64 },
    /// Remove the containers and the task's veths.
    Remove,
}

/// Stop or remove a task's containers. Also used for orphans, which have
/// no task record.
pub async fn teardown(agent: &Agent, task_id: &str, have: &TaskContainers, how: Teardown) {
    let remove = matches!(how, Teardown::Remove);
    for id in have.ids() {
        let result = match how {
            Teardown::Remove => agent.engine.remove(id).await,
            Teardown::Stop { grace } => agent.engine.stop(id, grace).await,
        };
        if let Err(e) = result {
            tracing::warn!(task = task_id, container = id, error = %e, "container cleanup failed");
        }
    }
    if remove {
        agent.networks.detach(task_id).await;
        if let Some(m) = &agent.mesh {
            m.lock()
                .expect("mesh lock")
                .detach_task(&network::all_ifs(task_id));
        }
        agent.forget(task_id);
    }
}

/// The status of a task whose container exited with `code`.
pub fn exited(code: i64, container: &str) -> TaskStatus {
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
}
