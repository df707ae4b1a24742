//! Cluster objects. Desired state (`*Spec`) and observed state (`*Status`) are
//! separate types, as in SwarmKit: users write specs, agents write statuses.
//!
//! A leaf: nothing here imports from the rest of the crate or from the data
//! plane, so every layer can use these types without pulling in another.
//! Parsers and policies live beside their users (`placement`, `ports`, `pki`).

mod container;
mod network;
mod patch;
mod secret;
mod update;
mod view;

pub use container::*;
pub use network::*;
pub use patch::*;
pub use secret::*;
pub use update::*;
pub use view::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Milliseconds since the Unix epoch. Stamped by the writer of a command, so
/// replaying the raft log gives the same state on every manager.
pub type Millis = u64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch: event times, and clocks compared
/// across nodes.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A random object ID in Docker's style: 25 lowercase alphanumerics.
pub fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..25)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Docker's rule for object names (services, networks, aliases), which
/// also keeps them usable as DNS labels.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.is_empty() || name.len() > 63 || !ok_start || !ok_rest {
        return Err(format!(
            "invalid {kind} name {name:?}: use 1-63 characters [a-zA-Z0-9_.-], starting with a letter or digit"
        ));
    }
    Ok(())
}

/// What every stored object carries. `version` is set by `State::apply` on
/// each change (never by writers), and an update names the version it read,
/// so two writers racing on one object cannot silently undo each other
/// (SwarmKit's `Meta.Version`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Meta {
    /// The meta of an object created at `now`; `apply` gives it version 1.
    pub fn new(now: Millis) -> Meta {
        Meta {
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Replicated,
    Global,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    Any,
    OnFailure,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// Wait between a task ending and its replacement starting.
    pub delay_ms: u64,
    /// 0 means unlimited, as in Docker.
    pub max_attempts: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        // Docker's defaults: restart on any exit, after 5 seconds, forever.
        RestartPolicy {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    /// Arguments after the image: replace the image's CMD when non-empty.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub mode: Mode,
    /// Desired replica count; ignored for global services.
    #[serde(default)]
    pub replicas: u64,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    /// Networks besides ingress (which ingress-mode ports imply).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachmentSpec>,
    #[serde(default)]
    pub endpoint_mode: EndpointMode,
    /// The container's healthcheck; `None` keeps the image's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Service labels (`--label`, compose's `deploy.labels`); a stack's
    /// services carry its namespace here (`STACK_NAMESPACE`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Secrets mounted into each task (`--secret`), by name until the
    /// daemon resolves them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<SecretRef>,
    /// How a change rolls out (`--update-*`), and how it is undone
    /// (`--rollback-*`).
    #[serde(default)]
    pub update: UpdateConfig,
    #[serde(default)]
    pub rollback: UpdateConfig,
    /// Bumped by `service update --force`: tasks are replaced even when
    /// nothing else changed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub force_update: u64,
    /// Services (by name) that must have a healthy task before this one's
    /// tasks are placed: compose's `depends_on` with `service_healthy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The rest of the container's making: entrypoint, user, mounts, ...
    #[serde(default, skip_serializing_if = "ContainerOptions::is_default")]
    pub container: ContainerOptions,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ServiceSpec {
    /// A spec with docker's defaults for everything but these.
    pub fn new(name: &str, image: &str, mode: Mode, replicas: u64) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            image: image.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            mode,
            replicas,
            restart: RestartPolicy::default(),
            placement: Placement::default(),
            resources: Resources::default(),
            ports: Vec::new(),
            networks: Vec::new(),
            endpoint_mode: EndpointMode::default(),
            healthcheck: None,
            labels: BTreeMap::new(),
            secrets: Vec::new(),
            configs: Vec::new(),
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
            force_update: 0,
            depends_on: Vec::new(),
            container: ContainerOptions::default(),
        }
    }

    /// Whether tasks made from `self` and from `other` are the same, so
    /// that changing one into the other replaces no task: the replica
    /// count, service labels, the update and rollback settings and the
    /// start order shape the service, not its tasks.
    pub fn same_tasks(&self, other: &ServiceSpec) -> bool {
        let shape = |s: &ServiceSpec| ServiceSpec {
            replicas: 0,
            labels: BTreeMap::new(),
            depends_on: Vec::new(),
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
            ..s.clone()
        };
        shape(self) == shape(other)
    }

    /// Its secret and config references, each with its kind.
    pub fn data_refs(&self) -> impl Iterator<Item = (SecretKind, &SecretRef)> {
        let secrets = self.secrets.iter().map(|r| (SecretKind::Secret, r));
        secrets.chain(self.configs.iter().map(|r| (SecretKind::Config, r)))
    }
}

/// A healthcheck, as Docker's container config takes it. A task whose
/// container has one is STARTING until the check passes, and FAILED when
/// it turns unhealthy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["CMD", args...]`, `["CMD-SHELL", command]`, or `["NONE"]` to turn
    /// off the image's check. Empty keeps the image's command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// 0 keeps the image's (or Docker's) value, for each of these.
    #[serde(default)]
    pub interval_ms: u64,
    #[serde(default)]
    pub timeout_ms: u64,
    #[serde(default)]
    pub start_period_ms: u64,
    #[serde(default)]
    pub retries: u64,
}

impl HealthConfig {
    /// `--no-healthcheck` / compose's `disable: true`.
    pub fn disabled() -> HealthConfig {
        HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        }
    }
}

/// `KEY=VALUE` (or a bare `KEY`, with an empty value) as a label.
pub fn parse_label(kv: &str) -> Result<(String, String), String> {
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    if k.is_empty() {
        return Err(format!("invalid label {kv:?}: expected KEY=VALUE"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The label that makes an object part of a stack, as docker names it.
pub const STACK_NAMESPACE: &str = "com.docker.stack.namespace";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub spec: ServiceSpec,
    /// The VIPs the allocator gave it.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// The spec before the latest change that replaces tasks: what a
    /// rollback returns to. Kept by `State::apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<Box<ServiceSpec>>,
    /// Where that change's rolling update stands. Kept by `State::apply`
    /// and the updater.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    /// `version` counts every change; tasks record the one they were made from.
    #[serde(flatten)]
    pub meta: Meta,
}

impl Service {
    /// A service as a writer proposes it; `apply` numbers its version.
    pub fn new(id: String, spec: ServiceSpec, now: Millis) -> Service {
        Service {
            id,
            spec,
            endpoint: Endpoint::default(),
            previous_spec: None,
            update_status: None,
            meta: Meta::new(now),
        }
    }
}

/// Where a service's tasks may run. The expressions are checked and read by
/// `placement.rs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// `node.<attr>==value` or `!=`, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// `spread=node.labels.<name>`, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<String>,
    /// 0: no limit.
    #[serde(default)]
    pub max_replicas_per_node: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub reserve_nano_cpus: i64,
    #[serde(default)]
    pub reserve_memory_bytes: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!("protocol {other:?} is not tcp or udp")),
        }
    }
}

impl std::str::FromStr for PublishMode {
    type Err = String;
    fn from_str(s: &str) -> Result<PublishMode, String> {
        match s {
            "ingress" => Ok(PublishMode::Ingress),
            "host" => Ok(PublishMode::Host),
            other => Err(format!("mode {other:?} is not host or ingress")),
        }
    }
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// Through the routing mesh, on every node.
    Ingress,
    /// On the nodes that run a task, straight to that task.
    Host,
}

impl PublishMode {
    pub fn name(self) -> &'static str {
        match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        }
    }
}

/// One published port (`--publish`); parsed and checked by `ports.rs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub protocol: Proto,
    /// The port clients connect to.
    pub published: u16,
    /// The port the container listens on.
    pub target: u16,
    pub mode: PublishMode,
    /// Publish a port the node's own services use (22), deliberately.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

impl PortConfig {
    /// Docker's rendering: `*:8080->80/tcp`.
    pub fn display(&self) -> String {
        format!(
            "*:{}->{}/{}",
            self.published,
            self.target,
            self.protocol.name()
        )
    }
}

/// Swarm's task state machine. The order matters: a task's observed state only
/// moves forward, and `desired_state` only moves forward too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    /// The task has stopped for good: its container no longer runs.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Docker capitalises states in tables: "Running", "Rejected".
        let s = self.as_str();
        let mut c = s.chars();
        match c.next() {
            Some(first) => write!(f, "{}{}", first.to_ascii_uppercase(), c.as_str()),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    pub timestamp: Millis,
    /// Short human description, e.g. "started" or "no suitable node (...)".
    #[serde(default)]
    pub message: String,
    /// The error that ended or blocked the task, as Docker reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The task's address on its node's gateway bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

impl TaskStatus {
    pub fn new(state: TaskState, message: impl Into<String>) -> Self {
        TaskStatus {
            state,
            timestamp: now_ms(),
            message: message.into(),
            err: None,
            container_id: None,
            exit_code: None,
            addr: None,
        }
    }

    pub fn with_err(mut self, err: impl Into<String>) -> Self {
        self.err = Some(err.into());
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub service_id: String,
    /// Copied from the service so a task's name outlives its service.
    pub service_name: String,
    /// 1..N for replicated services; 0 for global ones (keyed by node instead).
    pub slot: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The spec the task runs, frozen when the task was created.
    pub spec: ServiceSpec,
    pub spec_version: u64,
    pub desired_state: TaskState,
    pub status: TaskStatus,
    #[serde(flatten)]
    pub meta: Meta,
    /// For a restart: the time the restart delay ends and the task may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Millis>,
    /// How many restarts led to this task within its slot (0 for the first).
    #[serde(default)]
    pub attempt: u64,
    /// Its address on each of its networks, from the allocator; `None`
    /// until allocated (the scheduler places only allocated tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Attachment>>,
}

impl Task {
    /// Docker's task name: `service.slot` or, for global tasks, `service.node`.
    pub fn name(&self) -> String {
        if self.slot > 0 {
            format!("{}.{}", self.service_name, self.slot)
        } else {
            let node = self.node_id.as_deref().unwrap_or("unassigned");
            format!("{}.{}", self.service_name, node)
        }
    }

    /// Whether the task holds its slot: it is meant to run and has not ended.
    pub fn is_live(&self) -> bool {
        self.desired_state <= TaskState::Running && !self.status.state.is_terminal()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    /// The one spelling of each role, on the wire and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NodeRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "manager" => Ok(NodeRole::Manager),
            "worker" => Ok(NodeRole::Worker),
            other => Err(format!("invalid role {other:?}: use manager or worker")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

impl std::str::FromStr for Availability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(Availability::Active),
            "pause" => Ok(Availability::Pause),
            "drain" => Ok(Availability::Drain),
            other => Err(format!(
                "invalid availability {other:?}: use active, pause or drain"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Unknown,
    Ready,
    Down,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub raft_id: u64,
    pub hostname: String,
    pub role: NodeRole,
    pub availability: Availability,
    pub state: NodeState,
    pub addr: String,
    #[serde(default)]
    pub engine_version: String,
    #[serde(default)]
    pub nano_cpus: i64,
    #[serde(default)]
    pub memory_bytes: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The node's own task gateway subnet (`--gateway-subnet`): overlay
    /// subnets must not overlap it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_subnet: Option<ipnet::Ipv4Net>,
    /// The node's own address on each network it serves (the allocator's):
    /// what connections it forwards come from in iptables mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Node {
    /// Its underlay address: the host part of its advertise address.
    pub fn underlay(&self) -> Option<std::net::Ipv4Addr> {
        ipv4_host(&self.addr)
    }
}

/// The IPv4 host of `ADDR` or `ADDR:PORT`.
pub fn ipv4_host(addr: &str) -> Option<std::net::Ipv4Addr> {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).parse().ok()
}

/// The cluster's root CA, key included, so any manager can sign a joining
/// node's certificate. `pki.rs` creates it and signs with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCa {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Bytes sealed by the swarm's data key (`keyring.rs`): the raft log, the
/// store and its snapshots hold them only so.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed(#[serde(with = "base64_bytes")] pub Vec<u8>);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub id: String,
    pub created_at: Millis,
    /// The root CA's certificate.
    pub ca_cert_pem: String,
    /// The CA's key, sealed: any manager opens it to sign a joiner's CSR.
    pub ca_key: Sealed,
    /// The join tokens' secrets, sealed.
    pub worker_secret: Sealed,
    pub manager_secret: Sealed,
    /// With autolock on, the key that unlocks a restarted manager, sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock_key: Option<Sealed>,
    /// Lifetime of node certificates (`--cert-expiry`).
    pub cert_expiry_ms: Millis,
    /// Agents' heartbeat period (`--dispatcher-heartbeat`).
    pub heartbeat_ms: Millis,
    /// Where networks get subnets (`--default-addr-pool`).
    #[serde(default = "default_addr_pool")]
    pub addr_pool: Vec<ipnet::Ipv4Net>,
    /// Prefix length of those subnets (`--default-addr-pool-mask-length`).
    #[serde(default = "default_pool_mask_len")]
    pub pool_mask_len: u8,
    /// A CA rotation under way (`swarm ca --rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<CaRotation>,
}

/// A move to a new root CA. The new root issues every certificate from the
/// start; the old one stays trusted until every node has shown a
/// certificate from the new one, and then the new root replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRotation {
    /// The new root's common name, which its certificates carry as issuer.
    pub name: String,
    pub ca_cert_pem: String,
    /// Sealed as the CA key is: it becomes the CA key.
    pub ca_key: Sealed,
    /// The new root signed by the old one, for the nodes that trust only
    /// the old root until they hear of the new one.
    pub cross_signed_pem: String,
    /// Nodes that have shown a certificate from the new root.
    #[serde(default)]
    pub renewed: std::collections::BTreeSet<String>,
}

fn default_pool_mask_len() -> u8 {
    DEFAULT_POOL_MASK_LEN
}

impl ClusterInfo {
    /// The root that issues certificates now, and its sealed key: the new
    /// one during a rotation.
    pub fn issuing_ca(&self) -> (&str, &Sealed) {
        match &self.rotation {
            Some(r) => (&r.ca_cert_pem, &r.ca_key),
            None => (&self.ca_cert_pem, &self.ca_key),
        }
    }

    /// The CA certificates every node trusts and shows: the issuing root
    /// first, then, during a rotation, the old root and the new root
    /// cross-signed by it.
    pub fn trust_pem(&self) -> String {
        let mut pems = vec![self.issuing_ca().0];
        if let Some(r) = &self.rotation {
            pems.extend([self.ca_cert_pem.as_str(), r.cross_signed_pem.as_str()]);
        }
        pems.iter().map(|p| p.trim().to_string() + "\n").collect()
    }

    /// The sealed join secret of `role`'s token.
    pub fn join_secret(&self, role: NodeRole) -> &Sealed {
        match role {
            NodeRole::Worker => &self.worker_secret,
            NodeRole::Manager => &self.manager_secret,
        }
    }
}

/// Bytes as base64 in JSON, rather than an array of numbers.
pub(crate) mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn names_follow_docker_rules() {
        assert!(validate_name("service", "demo_web").is_ok());
        assert!(validate_name("service", "web.1-a").is_ok());
        assert!(validate_name("service", "").is_err());
        assert!(validate_name("service", "-web").is_err());
        assert!(validate_name("network", "we b")
            .unwrap_err()
            .starts_with("invalid network name"));
        assert!(validate_name("service", &"a".repeat(64)).is_err());
    }
}
