//! The replicated state machine: every cluster object, and the commands that
//! change them. `State::apply` is pure and deterministic, so every manager that
//! applies the same raft log reaches the same state. Invariants that must hold
//! whatever order concurrent writers race in (unique service names, one live
//! task per slot, forward-only task states) are enforced here, not by callers.

use crate::types::{
    Attachment, Availability, ClusterInfo, Meta, Millis, Network, NetworkSpec, Node, NodeRole,
    NodeState, PublishMode, Secret, SecretVersion, Service, Task, TaskState, TaskStatus,
    UpdateStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

mod index;
mod network;
mod requests;
mod rotation;
mod secret;
mod update;

pub use index::TaskIndex;
pub use requests::Requests;

pub use network::{holds_addresses, TaskAllocation};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub cluster: Option<ClusterInfo>,
    // Persistent maps: copying the state (which every apply batch does
    // while readers still hold the previous one) shares all but the changed
    // paths, so it costs O(changes · log n), not O(n).
    pub nodes: im::OrdMap<String, Node>,
    // Values behind `Arc`: a map node holds 64 entries inline, and big
    // values there make every node copy (and the stack frames that hold
    // them) big as well.
    pub services: im::OrdMap<String, Arc<Service>>,
    pub tasks: im::OrdMap<String, Arc<Task>>,
    pub networks: im::OrdMap<String, Network>,
    /// Secrets and configs, by ID (`Secret::kind` tells them apart).
    #[serde(default)]
    pub secrets: im::OrdMap<String, Secret>,
    /// IDs of nodes removed from the swarm. Grow-only: a removed node's
    /// certificate (valid for months) is refused for good, and its ID can
    /// never come back (swarmkit's removed-node list).
    #[serde(default)]
    pub removed: im::OrdSet<String>,
    /// Recent request IDs and their answers (`requests.rs`).
    #[serde(default)]
    pub requests: Requests,
    /// Addresses held on each network (tasks that have not ended, VIPs).
    /// Derived from the objects, so it is rebuilt on load (`reindex`)
    /// rather than stored.
    #[serde(skip)]
    pub ipam: im::OrdMap<String, im::OrdSet<Ipv4Addr>>,
    /// Tasks by service and by node (`index.rs`): derived like `ipam`.
    /// Change `tasks` through `apply`, or call `reindex` after.
    #[serde(skip)]
    pub index: TaskIndex,
}

/// A change to the cluster, written to the raft log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// The first entry of a swarm: the cluster, its first node, and the
    /// ingress network (made here so that no swarm is ever without it).
    InitCluster {
        cluster: ClusterInfo,
        node: Node,
        ingress_id: String,
    },
    PutNode(Node),
    /// `cmd`, applied at most once for the request `id` (every write the
    /// store makes is one).
    Request {
        id: String,
        cmd: Box<Command>,
    },
    /// Replace the join token secret of a role (`join-token --rotate`).
    SetJoinSecret {
        role: NodeRole,
        secret: crate::types::Sealed,
    },
    /// Turn autolock on (with the sealed unlock key), rotate its key, or
    /// turn it off (`None`).
    SetUnlockKey(Option<crate::types::Sealed>),
    /// Begin a move to a new root CA (`swarm ca --rotate`; `rotation.rs`).
    StartCaRotation(crate::types::CaRotation),
    /// `node` showed a certificate issued by the root named `issuer`.
    CaRenewed {
        node: String,
        issuer: String,
    },
    /// What an operator may change on a node (`node update`, promote,
    /// demote); `expected_version` guards against lost updates.
    UpdateNode {
        id: String,
        expected_version: u64,
        availability: Availability,
        labels: BTreeMap<String, String>,
        role: NodeRole,
    },
    RemoveNode {
        id: String,
    },
    /// Liveness as the dispatcher sees it (heartbeats).
    SetNodeState {
        id: String,
        state: NodeState,
        at: Millis,
    },
    CreateService(Service),
    /// Replace a service's spec; `expected_version` guards against lost updates.
    UpdateService {
        service: Service,
        expected_version: u64,
    },
    /// Delete a service and mark all its tasks for removal.
    RemoveService {
        id: String,
    },
    CreateTasks(Vec<Task>),
    /// Move tasks' desired state forward (never back).
    SetDesiredState {
        ids: Vec<String>,
        state: TaskState,
    },
    /// The scheduler's decision: a node, or why none fits.
    Assign(Vec<Assignment>),
    /// Observed state reported by the agent running the task.
    UpdateStatus(Vec<(String, TaskStatus)>),
    DeleteTasks(Vec<String>),
    /// A new overlay network; `apply` settles its subnet, gateway and VNI.
    CreateNetwork {
        id: String,
        spec: NetworkSpec,
        at: Millis,
    },
    RemoveNetwork {
        id: String,
    },
    /// The allocator's VIPs for a service (its whole set).
    AllocateService {
        id: String,
        vips: Vec<Attachment>,
    },
    /// The allocator's addresses for new tasks; they become PENDING.
    AllocateTasks(Vec<TaskAllocation>),
    /// The allocator's addresses for a node on the networks it serves
    /// (its whole set).
    AllocateNode {
        id: String,
        attachments: Vec<Attachment>,
    },
    /// A new secret or config, with its first version (sealed, for a
    /// secret, by the manager that took the request).
    CreateSecret(Secret),
    /// Add the next version; services using it move to that version.
    UpdateSecret {
        id: String,
        version: SecretVersion,
    },
    /// Refused while a service uses it.
    RemoveSecret {
        id: String,
    },
    /// Return a service to its previous spec (`service rollback`, or the
    /// updater on a failed update).
    RollbackService {
        id: String,
        expected_version: u64,
        message: String,
        failed_task: Option<String>,
        at: Millis,
    },
    /// The updater's record of an update's progress.
    SetUpdateStatus {
        id: String,
        expected_version: u64,
        status: UpdateStatus,
    },
    /// A start-first replacement joining the live task it replaces.
    StartFirst {
        replaces: String,
        task: Box<Task>,
    },
    /// Commands from concurrent writers committed as one raft entry (group
    /// commit); applied in order, each with its own response.
    Batch(Vec<Command>),
    /// Commands that stand or fall together (a stack deploy): applied in
    /// order, and if one is refused the state is left as it was.
    Atomic(Vec<Command>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub task_id: String,
    /// `None` leaves the task pending with `message` saying why.
    pub node_id: Option<String>,
    pub message: String,
    pub at: Millis,
}

/// The result of applying one command. Rejections are results, not raft
/// errors: the entry is committed, it just changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Rejection>,
    /// For a `Batch`, the response of each command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<Response>,
}

/// Why `apply` refused a command. Typed, so that callers (the API's status
/// codes, the manager loops) decide by kind and never by parsing text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("this node is already part of a swarm")]
    AlreadyInSwarm,
    #[error("this node is not part of a swarm")]
    NotInSwarm,
    #[error("{kind} {id} not found")]
    NotFound { kind: Kind, id: String },
    #[error("{kind} name \"{name}\" is already in use")]
    NameInUse { kind: Kind, name: String },
    #[error("{kind} ID {id} already exists")]
    IdExists { kind: Kind, id: String },
    #[error("{kind} {name} was changed concurrently (version {current} != {expected}); retry")]
    Conflict {
        kind: Kind,
        name: String,
        current: u64,
        expected: u64,
    },
    #[error("tasks not created: {}", .0.join("; "))]
    TasksNotCreated(Vec<String>),
    /// The command is well-formed but breaks a rule of the state (the
    /// message says which).
    #[error("{0}")]
    Invalid(String),
}

impl Rejection {
    /// A refusal of some parts only, the rest applied: tasks that could not
    /// be created while the others were.
    pub fn is_partial(&self) -> bool {
        matches!(self, Rejection::TasksNotCreated(_))
    }
}

/// The kinds of stored objects, as messages name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Node,
    Service,
    Task,
    Network,
    Secret,
    Config,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Network => "network",
            Kind::Secret => "secret",
            Kind::Config => "config",
        })
    }
}

impl Response {
    fn ok() -> Self {
        Response::default()
    }
    fn err(r: Rejection) -> Self {
        Response {
            error: Some(r),
            ..Default::default()
        }
    }
}

fn not_found(kind: Kind, id: &str) -> Response {
    Response::err(Rejection::NotFound {
        kind,
        id: id.to_string(),
    })
}

impl State {
    /// A service to change in place (copied first if a reader shares it).
    pub fn service_mut(&mut self, id: &str) -> Option<&mut Service> {
        self.services.get_mut(id).map(Arc::make_mut)
    }

    /// Add or replace a task, keeping the index in step.
    fn put_task(&mut self, task: Task) {
        if let Some(old) = self.tasks.get(&task.id) {
            self.index.remove(old);
        }
        self.index.insert(&task);
        self.tasks.insert(task.id.clone(), Arc::new(task));
    }

    /// A task to change in place; its service and node are not to be
    /// changed here (`assign` moves a task, keeping the index in step).
    pub fn task_mut(&mut self, id: &str) -> Option<&mut Task> {
        self.tasks.get_mut(id).map(Arc::make_mut)
    }

    pub fn service_by_name(&self, name: &str) -> Option<&Service> {
        self.services
            .values()
            .map(|s| &**s)
            .find(|s| s.spec.name == name)
    }

    /// Resolve a node the way docker does: ID, hostname, or unique ID prefix.
    pub fn find_node(&self, key: &str) -> Result<&Node, String> {
        if let Some(n) = self.nodes.get(key) {
            return Ok(n);
        }
        let by_name: Vec<&Node> = self.nodes.values().filter(|n| n.hostname == key).collect();
        if by_name.len() == 1 {
            return Ok(by_name[0]);
        }
        let mut matches = self.nodes.values().filter(|n| n.id.starts_with(key));
        match (matches.next(), matches.next(), by_name.len()) {
            (Some(n), None, 0) => Ok(n),
            (None, _, 0) => Err(format!("node {key} not found")),
            _ => Err(format!("node {key} is ambiguous: use its full ID")),
        }
    }

    /// Resolve a service the way docker does: full ID, name, or unique ID prefix.
    pub fn find_service(&self, key: &str) -> Option<&Service> {
        if let Some(s) = self.services.get(key) {
            return Some(s);
        }
        if let Some(s) = self.service_by_name(key) {
            return Some(s);
        }
        let mut matches = self.services.values().filter(|s| s.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(s), None) => Some(s),
            _ => None,
        }
    }

    /// How a node is shown to a user: its hostname, or its ID when the
    /// state no longer has it.
    pub fn node_name(&self, id: &str) -> String {
        self.nodes
            .get(id)
            .map_or_else(|| id.to_string(), |n| n.hostname.clone())
    }

    /// The managers' addresses, which agents dial.
    pub fn manager_addrs(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.role == crate::types::NodeRole::Manager)
            .map(|n| n.addr.clone())
            .collect()
    }

    /// A task by full ID or unique ID prefix.
    pub fn find_task(&self, key: &str) -> Option<&Task> {
        if let Some(t) = self.tasks.get(key) {
            return Some(t);
        }
        let mut matches = self.tasks.values().filter(|t| t.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    }

    pub fn tasks_of<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.index
            .of_service(service_id)
            .filter_map(|id| self.tasks.get(id).map(|t| &**t))
    }

    /// The tasks on node `node_id` (assigned to it, or made for it).
    pub fn tasks_on<'a>(&'a self, node_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.index
            .on_node(node_id)
            .filter_map(|id| self.tasks.get(id).map(|t| &**t))
    }

    /// Apply one command. A refused command changes nothing: each is
    /// applied to a copy that is kept only if it succeeds (persistent maps
    /// make the copy cheap), so no rule has to undo what it began. A batch
    /// answers part by part, and so does a partial refusal
    /// (`Rejection::is_partial`); a request is remembered whatever it
    /// answered.
    pub fn apply(&mut self, cmd: Command) -> Response {
        match cmd {
            Command::Batch(cmds) => Response {
                error: None,
                batch: cmds.into_iter().map(|c| self.apply(c)).collect(),
            },
            Command::Request { id, cmd } => self.apply_once(id, *cmd),
            cmd => {
                let mut next = self.clone();
                let response = next.apply_whole(cmd);
                if response.error.as_ref().is_none_or(Rejection::is_partial) {
                    *self = next;
                }
                response
            }
        }
    }

    /// `apply` for every other command, which may leave a refused command
    /// half done: `apply` throws that copy away.
    fn apply_whole(&mut self, cmd: Command) -> Response {
        match cmd {
            cmd @ (Command::Batch(_) | Command::Request { .. }) => self.apply(cmd),
            Command::InitCluster {
                cluster,
                node,
                ingress_id,
            } => {
                if self.cluster.is_some() {
                    return Response::err(Rejection::AlreadyInSwarm);
                }
                let at = cluster.created_at;
                self.cluster = Some(cluster);
                self.apply(Command::PutNode(node));
                let ingress = NetworkSpec {
                    name: crate::types::INGRESS.into(),
                    driver: "overlay".into(),
                    subnet: None,
                    gateway: None,
                    attachable: false,
                    internal: false,
                    ingress: true,
                    labels: Default::default(),
                };
                self.create_network(ingress_id, ingress, at)
            }
            Command::PutNode(mut node) => {
                if self.removed.contains(&node.id) {
                    return Response::err(Rejection::Invalid(format!(
                        "node {} was removed from the swarm; it must join again as a new node",
                        node.id
                    )));
                }
                match self.nodes.get(&node.id) {
                    Some(old) => {
                        node.meta.version = old.meta.version + 1;
                        node.meta.created_at = old.meta.created_at;
                        // Addresses are the allocator's, not the writer's.
                        node.attachments = old.attachments.clone();
                    }
                    None => node.meta.version = 1,
                }
                self.nodes.insert(node.id.clone(), node);
                Response::ok()
            }
            Command::SetJoinSecret { role, secret } => {
                let Some(c) = self.cluster.as_mut() else {
                    return Response::err(Rejection::NotInSwarm);
                };
                match role {
                    NodeRole::Worker => c.worker_secret = secret,
                    NodeRole::Manager => c.manager_secret = secret,
                }
                Response::ok()
            }
            Command::SetUnlockKey(key) => {
                let Some(c) = self.cluster.as_mut() else {
                    return Response::err(Rejection::NotInSwarm);
                };
                c.unlock_key = key;
                Response::ok()
            }
            Command::StartCaRotation(rotation) => self.start_ca_rotation(rotation),
            Command::CaRenewed { node, issuer } => self.ca_renewed(&node, &issuer),
            Command::UpdateNode {
                id,
                expected_version,
                availability,
                labels,
                role,
            } => {
                let Some(n) = self.nodes.get_mut(&id) else {
                    return not_found(Kind::Node, &id);
                };
                if n.meta.version != expected_version {
                    return Response::err(Rejection::Conflict {
                        kind: Kind::Node,
                        name: n.hostname.clone(),
                        current: n.meta.version,
                        expected: expected_version,
                    });
                }
                bump(&mut n.meta, None);
                n.availability = availability;
                n.labels = labels;
                n.role = role;
                Response::ok()
            }
            Command::RemoveNode { id } => {
                let Some(node) = self.nodes.remove(&id) else {
                    return not_found(Kind::Node, &id);
                };
                self.release(&node.attachments);
                self.removed.insert(id);
                // The last node a rotation waited for may be this one.
                self.settle_ca_rotation();
                Response::ok()
            }
            Command::SetNodeState { id, state, at } => {
                let Some(n) = self.nodes.get_mut(&id) else {
                    return not_found(Kind::Node, &id);
                };
                n.state = state;
                bump(&mut n.meta, Some(at));
                Response::ok()
            }
            Command::CreateService(mut svc) => {
                if self.service_by_name(&svc.spec.name).is_some() {
                    return Response::err(Rejection::NameInUse {
                        kind: Kind::Service,
                        name: svc.spec.name,
                    });
                }
                if self.services.contains_key(&svc.id) {
                    return Response::err(Rejection::IdExists {
                        kind: Kind::Service,
                        id: svc.id,
                    });
                }
                if let Err(r) = self.check_service(&svc) {
                    return Response::err(r);
                }
                svc.meta.version = 1;
                self.services.insert(svc.id.clone(), Arc::new(svc));
                Response::ok()
            }
            Command::UpdateService {
                mut service,
                expected_version,
            } => {
                let Some(cur) = self.services.get(&service.id) else {
                    return not_found(Kind::Service, &service.id);
                };
                if cur.meta.version != expected_version {
                    return Response::err(Rejection::Conflict {
                        kind: Kind::Service,
                        name: service.spec.name,
                        current: cur.meta.version,
                        expected: expected_version,
                    });
                }
                if let Err(r) = self.check_service(&service) {
                    return Response::err(r);
                }
                // The endpoint is the allocator's and the update record the
                // updater's: a spec update keeps them, and starts an update
                // when it replaces tasks.
                service.meta.version = cur.meta.version + 1;
                service.meta.created_at = cur.meta.created_at;
                service.endpoint = cur.endpoint.clone();
                service.previous_spec = cur.previous_spec.clone();
                service.update_status = cur.update_status.clone();
                let (old, at) = (cur.spec.clone(), service.meta.updated_at);
                update::start_update(&mut service, &old, at);
                self.services.insert(service.id.clone(), Arc::new(service));
                Response::ok()
            }
            Command::RemoveService { id } => {
                let Some(svc) = self.services.remove(&id) else {
                    return not_found(Kind::Service, &id);
                };
                self.release(&svc.endpoint.vips);
                let ids: Vec<String> = self.tasks_of(&id).map(|t| t.id.clone()).collect();
                for tid in ids {
                    if let Some(t) = self.task_mut(&tid) {
                        raise_desired(t, TaskState::Remove);
                    }
                }
                Response::ok()
            }
            Command::CreateTasks(tasks) => self.create_tasks(tasks),
            Command::SetDesiredState { ids, state } => {
                for id in ids {
                    if let Some(t) = self.task_mut(&id) {
                        raise_desired(t, state);
                    }
                }
                Response::ok()
            }
            Command::Assign(assignments) => {
                for a in assignments {
                    self.assign(a);
                }
                Response::ok()
            }
            Command::UpdateStatus(updates) => {
                for (id, status) in updates {
                    if let Some(t) = self.task_mut(&id) {
                        // A late report must not resurrect a finished task.
                        if status.state >= t.status.state && !t.status.state.is_terminal() {
                            bump(&mut t.meta, Some(status.timestamp));
                            t.status = status;
                            if !holds_addresses(t) {
                                let addrs = t.networks.clone().unwrap_or_default();
                                self.release(&addrs);
                            }
                        }
                    }
                }
                Response::ok()
            }
            // The first refusal is the answer, and `apply` drops the rest.
            Command::Atomic(cmds) => {
                for c in cmds {
                    let r = self.apply(c);
                    if r.error.is_some() {
                        return r;
                    }
                }
                Response::ok()
            }
            Command::DeleteTasks(ids) => {
                for id in ids {
                    if let Some(t) = self.tasks.remove(&id) {
                        self.index.remove(&t);
                        if holds_addresses(&t) {
                            self.release(t.networks.as_deref().unwrap_or_default());
                        }
                    }
                }
                Response::ok()
            }
            Command::CreateNetwork { id, spec, at } => self.create_network(id, spec, at),
            Command::RemoveNetwork { id } => self.remove_network(&id),
            Command::AllocateService { id, vips } => self.allocate_service(&id, vips),
            Command::AllocateTasks(allocations) => self.allocate_tasks(allocations),
            Command::AllocateNode { id, attachments } => self.allocate_node(&id, attachments),
            Command::CreateSecret(secret) => self.create_secret(secret),
            Command::UpdateSecret { id, version } => self.update_secret(&id, version),
            Command::RemoveSecret { id } => self.remove_secret(&id),
            Command::RollbackService {
                id,
                expected_version,
                message,
                failed_task,
                at,
            } => self.rollback_service(&id, expected_version, message, failed_task, at),
            Command::SetUpdateStatus {
                id,
                expected_version,
                status,
            } => self.set_update_status(&id, expected_version, status),
            Command::StartFirst { replaces, task } => self.start_first(&replaces, *task),
        }
    }

    /// What a stored service must satisfy whoever wrote it: its networks,
    /// secrets and configs exist, and no other service publishes its
    /// ingress ports.
    fn check_service(&self, svc: &Service) -> Result<(), Rejection> {
        crate::limits::check(&svc.spec, self.nodes.values()).map_err(Rejection::Invalid)?;
        crate::ports::validate(&svc.spec.ports).map_err(Rejection::Invalid)?;
        self.check_secret_refs(svc)?;
        for a in &svc.spec.networks {
            if !self.networks.contains_key(&a.target) {
                return Err(Rejection::NotFound {
                    kind: Kind::Network,
                    id: a.target.clone(),
                });
            }
        }
        for p in &svc.spec.ports {
            let clash = self.services.values().filter(|o| o.id != svc.id).find(|o| {
                o.spec.ports.iter().any(|q| {
                    q.protocol == p.protocol
                        && q.published == p.published
                        && (p.mode == PublishMode::Ingress || q.mode == PublishMode::Ingress)
                })
            });
            if let Some(o) = clash {
                return Err(Rejection::Invalid(format!(
                    "port {}/{} is already published by service {} (ingress-mode ports are published on every node)",
                    p.published,
                    p.protocol.name(),
                    o.spec.name
                )));
            }
        }
        Ok(())
    }

    fn create_tasks(&mut self, tasks: Vec<Task>) -> Response {
        let mut skipped = Vec::new();
        // One live task per slot (replicated) or per node (global): the
        // slots and nodes each service's live tasks hold, found once per
        // command.
        type Held = (HashSet<u64>, HashSet<Option<String>>);
        let mut held: HashMap<String, Held> = HashMap::new();
        for task in tasks {
            if !self.services.contains_key(&task.service_id) {
                skipped.push(format!("{}: service gone", task.name()));
                continue;
            }
            let (slots, nodes) = held.entry(task.service_id.clone()).or_insert_with(|| {
                let live: Vec<&Task> = self
                    .tasks_of(&task.service_id)
                    .filter(|t| t.is_live())
                    .collect();
                (
                    live.iter().map(|t| t.slot).collect(),
                    live.iter().map(|t| t.node_id.clone()).collect(),
                )
            });
            let clash = if task.slot > 0 {
                slots.contains(&task.slot)
            } else {
                nodes.contains(&task.node_id)
            };
            if clash {
                skipped.push(format!("{}: slot already has a live task", task.name()));
                continue;
            }
            if task.is_live() {
                slots.insert(task.slot);
                nodes.insert(task.node_id.clone());
            }
            let mut task = task;
            task.meta.version = 1;
            self.put_task(task);
        }
        if skipped.is_empty() {
            Response::ok()
        } else {
            Response::err(Rejection::TasksNotCreated(skipped))
        }
    }

    fn assign(&mut self, a: Assignment) {
        let Some(t) = self.task_mut(&a.task_id) else {
            return;
        };
        // Only unassigned tasks may be placed; a stale decision is ignored.
        if t.status.state > TaskState::Pending {
            return;
        }
        let from = t.node_id.clone();
        match a.node_id {
            Some(node) => {
                t.node_id = Some(node);
                t.status = TaskStatus::new(TaskState::Assigned, a.message);
            }
            // Why no node fits is the task's error, as in Swarm.
            None => {
                t.status =
                    TaskStatus::new(TaskState::Pending, a.message.clone()).with_err(a.message);
            }
        }
        t.status.timestamp = a.at;
        bump(&mut t.meta, Some(a.at));
        let to = t.node_id.clone();
        self.index.moved(&a.task_id, from.as_deref(), to.as_deref());
    }
}

/// Record a change to an object: a new version, and the writer's time when
/// the command carries one (apply itself never reads the clock).
pub(super) fn bump(meta: &mut Meta, at: Option<Millis>) {
    meta.version += 1;
    if let Some(at) = at {
        meta.updated_at = meta.updated_at.max(at);
    }
}

/// Desired states only move forward.
fn raise_desired(t: &mut Task, state: TaskState) {
    if state > t.desired_state {
        t.desired_state = state;
        bump(&mut t.meta, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Mode;

    fn svc(id: &str, name: &str) -> Service {
        let mut s = crate::manager::testutil::service(id, Mode::Replicated, 1);
        s.spec.name = name.into();
        s
    }

    fn task(id: &str, svc: &Service, slot: u64) -> Task {
        Task {
            id: id.into(),
            service_id: svc.id.clone(),
            service_name: svc.spec.name.clone(),
            slot,
            node_id: None,
            spec: svc.spec.clone(),
            spec_version: svc.meta.version,
            desired_state: TaskState::Running,
            status: TaskStatus::new(TaskState::New, "created"),
            meta: Meta::default(),
            restart_at: None,
            attempt: 0,
            networks: None,
        }
    }

    #[test]
    fn an_atomic_command_changes_nothing_when_one_part_is_refused() {
        let mut st = State::default();
        st.apply(Command::CreateService(svc("a", "web")));
        let r = st.apply(Command::Atomic(vec![
            Command::CreateService(svc("b", "api")),
            Command::CreateService(svc("c", "web")),
        ]));
        assert!(
            matches!(r.error, Some(Rejection::NameInUse { .. })),
            "{r:?}"
        );
        assert!(!st.services.contains_key("b"), "the first part was undone");
        let r = st.apply(Command::Atomic(vec![
            Command::CreateService(svc("b", "api")),
            Command::CreateService(svc("c", "db")),
        ]));
        assert!(r.error.is_none());
        assert_eq!(st.services.len(), 3);
    }

    #[test]
    fn limits_hold_for_every_writer() {
        let mut st = State::default();
        st.apply(Command::CreateService(svc("a", "web")));
        let mut next = (*st.services["a"]).clone();
        next.spec.replicas = 1_000_000_000_000;
        let r = st.apply(Command::UpdateService {
            service: next,
            expected_version: 1,
        });
        assert!(
            matches!(&r.error, Some(Rejection::Invalid(m)) if m.contains("more than the limit of 100000")),
            "{r:?}"
        );
        assert_eq!(st.services["a"].spec.replicas, 1, "nothing changed");
    }

    #[test]
    fn duplicate_service_name_is_rejected() {
        let mut st = State::default();
        assert!(st
            .apply(Command::CreateService(svc("a", "web")))
            .error
            .is_none());
        let r = st.apply(Command::CreateService(svc("b", "web")));
        assert!(r.error.unwrap().to_string().contains("already in use"));
        assert_eq!(st.services.len(), 1);
    }

    #[test]
    fn a_slot_never_gets_two_live_tasks() {
        let mut st = State::default();
        let s = svc("a", "web");
        st.apply(Command::CreateService(s.clone()));
        st.apply(Command::CreateTasks(vec![task("t1", &s, 1)]));
        let r = st.apply(Command::CreateTasks(vec![
            task("t2", &s, 1),
            task("t3", &s, 2),
        ]));
        assert!(r.error.is_some());
        assert!(st.tasks.contains_key("t3") && !st.tasks.contains_key("t2"));
    }

    #[test]
    fn status_only_moves_forward_and_terminal_is_final() {
        let mut st = State::default();
        let s = svc("a", "web");
        st.apply(Command::CreateService(s.clone()));
        st.apply(Command::CreateTasks(vec![task("t1", &s, 1)]));
        let up = |state| Command::UpdateStatus(vec![("t1".into(), TaskStatus::new(state, ""))]);
        st.apply(up(TaskState::Running));
        st.apply(up(TaskState::Starting));
        assert_eq!(st.tasks["t1"].status.state, TaskState::Running);
        st.apply(up(TaskState::Failed));
        st.apply(up(TaskState::Shutdown));
        assert_eq!(st.tasks["t1"].status.state, TaskState::Failed);
    }

    #[test]
    fn removing_a_service_marks_its_tasks_for_removal() {
        let mut st = State::default();
        let s = svc("a", "web");
        st.apply(Command::CreateService(s.clone()));
        st.apply(Command::CreateTasks(vec![task("t1", &s, 1)]));
        st.apply(Command::RemoveService { id: "a".into() });
        assert_eq!(st.tasks["t1"].desired_state, TaskState::Remove);
        assert!(st.services.is_empty());
    }

    #[test]
    fn apply_sets_versions_and_refuses_updates_from_a_stale_read() {
        let mut st = State::default();
        let mut s = svc("a", "web");
        s.meta.version = 77; // whatever a writer says, apply numbers it
        st.apply(Command::CreateService(s));
        assert_eq!(st.services["a"].meta.version, 1);
        let read = (*st.services["a"]).clone();
        let mut next = read.clone();
        next.spec.replicas = 3;
        let update = |service: Service| Command::UpdateService {
            service,
            expected_version: read.meta.version,
        };
        assert!(st.apply(update(next.clone())).error.is_none());
        assert_eq!(st.services["a"].meta.version, 2);
        // A second writer that read version 1 loses, and changes nothing.
        next.spec.replicas = 9;
        let r = st.apply(update(next));
        assert!(r
            .error
            .unwrap()
            .to_string()
            .contains("changed concurrently"));
        assert_eq!(st.services["a"].spec.replicas, 3);

        st.apply(Command::CreateTasks(vec![task(
            "t1",
            &(*st.services["a"]).clone(),
            1,
        )]));
        st.apply(Command::SetDesiredState {
            ids: vec!["t1".into()],
            state: TaskState::Shutdown,
        });
        assert_eq!(st.tasks["t1"].meta.version, 2);
    }

    #[test]
    fn node_updates_carry_the_version_they_read() {
        let mut st = State::default();
        let node = crate::manager::testutil::node("n1");
        st.apply(Command::PutNode(node.clone()));
        let v = st.nodes["n1"].meta.version;
        let update = |expected_version| Command::UpdateNode {
            id: "n1".into(),
            expected_version,
            availability: Availability::Drain,
            labels: Default::default(),
            role: NodeRole::Worker,
        };
        st.apply(Command::SetNodeState {
            id: "n1".into(),
            state: NodeState::Down,
            at: 5,
        });
        let r = st.apply(update(v));
        assert!(r
            .error
            .unwrap()
            .to_string()
            .contains("changed concurrently"));
        assert_eq!(st.nodes["n1"].availability, Availability::Active);
        assert!(st.apply(update(v + 1)).error.is_none());
        assert_eq!(st.nodes["n1"].role, NodeRole::Worker);
        assert_eq!(st.nodes["n1"].meta.updated_at, 5);
    }

    #[test]
    fn a_refused_init_leaves_no_half_made_swarm() {
        let mut init = crate::manager::testutil::init_cluster();
        if let Command::InitCluster { cluster, .. } = &mut init {
            // No /48 subnet for the ingress network fits a /8 pool.
            cluster.pool_mask_len = 48;
        }
        let mut st = State::default();
        let r = st.apply(init);
        assert!(
            matches!(&r.error, Some(Rejection::Invalid(m)) if m.contains("no free subnet")),
            "{r:?}"
        );
        assert_eq!(st, State::default(), "the refused init left state behind");
        let r = st.apply(crate::manager::testutil::init_cluster());
        assert_eq!(r.error, None, "a good init after a refused one");
    }

    #[test]
    fn stale_assignment_is_ignored() {
        let mut st = State::default();
        let s = svc("a", "web");
        st.apply(Command::CreateService(s.clone()));
        st.apply(Command::CreateTasks(vec![task("t1", &s, 1)]));
        let assign = |node: &str| {
            Command::Assign(vec![Assignment {
                task_id: "t1".into(),
                node_id: Some(node.into()),
                message: "scheduled".into(),
                at: 1,
            }])
        };
        st.apply(assign("n1"));
        st.apply(assign("n2"));
        assert_eq!(st.tasks["t1"].node_id.as_deref(), Some("n1"));
    }
}
