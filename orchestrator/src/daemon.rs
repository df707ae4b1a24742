//! `swarm daemon`: one per host. Owns the node's identity, the raft store, the
//! manager loops (on managers), the agent, and the control API on a unix
//! socket for the CLI.

mod autolock;
pub use autolock::LOCKED;
mod control;
mod lifecycle;

use crate::agent::mesh::{Mesh, SharedMesh};
use crate::agent::{engine::Engine, network::Networks, secrets::SecretFiles, session, Agent};
use crate::cluster::certs::{self, CertFiles};
use crate::cluster::{membership, ClusterService, JoinService};
use crate::dispatcher::Dispatcher;
use crate::keyring::Keyring;
use crate::net::{self, Tls};
use crate::raft::service::RaftService;
use crate::store::{Standing, Store};
use crate::types::{new_id, now_ms, Availability, Meta, Node, NodeRole, NodeState};
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_mesh::sandbox::Gateway;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub advertise_addr: String,
    pub hostname: String,
    pub gateway_subnet: Ipv4Net,
    pub pause_image: String,
    pub dataplane: crate::agent::mesh::Mode,
    pub pin_dir: PathBuf,
    /// Where tasks' secret files go (a tmpfs), one directory per node.
    pub secrets_dir: PathBuf,
    /// `--socket-group`: a group whose members may use the control socket.
    pub socket_group: Option<u32>,
    /// `--metrics-addr`: where Prometheus scrapes `/metrics` (none: off).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The ID of group `name` (a name, or a number).
pub fn group_id(name: &str) -> Result<u32> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let c = std::ffi::CString::new(name).context("a group name with a NUL byte")?;
    // SAFETY: getgrnam reads the group database; the pointer it returns is
    // read at once, before any other call could reuse its buffer.
    let entry = unsafe { libc::getgrnam(c.as_ptr()) };
    if entry.is_null() {
        anyhow::bail!("--socket-group {name}: no such group");
    }
    // SAFETY: non-null, as checked.
    Ok(unsafe { (*entry).gr_gid })
}

/// Who this node is. Its node ID comes from the CA: `init` names its own
/// (it is the CA), `join` takes the one the CA assigns, and the raft ID
/// follows from it. Before either, a provisional one stands in, on no disk.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node_id: String,
    /// This node's raft member ID, `pki::raft_id_of(node_id)`.
    pub raft_id: u64,
}

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    node_id: String,
}

impl Identity {
    pub fn new(node_id: &str) -> Identity {
        Identity {
            node_id: node_id.to_string(),
            raft_id: crate::pki::raft_id_of(node_id),
        }
    }

    /// This node's identity: the one its certificate names, else the one
    /// a half-done init or join left in `node.json`, else a provisional one.
    fn load(dir: &Path, certs: Option<&certs::Loaded>) -> Result<Identity> {
        if let Some(c) = certs {
            let der = crate::pki::pem_to_der(&c.cert_pem, "node certificate")?;
            return Ok(Identity::new(&crate::pki::Identity::of(&der)?.node_id));
        }
        let path = dir.join("node.json");
        if !path.exists() {
            return Ok(Identity::new(&new_id()));
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let file: IdentityFile = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is corrupt; move it away to start as a new node",
                path.display()
            )
        })?;
        Ok(Identity::new(&file.node_id))
    }

    /// Keep this identity in `node.json` (written whole or not at all).
    fn save(&self, dir: &Path) -> Result<()> {
        let body = serde_json::to_vec_pretty(&IdentityFile {
            node_id: self.node_id.clone(),
        })?;
        crate::files::write_private(&dir.join("node.json"), &body)
    }
}

/// State shared between the control API and the daemon's roles.
pub struct Daemon {
    pub config: DaemonConfig,
    pub identity: Identity,
    pub store: Store,
    pub engine: Engine,
    /// The swarm's secrets key, on managers.
    pub keyring: Keyring,
    certs: CertFiles,
    /// The address other nodes reach this one on (`--advertise-addr`, or
    /// what init or join was given, which is kept in the data dir).
    advertise: std::sync::RwLock<String>,
    /// Manager addresses this node knows, kept in the data dir so a worker
    /// finds the cluster again after a restart.
    managers: watch::Sender<Vec<String>>,
    roles_started: Mutex<bool>,
    /// The data plane, once attached (at init, join or a restart).
    pub mesh: std::sync::OnceLock<SharedMesh>,
    /// The agent's DNS server's counts, once it runs (for the metrics).
    pub dns_stats: std::sync::OnceLock<Arc<swarm_dns::Stats>>,
    /// Task I/O between askers and agents, while this node leads.
    pub broker: crate::broker::Broker,
    /// The cluster events this manager derived from its applied state.
    pub events: Arc<crate::events::Log>,
    /// Whether the node API (and the manager loops) run.
    serving: std::sync::atomic::AtomicBool,
    /// Whether this node has taken up its role: at once for a worker, once
    /// a raft voter for a manager. Join answers when it is.
    pub settled: watch::Sender<Settled>,
    stop: CancellationToken,
    /// Why this generation is to end, when it is (see `restart`).
    ending: watch::Sender<Option<Restart>>,
    /// The generation the control API serves (None while one starts).
    generations: Arc<watch::Sender<Option<Arc<Daemon>>>>,
}

/// How far this node has taken up its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Not yet, and what stood in the way last.
    Not(String),
    Yes,
}

/// Why a generation of the daemon ends before the process does: the node's
/// identity or role changed in a way that the raft store, the engine's
/// labels and the roles' loops, all made with the old one, cannot follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// `leave`: the identity and the state are gone; start as a new node.
    Left,
    /// `join`: the CA gave this node its identity; start as that node.
    Joined,
    /// Demoted to worker: drop the raft store, which holds the manager's
    /// copy of the state (the CA key and the join secrets with it).
    Demoted,
}

impl Restart {
    fn says(self) -> &'static str {
        match self {
            Restart::Left => "left the swarm; starting again as a new node",
            Restart::Joined => "joined the swarm; starting again as the node the CA named",
            Restart::Demoted => {
                "demoted to worker; dropping the manager's state and starting again"
            }
        }
    }
}

/// When a demoted manager may drop its raft store. Raft must first take
/// it out of the voters, and the change needs its vote: joint consensus
/// commits in the old voter set too, which with two managers is both. So
/// it keeps serving raft until the newest voter set leaves it out, plus a
/// grace for its last acknowledgement to reach the leader. A node that was
/// away when it was removed never hears of it (the leader no longer
/// replicates to it): with no leader for long, it goes too.
#[derive(Default)]
struct Departure {
    unlisted_since: Option<Instant>,
    leaderless_since: Option<Instant>,
}

impl Departure {
    const GRACE: Duration = Duration::from_secs(2);
    const LEADERLESS: Duration = Duration::from_secs(15);

    fn may_go(&mut self, standing: Standing, now: Instant) -> bool {
        fn since(mark: &mut Option<Instant>, on: bool, now: Instant) -> Duration {
            match on {
                true => now - *mark.get_or_insert(now),
                false => {
                    *mark = None;
                    Duration::ZERO
                }
            }
        }
        let unlisted = since(&mut self.unlisted_since, !standing.listed, now);
        let leaderless = since(&mut self.leaderless_since, !standing.led, now);
        unlisted >= Self::GRACE || leaderless >= Self::LEADERLESS
    }
}

impl Daemon {
    /// End this generation; `run` starts the next. Calls that come from
    /// now on wait for that one: this one's answers would be stale.
    pub fn restart(self: &Arc<Self>, why: Restart) {
        self.generations.send_if_modified(|current| {
            let mine = current.as_ref().is_some_and(|d| Arc::ptr_eq(d, self));
            if mine {
                *current = None;
            }
            mine
        });
        self.ending.send_replace(Some(why));
    }

    /// The generation after this one, once it runs.
    pub async fn successor(self: &Arc<Self>) -> Result<Arc<Daemon>> {
        let mut generations = self.generations.subscribe();
        let next = generations
            .wait_for(|d| d.as_ref().is_some_and(|d| !Arc::ptr_eq(d, self)))
            .await
            .context("the daemon stopped")?;
        Ok(next.clone().expect("waited for one"))
    }

    /// The managers this node knows of (from the dispatcher, or the data
    /// dir after a restart).
    pub fn known_managers(&self) -> Vec<String> {
        self.managers.borrow().clone()
    }

    pub fn advertise(&self) -> String {
        net::with_default_port(&self.advertise.read().expect("advertise lock"))
    }

    /// Use `addr` (when not empty) as this node's address from now on.
    pub fn set_advertise(&self, addr: &str) -> Result<()> {
        if addr.is_empty() {
            return Ok(());
        }
        crate::files::write_private(
            &self.config.data_dir.join("advertise_addr"),
            addr.as_bytes(),
        )?;
        *self.advertise.write().expect("advertise lock") = addr.to_string();
        Ok(())
    }

    /// Bring up everything that needs the node certificate: the node server
    /// (managers), the agent's dispatcher session and certificate renewal.
    pub async fn activate(self: &Arc<Self>, tls: Arc<Tls>) -> Result<()> {
        let mut started = self.roles_started.lock().await;
        if *started {
            return Ok(());
        }
        self.store.peers().set_tls(tls.clone());
        if tls.identity().role == NodeRole::Manager {
            self.serve_nodes(&tls).await?;
        }
        tokio::spawn(self.clone().follow_role(tls.clone()));
        tokio::spawn(self.clone().follow_autolock(tls.clone()));
        let (standing_tx, standing_rx) = watch::channel(certs::Standing::default());
        let (work_tx, work) = tokio::sync::mpsc::unbounded_channel();
        let link = session::spawn(
            self.store.peers().clone(),
            self.managers.clone(),
            standing_tx,
            work_tx,
            self.stop.clone(),
        );
        tokio::spawn(crate::agent::task_io::serve(
            self.engine.clone(),
            self.store.peers().clone(),
            work,
            self.stop.clone(),
        ));
        tokio::spawn(persist_managers(
            self.managers.subscribe(),
            self.config.data_dir.join("managers.json"),
        ));
        let underlay = crate::types::ipv4_host(&self.advertise());
        let mesh = match underlay {
            Some(addr) => self.attach_mesh(addr).await,
            None => None,
        };
        let agent = Agent {
            link,
            engine: self.engine.clone(),
            networks: Networks::new(Gateway::for_subnet("swgw0", self.config.gateway_subnet)),
            pause_image: self.config.pause_image.clone(),
            data_dir: self.config.data_dir.clone(),
            underlay,
            dns: crate::agent::dns::TaskDns::new()
                .context("cannot start the DNS server's thread")?,
            mesh,
            secrets: SecretFiles {
                dir: self.config.secrets_dir.join(&self.identity.node_id),
            },
        };
        let _ = self.dns_stats.set(agent.dns.stats());
        tokio::spawn(agent.run(self.stop.clone()));
        tokio::spawn(certs::renew_loop(
            tls,
            self.store.clone(),
            self.certs.clone(),
            standing_rx,
            self.managers.subscribe(),
            self.stop.clone(),
        ));
        *started = true;
        Ok(())
    }

    /// Attach the data plane to the link carrying `addr`. Without one the
    /// node still runs tasks, but publishes nothing through the mesh.
    async fn attach_mesh(&self, addr: std::net::Ipv4Addr) -> Option<SharedMesh> {
        let iface = match swarm_mesh::overlay::underlay_link(addr).await {
            Ok((iface, _)) => iface,
            Err(e) => {
                tracing::error!(error = %e, %addr, "cannot find the underlay link; the routing mesh is off");
                return None;
            }
        };
        let (mode, pin_dir) = (self.config.dataplane, self.config.pin_dir.clone());
        let attached =
            tokio::task::spawn_blocking(move || Mesh::attach(mode, &iface, addr, pin_dir)).await;
        match attached {
            Ok(Ok(m)) => {
                tracing::info!(mode = m.mode.as_str(), "data plane attached");
                let shared = Arc::new(std::sync::Mutex::new(m));
                let _ = self.mesh.set(shared.clone());
                Some(shared)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot attach the data plane; the routing mesh is off");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "attaching the data plane panicked");
                None
            }
        }
    }

    /// A manager that is not a raft voter yet (a promoted worker, or one
    /// whose join was cut short) fetches the secrets key, starts serving
    /// raft and asks to become a voter, until it is one. A demoted manager
    /// drops the manager's state: the daemon starts again as a worker.
    async fn follow_role(self: Arc<Self>, tls: Arc<Tls>) {
        let mut voter =
            tls.identity().role == NodeRole::Manager && self.store.is_initialized().await;
        let mut departure = Departure::default();
        loop {
            match (voter, tls.identity().role) {
                (false, NodeRole::Manager) => {
                    let managers = self.managers.borrow().clone();
                    let result = async {
                        self.fetch_secrets_key(&managers).await?;
                        self.serve_nodes(&tls).await?;
                        self.become_voter(&managers, &self.advertise()).await
                    };
                    match result.await {
                        Ok(()) => {
                            tracing::info!("this node is now a raft voter");
                            voter = true;
                            self.settled.send_replace(Settled::Yes);
                        }
                        Err(e) => {
                            let why = format!("{e:#}");
                            tracing::warn!(
                                error = why,
                                "cannot take up the manager role yet; retrying"
                            );
                            self.settled.send_replace(Settled::Not(why));
                        }
                    }
                }
                (true, NodeRole::Worker) => {
                    if departure.may_go(self.store.standing(), Instant::now()) {
                        self.keyring.clear();
                        self.restart(Restart::Demoted);
                        return;
                    }
                    self.settled.send_replace(Settled::Not(
                        "demoted: serving raft until the leader has removed this node from the voters"
                            .into(),
                    ));
                }
                (true, NodeRole::Manager) | (false, NodeRole::Worker) => {
                    self.settled.send_replace(Settled::Yes);
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Listen for other nodes (raft, joins, dispatcher) on the advertise
    /// address's port, over mutual TLS. Manager loops start here too: they
    /// act only while this node leads.
    async fn serve_nodes(&self, tls: &Arc<Tls>) -> Result<()> {
        if self.serving.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let addr = self.advertise();
        let port = addr.rsplit_once(':').map_or(net::DEFAULT_PORT, |(_, p)| {
            p.parse().unwrap_or(net::DEFAULT_PORT)
        });
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .with_context(|| format!("listening for nodes on port {port}"))?;
        tracing::info!(%addr, "node API listening (mutual TLS)");
        let dispatcher = Dispatcher::new(
            self.store.clone(),
            self.keyring.clone(),
            self.broker.clone(),
        );
        tokio::spawn(dispatcher.clone().run_liveness(self.stop.clone()));
        crate::manager::spawn(self.store.clone(), self.stop.clone());
        tokio::spawn(
            self.events
                .clone()
                .record(self.store.clone(), self.stop.clone()),
        );
        tokio::spawn(membership::run(self.store.clone(), self.stop.clone()));
        let conns = net::Connections::default();
        tokio::spawn(crate::cluster::access::cut_on_change(
            self.store.clone(),
            conns.clone(),
            self.stop.clone(),
        ));
        let server = tonic::transport::Server::builder()
            .add_service(RaftService::new(&self.store))
            .add_service(ClusterService::new(
                self.store.clone(),
                self.keyring.clone(),
            ))
            .add_service(JoinService::new(self.store.clone(), self.keyring.clone()))
            .add_service(dispatcher.into_server())
            .add_service(crate::broker::BrokerService::server(
                self.broker.clone(),
                self.store.clone(),
            ))
            .serve_with_incoming_shutdown(
                net::incoming(listener, tls.server_config(), conns, self.stop.clone()),
                self.stop.clone().cancelled_owned(),
            );
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "node API server stopped");
            }
        });
        Ok(())
    }

    fn remember_managers(&self, list: Vec<String>) -> Result<()> {
        crate::files::write_private(
            &self.config.data_dir.join("managers.json"),
            &serde_json::to_vec(&list)?,
        )?;
        self.managers.send_replace(list);
        Ok(())
    }

    /// The node record as this daemon sees itself now.
    pub async fn node_record(&self, role: NodeRole) -> Node {
        let now = now_ms();
        Node {
            id: self.identity.node_id.clone(),
            raft_id: self.identity.raft_id,
            hostname: self.config.hostname.clone(),
            role,
            availability: Availability::Active,
            state: NodeState::Ready,
            addr: self.advertise(),
            engine_version: self.engine.version().await.unwrap_or_default(),
            nano_cpus: (std::thread::available_parallelism().map_or(1, |n| n.get()) as i64)
                * 1_000_000_000,
            memory_bytes: memory_bytes(),
            labels: Default::default(),
            gateway_subnet: Some(self.config.gateway_subnet),
            attachments: Vec::new(),
            meta: Meta::new(now),
        }
    }
}

/// Cluster settings chosen at `swarm init`.
pub struct InitOptions {
    pub cert_expiry: Duration,
    pub heartbeat: Duration,
    pub addr_pool: Vec<Ipv4Net>,
    pub pool_mask_len: u8,
}

/// Keep the known manager addresses on disk as they change.
async fn persist_managers(mut list: watch::Receiver<Vec<String>>, path: PathBuf) {
    while list.changed().await.is_ok() {
        let body = serde_json::to_vec(&*list.borrow_and_update()).unwrap_or_default();
        if let Err(e) = crate::files::write_private(&path, &body) {
            tracing::warn!(error = format!("{e:#}"), "cannot save the manager list");
        }
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

/// Run the daemon until a signal. The control socket and its server live
/// as long as the process; the rest lives one generation, and a change of
/// identity or role (`Restart`) starts the next.
/// `swarm check`'s items, at start: warnings are logged, and a fail stops
/// the daemon before it changes anything. (Ports are left out: the daemon
/// binds them itself and says so if they are taken; so is the XDP probe:
/// the data plane attaches for real moments later.)
async fn preflight(config: &DaemonConfig) -> Result<()> {
    use crate::preflight::{self, Level};
    let items = preflight::run(&preflight::Host {
        dataplane: config.dataplane,
        pin_dir: config.pin_dir.clone(),
        underlay: None,
        ports: false,
        daemon_socket: None,
    })
    .await;
    for i in items.iter().filter(|i| i.status == Level::Warn) {
        tracing::warn!(
            check = i.check,
            fix = i.fix.as_deref().unwrap_or(""),
            "{}",
            i.detail
        );
    }
    let failed: Vec<_> = items
        .into_iter()
        .filter(|i| i.status == Level::Fail)
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "this host is not ready (see `swarm check`):\n{}",
            preflight::render(&failed).trim_end()
        );
    }
    Ok(())
}

pub async fn run(config: DaemonConfig) -> Result<()> {
    // Everything the daemon writes is its own: keys, certificates, raft's
    // store and the node's identity (files 0600, directories 0700). The
    // control socket is bound under a mask of its own (`bind_socket`).
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe { libc::umask(0o077) };
    preflight(&config).await?;
    let listener = bind_socket(&config.socket, config.socket_group)?;
    tracing::info!(socket = %config.socket.display(), "control API listening");
    let (generations, current) = watch::channel(None);
    let generations = Arc::new(generations);
    let signal = CancellationToken::new();
    if let Some(addr) = config.metrics_addr {
        crate::metrics::serve(addr, current.clone(), signal.clone()).await?;
    }
    let server = tokio::spawn({
        let signal = signal.clone();
        tonic::transport::Server::builder()
            .add_service(control::Current::new(current.clone(), config.socket_group))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                signal.cancelled_owned(),
            )
    });
    tokio::spawn({
        let signal = signal.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            notify_systemd(sd_notify::NotifyState::Stopping);
            signal.cancel();
        }
    });
    let result = async {
        while let Some(why) = run_generation(&config, &generations, &signal).await? {
            tracing::info!("{}", why.says());
        }
        Ok(())
    }
    .await;
    generations.send_replace(None);
    signal.cancel();
    let _ = server.await;
    let _ = std::fs::remove_file(&config.socket);
    result
}

/// Tell systemd (when it started us with a notify socket) how we stand.
fn notify_systemd(state: sd_notify::NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// One life of the daemon, until a signal (`None`) or a restart.
async fn run_generation(
    config: &DaemonConfig,
    generations: &Arc<watch::Sender<Option<Arc<Daemon>>>>,
    signal: &CancellationToken,
) -> Result<Option<Restart>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let data_dir = config.data_dir.canonicalize()?;
    make_private(&data_dir)?;
    let keyring = Keyring::load(&data_dir)?;
    let certs = CertFiles::new(&data_dir, keyring.clone());
    let saved = certs.load()?;
    let identity = Identity::load(&data_dir, saved.as_ref())?;
    tracing::info!(node_id = %identity.node_id, raft_id = identity.raft_id, data_dir = %data_dir.display(), "starting swarm daemon");

    let engine = Engine::connect(&identity.node_id, &data_dir.display().to_string()).await?;
    // Now rather than at the first task, so a fault shows at start; the
    // agent checks again per task (the image may be removed meanwhile).
    if let Err(e) = crate::agent::pause::ensure(&engine, &config.pause_image).await {
        tracing::warn!("{e}: tasks cannot start on this node until it is fixed");
    }
    let store = Store::open(&data_dir, identity.raft_id).await?;
    let stop = CancellationToken::new();
    let known: Vec<String> = std::fs::read(data_dir.join("managers.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let advertise = std::fs::read_to_string(data_dir.join("advertise_addr"))
        .unwrap_or_else(|_| config.advertise_addr.clone());
    let (ending, mut ended) = watch::channel(None);
    let daemon = Arc::new(Daemon {
        config: DaemonConfig {
            data_dir: data_dir.clone(),
            ..config.clone()
        },
        identity,
        store: store.clone(),
        engine,
        keyring,
        certs,
        advertise: std::sync::RwLock::new(advertise),
        managers: watch::channel(known).0,
        roles_started: Mutex::new(false),
        mesh: std::sync::OnceLock::new(),
        dns_stats: std::sync::OnceLock::new(),
        broker: crate::broker::Broker::new(store.clone()),
        events: Arc::default(),
        serving: Default::default(),
        settled: watch::channel(Settled::Not("not in a swarm".into())).0,
        stop: stop.clone(),
        ending,
        generations: generations.clone(),
    });

    if let Some(c) = saved {
        // A restart of a node that is already in a swarm: resume its roles,
        // unless autolock keeps its key sealed until `swarm unlock`.
        match c.key_pem {
            Some(key_pem) => {
                let tls = Tls::new(&c.ca_pem, &c.cert_pem, &key_pem)
                    .context("loading this node's certificates")?;
                daemon.activate(tls).await?;
            }
            None => tracing::warn!("{}", autolock::LOCKED),
        }
    } else {
        daemon.resume_init().await?;
    }
    generations.send_replace(Some(daemon.clone()));
    // Under systemd (Type=notify): the control API answers from now on.
    notify_systemd(sd_notify::NotifyState::Ready);

    let why = tokio::select! {
        _ = signal.cancelled() => None,
        r = ended.wait_for(Option::is_some) => r.ok().and_then(|w| *w),
    };
    stop.cancel();
    store.shutdown().await;
    if why.is_some() {
        // Every restart starts from an empty raft store: a new node's, a
        // joiner's (its raft ID changed with its node ID), a worker's. A
        // new file, too, where the old one may still be open in this
        // process (redb locks the file it opened, not the path).
        let redb = data_dir.join("raft.redb");
        match std::fs::remove_file(&redb) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", redb.display()))
            }
            _ => {}
        }
    }
    Ok(why)
}

/// The data directory 0700, and the files and directories directly in it
/// (and in `certs/`) private too: what an older version or another tool
/// created with laxer modes is tightened at start.
fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} private", p.display()))
    };
    set(dir, 0o700)?;
    for sub in [dir.to_path_buf(), dir.join("certs")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_file() => set(&path, 0o600)?,
                Ok(t) if t.is_dir() => set(&path, 0o700)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Bind the control socket, created 0600 (0660 for `group`, which then
/// owns it): whoever can use it controls the cluster.
fn bind_socket(path: &Path, group: Option<u32>) -> Result<tokio::net::UnixListener> {
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
    // A socket is made 0777 less the umask: 0600 under 177, set for the
    // bind alone (before any other task of the daemon runs).
    // SAFETY: umask only sets the process's file-creation mask.
    let mask = unsafe { libc::umask(if group.is_some() { 0o117 } else { 0o177 }) };
    let bound = tokio::net::UnixListener::bind(path);
    unsafe { libc::umask(mask) };
    let listener = bound.with_context(|| format!("binding control socket {}", path.display()))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(listed: bool, led: bool) -> Standing {
        Standing { listed, led }
    }

    #[test]
    fn a_demoted_manager_goes_only_after_raft_has_dropped_it_for_a_grace() {
        let t0 = Instant::now();
        let mut d = Departure::default();
        // Still a voter with a leader: it stays however long it waits.
        assert!(!d.may_go(standing(true, true), t0));
        assert!(!d.may_go(standing(true, true), t0 + Duration::from_secs(60)));
        // Dropped from the newest voter set: it stays for the grace, then goes.
        let out = t0 + Duration::from_secs(61);
        assert!(!d.may_go(standing(false, true), out));
        assert!(!d.may_go(standing(false, true), out + Duration::from_secs(1)));
        assert!(d.may_go(standing(false, true), out + Departure::GRACE));
    }

    #[test]
    fn a_demoted_manager_that_no_leader_replicates_to_goes_after_a_while() {
        let t0 = Instant::now();
        let mut d = Departure::default();
        assert!(!d.may_go(standing(true, false), t0));
        // A leader heard in between starts the wait again.
        assert!(!d.may_go(standing(true, true), t0 + Duration::from_secs(10)));
        let again = t0 + Duration::from_secs(11);
        assert!(!d.may_go(standing(true, false), again));
        assert!(!d.may_go(standing(true, false), again + Duration::from_secs(14)));
        assert!(d.may_go(standing(true, false), again + Departure::LEADERLESS));
    }
}
