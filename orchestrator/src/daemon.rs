//! `swarm daemon`: one per host. Owns the node's identity, the raft store, the
//! manager loops (on managers), the agent, and the control API on a unix
//! socket for the CLI.

use crate::agent::{engine::Engine, Agent};
use crate::api::server::ControlService;
use crate::store::Store;
use crate::types::{new_id, now_ms, Availability, Node, NodeRole, NodeState};
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use swarm_mesh::sandbox::Gateway;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub advertise_addr: String,
    pub hostname: String,
    pub gateway_subnet: Ipv4Net,
    pub pause_image: String,
}

/// Who this node is; created on first start and kept in the data dir.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: String,
    /// This node's raft member ID. Random, so nodes never need to agree on it.
    pub raft_id: u64,
}

impl Identity {
    fn load_or_create(dir: &Path) -> Result<Identity> {
        let path = dir.join("node.json");
        if path.exists() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            return serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is corrupt; move it away to start as a new node",
                    path.display()
                )
            });
        }
        let id = Identity {
            node_id: new_id(),
            raft_id: rand::random::<u64>() >> 1,
        };
        // Write then rename, so a crash never leaves a half-written identity.
        let tmp = dir.join("node.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&id)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(id)
    }
}

/// State shared between the control API and the daemon's roles.
pub struct Daemon {
    pub config: DaemonConfig,
    pub identity: Identity,
    pub store: Store,
    pub engine: Engine,
    roles_started: Mutex<bool>,
    stop: CancellationToken,
}

impl Daemon {
    /// Start the manager loops and the agent, once.
    pub async fn start_roles(&self) -> Result<()> {
        let mut started = self.roles_started.lock().await;
        if *started {
            return Ok(());
        }
        self.store
            .wait_for_leader(Duration::from_secs(10))
            .await
            .context("waiting for the raft leader")?;
        self.register_node().await?;
        crate::manager::spawn(self.store.clone(), self.stop.clone());
        let agent = Agent {
            node_id: self.identity.node_id.clone(),
            store: self.store.clone(),
            engine: self.engine.clone(),
            gateway: Gateway::for_subnet("swgw0", self.config.gateway_subnet),
            pause_image: self.config.pause_image.clone(),
        };
        tokio::spawn(agent.run(self.stop.clone()));
        *started = true;
        Ok(())
    }

    /// The node record as this daemon sees itself now.
    pub async fn node_record(&self) -> Node {
        let now = now_ms();
        let existing = self
            .store
            .state()
            .nodes
            .get(&self.identity.node_id)
            .cloned();
        let engine_version = self.engine.version().await.unwrap_or_default();
        Node {
            id: self.identity.node_id.clone(),
            raft_id: self.identity.raft_id,
            hostname: self.config.hostname.clone(),
            role: NodeRole::Manager,
            availability: existing
                .as_ref()
                .map_or(Availability::Active, |n| n.availability),
            state: NodeState::Ready,
            addr: self.config.advertise_addr.clone(),
            engine_version,
            nano_cpus: (std::thread::available_parallelism().map_or(1, |n| n.get()) as i64)
                * 1_000_000_000,
            memory_bytes: memory_bytes(),
            created_at: existing.as_ref().map_or(now, |n| n.created_at),
            updated_at: now,
        }
    }

    async fn register_node(&self) -> Result<()> {
        let node = self.node_record().await;
        self.store
            .write(crate::state::Command::PutNode(node))
            .await
            .context("registering this node")
    }
}

fn memory_bytes() -> i64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub async fn run(config: DaemonConfig) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let data_dir = config.data_dir.canonicalize()?;
    let identity = Identity::load_or_create(&data_dir)?;
    tracing::info!(node_id = %identity.node_id, raft_id = identity.raft_id, data_dir = %data_dir.display(), "starting swarm daemon");

    let engine = Engine::connect(&identity.node_id, &data_dir.display().to_string()).await?;
    let store = Store::open(&data_dir, identity.raft_id).await?;
    let stop = CancellationToken::new();
    let daemon = Arc::new(Daemon {
        config: DaemonConfig {
            data_dir,
            ..config.clone()
        },
        identity,
        store: store.clone(),
        engine,
        roles_started: Mutex::new(false),
        stop: stop.clone(),
    });

    if store.is_initialized().await {
        // A restart of a node that is already in a swarm: resume its roles.
        let d = daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = d.start_roles().await {
                tracing::error!(error = format!("{e:#}"), "cannot resume swarm roles");
            }
        });
    }

    let listener = bind_socket(&config.socket)?;
    tracing::info!(socket = %config.socket.display(), "control API listening");
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let service = ControlService::new(daemon.clone()).into_server();
    let shutdown = {
        let stop = stop.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            stop.cancel();
        }
    };
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("control API server")?;
    store.shutdown().await;
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

/// Bind the control socket with mode 0600: whoever can use it controls the cluster.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        // A live daemon would answer; a dead one left a stale file behind.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another swarm daemon is already listening on {}; stop it or pass a different --socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
