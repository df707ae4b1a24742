//! The raft state machine: applies committed commands to `State`, persists each
//! changed object to redb in the same transaction as the applied log id, and
//! publishes the new state to watchers (the manager loops and the agent).

use super::tables::{OBJECTS, SM_META};
use super::{NodeId, TypeConfig};
use crate::state::{Command, Response, State};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use redb::{Database, ReadableTable};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;
use tokio::sync::watch;

type StResult<T> = Result<T, StorageError<NodeId>>;
type Membership = StoredMembership<NodeId, BasicNode>;

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}
fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

/// Everything a snapshot carries.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    state: State,
}

pub struct StateMachine {
    db: Arc<Database>,
    state: Arc<State>,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    current: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    publish: watch::Sender<Arc<State>>,
}

/// A storage key for one object: "cluster", "node/<id>", "service/<id>", "task/<id>".
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Cluster,
    Node(String),
    Service(String),
    Task(String),
    Network(String),
    Secret(String),
    /// A removed node's ID (the value is empty: the key is the record).
    Removed(String),
    /// A remembered request ID and its answer.
    Request(String),
}

impl Key {
    fn path(&self) -> String {
        match self {
            Key::Cluster => "cluster".into(),
            Key::Node(id) => format!("node/{id}"),
            Key::Service(id) => format!("service/{id}"),
            Key::Task(id) => format!("task/{id}"),
            Key::Network(id) => format!("network/{id}"),
            Key::Secret(id) => format!("secret/{id}"),
            Key::Removed(id) => format!("removed/{id}"),
            Key::Request(id) => format!("request/{id}"),
        }
    }

    /// The object's current JSON, or None if it no longer exists.
    fn encode(&self, st: &State) -> Option<Vec<u8>> {
        let v = match self {
            Key::Cluster => st.cluster.as_ref().map(serde_json::to_vec),
            Key::Node(id) => st.nodes.get(id).map(serde_json::to_vec),
            Key::Service(id) => st.services.get(id).map(serde_json::to_vec),
            Key::Task(id) => st.tasks.get(id).map(serde_json::to_vec),
            Key::Network(id) => st.networks.get(id).map(serde_json::to_vec),
            Key::Secret(id) => st.secrets.get(id).map(serde_json::to_vec),
            Key::Removed(id) => st.removed.contains(id).then(|| Ok(Vec::new())),
            Key::Request(id) => st.requests.seen.get(id).map(serde_json::to_vec),
        };
        v.map(|r| r.expect("cluster objects always serialize"))
    }
}

/// Apply `cmd`, noting the objects it may change. A batch's commands are
/// looked at one by one, each against the state the previous ones left.
fn apply_tracked(state: &mut State, cmd: Command, keys: &mut Vec<Key>) -> Response {
    match cmd {
        Command::Batch(cmds) => Response {
            error: None,
            batch: cmds
                .into_iter()
                .map(|c| apply_tracked(state, c, keys))
                .collect(),
        },
        cmd => {
            keys.extend(touched(state, &cmd));
            state.apply(cmd)
        }
    }
}

/// The objects a command may change, computed before it is applied (a removed
/// service's tasks must be found while the service still exists).
fn touched(st: &State, cmd: &Command) -> Vec<Key> {
    let tasks =
        |ids: &mut dyn Iterator<Item = &String>| ids.map(|i| Key::Task(i.clone())).collect();
    match cmd {
        Command::InitCluster {
            node, ingress_id, ..
        } => vec![
            Key::Cluster,
            Key::Node(node.id.clone()),
            Key::Network(ingress_id.clone()),
        ],
        Command::PutNode(n) => vec![Key::Node(n.id.clone())],
        Command::SetJoinSecret { .. }
        | Command::SetUnlockKey(_)
        | Command::StartCaRotation(_)
        | Command::CaRenewed { .. } => vec![Key::Cluster],
        Command::SetNodeState { id, .. } | Command::UpdateNode { id, .. } => {
            vec![Key::Node(id.clone())]
        }
        // A removal may end a CA rotation that waited for the node.
        Command::RemoveNode { id } => vec![
            Key::Node(id.clone()),
            Key::Removed(id.clone()),
            Key::Cluster,
        ],
        Command::CreateService(s) => vec![Key::Service(s.id.clone())],
        Command::UpdateService { service, .. } => vec![Key::Service(service.id.clone())],
        Command::RemoveService { id } => std::iter::once(Key::Service(id.clone()))
            .chain(st.tasks_of(id).map(|t| Key::Task(t.id.clone())))
            .collect(),
        Command::CreateTasks(ts) => tasks(&mut ts.iter().map(|t| &t.id)),
        Command::SetDesiredState { ids, .. } | Command::DeleteTasks(ids) => tasks(&mut ids.iter()),
        Command::Assign(a) => tasks(&mut a.iter().map(|a| &a.task_id)),
        Command::UpdateStatus(u) => tasks(&mut u.iter().map(|(id, _)| id)),
        Command::CreateNetwork { id, .. } => vec![Key::Network(id.clone())],
        // Removing a network frees the nodes' addresses on it.
        Command::RemoveNetwork { id } => std::iter::once(Key::Network(id.clone()))
            .chain(st.nodes.keys().map(|n| Key::Node(n.clone())))
            .collect(),
        Command::AllocateService { id, .. } => vec![Key::Service(id.clone())],
        Command::AllocateNode { id, .. } => vec![Key::Node(id.clone())],
        Command::AllocateTasks(a) => tasks(&mut a.iter().map(|a| &a.task_id)),
        Command::RollbackService { id, .. } | Command::SetUpdateStatus { id, .. } => {
            vec![Key::Service(id.clone())]
        }
        Command::StartFirst { task, .. } => vec![Key::Task(task.id.clone())],
        Command::CreateSecret(s) => vec![Key::Secret(s.id.clone())],
        Command::RemoveSecret { id } => vec![Key::Secret(id.clone())],
        // A new version moves the services that use it.
        Command::UpdateSecret { id, .. } => std::iter::once(Key::Secret(id.clone()))
            .chain(st.users_of_secret(id).map(|s| Key::Service(s.id.clone())))
            .collect(),
        // The request is remembered, and the oldest one may be forgotten.
        Command::Request { id, cmd } => touched(st, cmd)
            .into_iter()
            .chain([Key::Request(id.clone())])
            .chain(st.requests.evicted_next().map(Key::Request))
            .collect(),
        Command::Batch(cmds) | Command::Atomic(cmds) => {
            cmds.iter().flat_map(|c| touched(st, c)).collect()
        }
    }
}

impl StateMachine {
    /// Open the state machine, loading every persisted object.
    pub fn open(db: Arc<Database>) -> StResult<(Self, watch::Receiver<Arc<State>>)> {
        let txn = db.begin_write().map_err(write_err)?;
        txn.open_table(OBJECTS).map_err(write_err)?;
        txn.open_table(SM_META).map_err(write_err)?;
        txn.commit().map_err(write_err)?;

        let mut state = State::default();
        let mut last_applied = None;
        let mut membership = Membership::default();
        {
            let txn = db.begin_read().map_err(read_err)?;
            let objects = txn.open_table(OBJECTS).map_err(read_err)?;
            for item in objects.iter().map_err(read_err)? {
                let (k, v) = item.map_err(read_err)?;
                load_object(&mut state, k.value(), v.value()).map_err(read_err)?;
            }
            let meta = txn.open_table(SM_META).map_err(read_err)?;
            if let Some(v) = meta.get("last_applied").map_err(read_err)? {
                last_applied = serde_json::from_slice(v.value()).map_err(read_err)?;
            }
            if let Some(v) = meta.get("membership").map_err(read_err)? {
                membership = serde_json::from_slice(v.value()).map_err(read_err)?;
            }
        }
        state.reindex();
        let state = Arc::new(state);
        let (publish, rx) = watch::channel(state.clone());
        let sm = StateMachine {
            db,
            state,
            last_applied,
            membership,
            current: None,
            publish,
        };
        Ok((sm, rx))
    }

    /// Persist the given objects and the applied position in one transaction.
    ///
    /// Without an fsync of its own: the log lives in the same redb file and
    /// every log append is durable, which makes all earlier commits durable
    /// too. A crash can lose at most the last applied batches, which raft
    /// replays from the log (compaction keeps 1,000 entries behind the
    /// snapshot point).
    fn persist(&self, keys: &[Key]) -> StResult<()> {
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(redb::Durability::Eventual);
        self.write_objects(&txn, keys)?;
        txn.commit().map_err(write_err)
    }

    /// Write `keys`' objects (or delete those gone) and the applied
    /// position, inside `txn`.
    fn write_objects(&self, txn: &redb::WriteTransaction, keys: &[Key]) -> StResult<()> {
        {
            let mut objects = txn.open_table(OBJECTS).map_err(write_err)?;
            for key in keys {
                let path = key.path();
                match key.encode(&self.state) {
                    Some(bytes) => objects.insert(path.as_str(), bytes.as_slice()),
                    None => objects.remove(path.as_str()).map(|_| None),
                }
                .map_err(write_err)?;
            }
            let mut meta = txn.open_table(SM_META).map_err(write_err)?;
            let applied = serde_json::to_vec(&self.last_applied).map_err(write_err)?;
            meta.insert("last_applied", applied.as_slice())
                .map_err(write_err)?;
            let membership = serde_json::to_vec(&self.membership).map_err(write_err)?;
            meta.insert("membership", membership.as_slice())
                .map_err(write_err)?;
        }
        Ok(())
    }

    /// Replace all persisted objects with `self.state` (snapshot install),
    /// in one durable transaction: a crash leaves the old state or the new,
    /// never an emptied table (the log before the snapshot is gone, so
    /// nothing could replay the difference).
    fn persist_all(&self) -> StResult<()> {
        let txn = self.db.begin_write().map_err(write_err)?;
        txn.delete_table(OBJECTS).map_err(write_err)?;
        self.write_objects(&txn, &all_keys(&self.state))?;
        crate::crash::point("snapshot-install");
        txn.commit().map_err(write_err)
    }

    fn snapshot_body(&self) -> StResult<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)> {
        let body = SnapshotBody {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: (*self.state).clone(),
        };
        let bytes = serde_json::to_vec(&body).map_err(read_err)?;
        // Named by the applied position only: the state at a log id is the
        // same whoever builds the snapshot and whenever.
        let id = match self.last_applied {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: id,
        };
        Ok((meta, bytes))
    }
}

/// Every key a state has objects under: what a snapshot install writes.
fn all_keys(st: &State) -> Vec<Key> {
    let mut keys = vec![Key::Cluster];
    keys.extend(st.nodes.keys().map(|k| Key::Node(k.clone())));
    keys.extend(st.services.keys().map(|k| Key::Service(k.clone())));
    keys.extend(st.tasks.keys().map(|k| Key::Task(k.clone())));
    keys.extend(st.networks.keys().map(|k| Key::Network(k.clone())));
    keys.extend(st.secrets.keys().map(|k| Key::Secret(k.clone())));
    keys.extend(st.removed.iter().map(|k| Key::Removed(k.clone())));
    keys.extend(st.requests.seen.keys().map(|k| Key::Request(k.clone())));
    keys
}

/// The objects table as a map, path → JSON, for checking `apply`'s
/// persistence without a database: `objects_of` is what a snapshot install
/// leaves, and `apply_to_objects` does what `apply` and `persist` do.
/// Loading the map back (`load`, as `StateMachine::open` loads the table)
/// must give the state in memory,
/// or a restart would change the state (the `state_apply` fuzz target
/// checks this).
pub(crate) mod model {
    use super::*;
    use std::collections::BTreeMap;

    pub type Objects = BTreeMap<String, Vec<u8>>;

    pub fn objects_of(st: &State) -> Objects {
        write(st, &all_keys(st), Objects::new())
    }

    pub fn apply_to_objects(
        state: &mut State,
        cmd: Command,
        objects: Objects,
    ) -> (Response, Objects) {
        let mut keys = Vec::new();
        let response = apply_tracked(state, cmd, &mut keys);
        (response, write(state, &keys, objects))
    }

    pub fn load(objects: &Objects) -> Result<State, serde_json::Error> {
        let mut state = State::default();
        for (key, bytes) in objects {
            load_object(&mut state, key, bytes)?;
        }
        state.reindex();
        Ok(state)
    }

    fn write(st: &State, keys: &[Key], mut objects: Objects) -> Objects {
        for key in keys {
            match key.encode(st) {
                Some(bytes) => objects.insert(key.path(), bytes),
                None => objects.remove(&key.path()),
            };
        }
        objects
    }
}

fn load_object(st: &mut State, key: &str, bytes: &[u8]) -> Result<(), serde_json::Error> {
    let (kind, id) = key.split_once('/').unwrap_or((key, ""));
    match kind {
        "cluster" => st.cluster = Some(serde_json::from_slice(bytes)?),
        "node" => {
            st.nodes.insert(id.into(), serde_json::from_slice(bytes)?);
        }
        "service" => {
            st.services
                .insert(id.into(), serde_json::from_slice(bytes)?);
        }
        "task" => {
            st.tasks.insert(id.into(), serde_json::from_slice(bytes)?);
        }
        "network" => {
            st.networks
                .insert(id.into(), serde_json::from_slice(bytes)?);
        }
        "secret" => {
            st.secrets.insert(id.into(), serde_json::from_slice(bytes)?);
        }
        "removed" => {
            st.removed.insert(id.into());
        }
        "request" => {
            st.requests
                .seen
                .insert(id.into(), serde_json::from_slice(bytes)?);
        }
        // Unknown kinds come from a newer version; keep going rather than
        // refusing to start, and let that version own them.
        other => tracing::warn!(key = other, "ignoring unknown object kind in state store"),
    }
    Ok(())
}

pub struct Builder {
    body: StResult<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> StResult<Snapshot<TypeConfig>> {
        let (meta, bytes) = std::mem::replace(&mut self.body, Ok(Default::default()))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> StResult<(Option<LogId<NodeId>>, Membership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut keys = Vec::new();
        let state = Arc::make_mut(&mut self.state);
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(Response::default()),
                EntryPayload::Normal(cmd) => responses.push(apply_tracked(state, cmd, &mut keys)),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    responses.push(Response::default());
                }
            }
        }
        keys.sort();
        keys.dedup();
        self.persist(&keys)?;
        self.publish.send_replace(self.state.clone());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        Builder {
            body: self.snapshot_body(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StResult<()> {
        let bytes = snapshot.into_inner();
        let body: SnapshotBody = serde_json::from_slice(&bytes).map_err(write_err)?;
        let mut state = body.state;
        state.reindex();
        self.state = Arc::new(state);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.persist_all()?;
        self.current = Some((meta.clone(), bytes));
        self.publish.send_replace(self.state.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StResult<Option<Snapshot<TypeConfig>>> {
        // The applied state is always on disk, so it can stand in for a
        // snapshot; before anything is applied there is none.
        if self.current.is_none() && self.last_applied.is_some() {
            self.current = Some(self.snapshot_body()?);
        }
        Ok(self.current.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}
