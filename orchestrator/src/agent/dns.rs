//! The agent's side of the embedded DNS server: the node's names follow
//! its view, and every task gets a listener on 127.0.0.11:53 inside its own
//! network namespace, scoped to the task's networks.

use crate::types::{NodeView, Task};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use swarm_dns::{Listener, Names, Resolver};
use swarm_mesh::sandbox::{self, SandboxError};

/// Docker's address for the embedded DNS server, inside each container.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

pub struct TaskDns {
    resolver: Resolver,
    listeners: Mutex<HashMap<String, Listener>>,
}

impl TaskDns {
    /// Forward other names to the resolvers this node itself uses.
    pub fn new() -> std::io::Result<TaskDns> {
        let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Ok(TaskDns {
            resolver: Resolver::new(swarm_dns::upstreams_from_resolv_conf(&conf))?,
            listeners: Mutex::new(HashMap::new()),
        })
    }

    /// What this node's listeners answered so far.
    pub fn stats(&self) -> std::sync::Arc<swarm_dns::Stats> {
        self.resolver.stats()
    }

    /// Answer from this view from now on.
    pub fn update(&self, view: &NodeView) {
        self.resolver.set_names(Names::new(
            view.dns
                .iter()
                .map(|r| (r.network_id.clone(), r.name.clone(), r.addrs.clone())),
        ));
    }

    pub fn serves(&self, task_id: &str) -> bool {
        self.listeners
            .lock()
            .expect("listeners lock")
            .contains_key(task_id)
    }

    /// Start the task's listener inside the namespace of `pid` (its pause
    /// container), unless it has one.
    pub async fn ensure(&self, task: &Task, pid: u32) -> Result<(), SandboxError> {
        if self.serves(&task.id) {
            return Ok(());
        }
        let socket = sandbox::in_namespace(pid, move || async move {
            let s = std::net::UdpSocket::bind(SocketAddr::from((DNS_ADDR, 53)))
                .and_then(|s| s.set_nonblocking(true).map(|_| s));
            s.map_err(|source| SandboxError::Namespace { pid, source })
        })
        .await?;
        let scope = task
            .networks
            .iter()
            .flatten()
            .map(|a| a.network_id.clone())
            .collect();
        let listener = self
            .resolver
            .serve(socket, scope)
            .map_err(|source| SandboxError::Namespace { pid, source })?;
        self.listeners
            .lock()
            .expect("listeners lock")
            .insert(task.id.clone(), listener);
        Ok(())
    }

    pub fn forget(&self, task_id: &str) {
        self.listeners
            .lock()
            .expect("listeners lock")
            .remove(task_id);
    }
}
