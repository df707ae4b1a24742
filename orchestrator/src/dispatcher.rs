//! The dispatcher: the leader's end of every agent's session. It streams each
//! node the tasks assigned to it (a full set, then changes), takes the
//! agents' status reports into the store, and turns heartbeats into node
//! liveness: a node that misses about three beats is marked DOWN, which makes
//! the orchestrator replace its replicas elsewhere.
//!
//! Only the leader dispatches. Other managers refuse sessions with the
//! leader's address, so agents follow leadership.

use crate::api::cluster_pb::{
    dispatcher_server, Empty, HeartbeatRequest, HeartbeatResponse, SecretData, SessionMessage,
    SessionRequest, StatusRequest,
};
use crate::keyring::{binding, Keyring};
use crate::net::Peer;
use crate::state::{Command, State};
use crate::store::Store;
use crate::types::{now_ms, NodeRole, NodeState, SecretKind, Task, TaskState, TaskStatus};
use crate::view::Book;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Beats a node may miss before it is marked DOWN.
const MISSED_BEATS: u32 = 3;

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    keyring: Keyring,
    broker: crate::broker::Broker,
    beats: Arc<Mutex<HashMap<String, Instant>>>,
    /// The views' book for the latest state a session asked about: made
    /// once per state, cut for each node (`view.rs`).
    book: Arc<Mutex<Option<Booked>>>,
}

/// A state and the book made of it.
type Booked = (Arc<State>, Arc<Book>);

/// The heartbeat period the cluster was created with.
pub fn heartbeat_period(st: &State) -> Duration {
    Duration::from_millis(st.cluster.as_ref().map_or(1000, |c| c.heartbeat_ms).max(50))
}

/// The tasks a node's agent must know about: assigned to it and past the
/// scheduler.
pub fn tasks_for<'a>(st: &'a State, node_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
    st.tasks_on(node_id)
        .filter(|t| t.status.state >= TaskState::Assigned)
}

impl Dispatcher {
    pub fn new(store: Store, keyring: Keyring, broker: crate::broker::Broker) -> Dispatcher {
        Dispatcher {
            store,
            keyring,
            broker,
            beats: Arc::default(),
            book: Arc::default(),
        }
    }

    /// The book of `st`, made by the first session that asks for it.
    fn book(&self, st: &Arc<State>) -> Arc<Book> {
        let mut book = self.book.lock().expect("book lock");
        match &*book {
            Some((of, b)) if Arc::ptr_eq(of, st) => b.clone(),
            cached => {
                let made = Book::of(st);
                let b = Arc::new(match cached {
                    Some((_, prev)) => made.sharing(prev),
                    None => made,
                });
                *book = Some((st.clone(), b.clone()));
                b
            }
        }
    }

    /// The service behind its gate: a member node's certificate, checked
    /// before a message is read, and status reports of at most 16 MiB.
    pub fn into_server(
        self,
    ) -> tonic::service::interceptor::InterceptedService<
        dispatcher_server::DispatcherServer<Dispatcher>,
        crate::cluster::access::Gate,
    > {
        let store = self.store.clone();
        let server =
            dispatcher_server::DispatcherServer::new(self).max_decoding_message_size(16 << 20);
        use crate::cluster::access::{Gate, Need};
        tonic::service::interceptor::InterceptedService::new(server, Gate::new(store, Need::Node))
    }

    fn ensure_leader(&self) -> Result<(), Status> {
        if self.store.is_leader() {
            return Ok(());
        }
        Err(crate::net::not_leader(self.store.leader_addr()))
    }

    /// During a CA rotation, record a node whose session shows a
    /// certificate from the new root: only a certificate in use counts, so
    /// the old root is dropped only once no node depends on it. (A node
    /// reconnects after renewing, so its next session shows the new one.)
    fn note_issuer(&self, who: &crate::pki::Identity) {
        let st = self.store.state();
        let Some(r) = st.cluster.as_ref().and_then(|c| c.rotation.as_ref()) else {
            return;
        };
        if r.name != who.issuer || r.renewed.contains(&who.node_id) {
            return;
        }
        let store = self.store.clone();
        let cmd = Command::CaRenewed {
            node: who.node_id.clone(),
            issuer: who.issuer.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = store.write(cmd).await {
                tracing::warn!(error = %e, "cannot record a node's certificate from the new CA");
            }
        });
    }

    fn beat(&self, node: &str) {
        self.beats
            .lock()
            .expect("beats lock")
            .insert(node.to_string(), Instant::now());
    }

    /// Watch heartbeats while this node leads: mark silent nodes DOWN and
    /// beating ones READY. A new leader gives every node a full grace period
    /// before judging it, since it has not seen their beats yet.
    pub async fn run_liveness(self, stop: CancellationToken) {
        let mut leader_since: Option<Instant> = None;
        loop {
            let st = self.store.state();
            let period = heartbeat_period(&st);
            if self.store.is_leader() {
                let since = *leader_since.get_or_insert_with(Instant::now);
                let limit = period * MISSED_BEATS;
                let mut changes = Vec::new();
                {
                    let beats = self.beats.lock().expect("beats lock");
                    for n in st.nodes.values() {
                        let last = beats.get(&n.id).copied().unwrap_or(since).max(since);
                        let alive = last.elapsed() <= limit;
                        let fresh = beats.get(&n.id).is_some_and(|b| b.elapsed() <= limit);
                        if n.state == NodeState::Ready && !alive {
                            crate::metrics::EVENTS.heartbeat_misses.inc();
                            changes.push((n.id.clone(), NodeState::Down));
                        } else if n.state != NodeState::Ready && fresh {
                            changes.push((n.id.clone(), NodeState::Ready));
                        }
                    }
                }
                for (id, state) in changes {
                    tracing::info!(node = %id, ?state, "node liveness changed");
                    let cmd = Command::SetNodeState {
                        id,
                        state,
                        at: now_ms(),
                    };
                    if let Err(e) = self.store.write(cmd).await {
                        tracing::warn!(error = %e, "cannot record node liveness");
                    }
                }
            } else {
                leader_since = None;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period / 2) => {}
            }
        }
    }
}

/// What a session has told its agent so far.
#[derive(Default)]
struct Sent {
    /// Task ID → the task as sent.
    tasks: BTreeMap<String, Task>,
    /// The node's role and the manager list as sent.
    meta: (String, Vec<String>),
    view: Option<crate::types::NodeView>,
    /// Secret versions sent, by (ID, version).
    secrets: BTreeSet<(String, u64)>,
    /// The CA certificates as sent.
    trust: String,
}

/// The secret and config versions the node's tasks that may still start
/// or run use: the only ones it may hold.
pub fn secrets_for(st: &State, node_id: &str) -> BTreeSet<(String, u64)> {
    tasks_for(st, node_id)
        .filter(|t| t.desired_state <= TaskState::Running && !t.status.state.is_terminal())
        .flat_map(|t| t.spec.data_refs().map(|(_, r)| (r.id.clone(), r.version)))
        .collect()
}

/// Tell the agent the secrets it gained and lost. A secret's bytes are
/// opened here, for this node only; one that cannot be opened is left
/// unsent (and logged by ID), so the task that needs it is refused by the
/// agent with a message that says so.
fn diff_secrets(
    st: &State,
    node: &str,
    keyring: &Keyring,
    sent: &mut Sent,
    msg: &mut SessionMessage,
) {
    let want = secrets_for(st, node);
    let missing: Vec<(String, u64)> = want.difference(&sent.secrets).cloned().collect();
    for key in missing {
        let (id, version) = &key;
        let Some(s) = st.secrets.get(id) else {
            continue;
        };
        let Some(v) = s.version(*version) else {
            continue;
        };
        let data = match s.kind {
            SecretKind::Config => v.data.clone(),
            SecretKind::Secret => match keyring.open(&binding(id, *version), &v.data) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(secret = %s.name, id = %id, error = %e, "cannot open a secret for node {node}");
                    continue;
                }
            },
        };
        msg.secrets.push(SecretData {
            id: id.clone(),
            version: *version,
            data,
        });
        sent.secrets.insert(key);
    }
    let gone: Vec<(String, u64)> = sent.secrets.difference(&want).cloned().collect();
    for (id, version) in gone {
        sent.secrets.remove(&(id.clone(), version));
        msg.secrets_removed.push(SecretData {
            id,
            version,
            data: Vec::new(),
        });
    }
}

/// Whether `st` holds the same as `prev` for everything node `node` is
/// sent but the view: its tasks (an unchanged task keeps its `Arc`), its
/// own record (role, attachments), the cluster record (heartbeat, trust),
/// the networks and the secrets. False when unsure: the session diffs.
fn untouched(prev: &State, st: &State, node: &str) -> bool {
    let same_task = |id: &String| match (prev.tasks.get(id), st.tasks.get(id)) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    prev.nodes.get(node) == st.nodes.get(node)
        && prev.cluster == st.cluster
        && prev.networks.ptr_eq(&st.networks)
        && prev.secrets.ptr_eq(&st.secrets)
        && prev.index.on_node(node).eq(st.index.on_node(node))
        && st.index.on_node(node).all(same_task)
}

fn diff(
    st: &State,
    book: &Book,
    node: &str,
    keyring: &Keyring,
    sent: &mut Sent,
    full: bool,
) -> Option<SessionMessage> {
    let now: BTreeMap<&String, &Task> = tasks_for(st, node).map(|t| (&t.id, t)).collect();
    let mut msg = SessionMessage {
        managers: book.managers.to_vec(),
        heartbeat_ms: heartbeat_period(st).as_millis() as u64,
        role: st
            .nodes
            .get(node)
            .map_or(NodeRole::Worker, |n| n.role)
            .as_str()
            .into(),
        ..Default::default()
    };
    for (id, t) in &now {
        if sent.tasks.get(*id) != Some(*t) {
            msg.upserts_json
                .push(serde_json::to_string(t).expect("tasks serialize"));
            sent.tasks.insert((*id).clone(), (*t).clone());
        }
    }
    let gone: Vec<String> = sent
        .tasks
        .keys()
        .filter(|id| !now.contains_key(id))
        .cloned()
        .collect();
    for id in gone {
        sent.tasks.remove(&id);
        msg.removed.push(id);
    }
    let meta = (msg.role.clone(), msg.managers.clone());
    let meta_changed = sent.meta != meta;
    sent.meta = meta;
    // The view travels with the tasks it was computed with, so the agent
    // never sees a task on a network it has not heard of.
    let view = book.for_node(st, node);
    if sent.view.as_ref() != Some(&view) {
        msg.view_json = serde_json::to_string(&view).expect("views serialize");
        sent.view = Some(view);
    }
    // Secrets travel with the tasks that use them, so an agent never has a
    // task whose secret has not arrived.
    diff_secrets(st, node, keyring, sent, &mut msg);
    let trust = st
        .cluster
        .as_ref()
        .map(|c| c.trust_pem())
        .unwrap_or_default();
    if sent.trust != trust {
        msg.trust_pem = trust.clone();
        sent.trust = trust;
    }
    let changed = !msg.trust_pem.is_empty()
        || !msg.upserts_json.is_empty()
        || !msg.removed.is_empty()
        || !msg.view_json.is_empty()
        || !msg.secrets.is_empty()
        || !msg.secrets_removed.is_empty();
    (full || meta_changed || changed).then_some(msg)
}

#[tonic::async_trait]
impl dispatcher_server::Dispatcher for Dispatcher {
    type SessionStream = ReceiverStream<Result<SessionMessage, Status>>;

    async fn session(
        &self,
        req: Request<SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let who = Peer::require(&req, false)?;
        self.ensure_leader()?;
        self.beat(&who.node_id);
        self.note_issuer(&who);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move {
            let _open = crate::metrics::EVENTS.session_opened();
            let (_registered, mut work) = me.broker.register(&who.node_id);
            let mut changes = me.store.subscribe();
            let mut sent = Sent::default();
            let mut full = true;
            let mut changed = true;
            // The state and book last looked at, to skip a change that
            // does not touch this node (most, in a large swarm).
            let mut last: Option<Booked> = None;
            loop {
                if !me.store.is_leader() {
                    let _ = tx
                        .send(Err(Status::unavailable("leadership moved; reconnect")))
                        .await;
                    return;
                }
                // Only a new state can change what the node is sent: an
                // idle swarm's sessions wake for leadership alone.
                if changed {
                    let st = changes.borrow_and_update().clone();
                    let book = me.book(&st);
                    let same = !full
                        && last.as_ref().is_some_and(|(ls, lb)| {
                            untouched(ls, &st, &who.node_id)
                                && book.same_cut(lb, &st.node_networks(&who.node_id))
                        });
                    if !same {
                        let msg = diff(&st, &book, &who.node_id, &me.keyring, &mut sent, full);
                        if let Some(msg) = msg {
                            if tx.send(Ok(msg)).await.is_err() {
                                return; // the agent went away
                            }
                        }
                    }
                    last = Some((st, book));
                    full = false;
                }
                changed = false;
                tokio::select! {
                    r = changes.changed() => match r {
                        Ok(()) => changed = true,
                        Err(_) => return,
                    },
                    Some(w) = work.recv() => {
                        let msg = SessionMessage { work: Some(w), ..Default::default() };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let who = Peer::require(&req, false)?;
        self.ensure_leader()?;
        self.beat(&who.node_id);
        Ok(Response::new(HeartbeatResponse {
            period_ms: heartbeat_period(&self.store.state()).as_millis() as u64,
        }))
    }

    async fn update_status(&self, req: Request<StatusRequest>) -> Result<Response<Empty>, Status> {
        let who = Peer::require(&req, false)?;
        self.ensure_leader()?;
        let st = self.store.state();
        let mut updates = Vec::new();
        for json in &req.get_ref().updates_json {
            let (id, status): (String, TaskStatus) = serde_json::from_str(json)
                .map_err(|e| Status::invalid_argument(format!("task status: {e}")))?;
            // A node reports on its own tasks only.
            let own = st
                .tasks
                .get(&id)
                .is_some_and(|t| t.node_id.as_deref() == Some(who.node_id.as_str()));
            if own {
                updates.push((id, status));
            }
        }
        if !updates.is_empty() {
            self.store
                .write(Command::UpdateStatus(updates))
                .await
                .map_err(Status::from)?;
        }
        self.beat(&who.node_id);
        Ok(Response::new(Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{node, service, state, task};
    use crate::types::{Meta, Mode, Secret, SecretRef, SecretVersion};

    #[test]
    fn only_a_node_that_runs_a_task_using_a_secret_receives_it() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::load(dir.path()).unwrap();
        keyring.create().unwrap();
        let mut svc = service("s1", Mode::Replicated, 1);
        svc.spec.secrets = vec![SecretRef {
            id: "sec".into(),
            version: 1,
            ..SecretRef::named("db")
        }];
        let t = task("t1", &svc, 1, TaskState::Assigned);
        let mut st = state(&[node("n1"), node("n2")], &[svc], &[t]);
        let sealed = keyring.seal(&binding("sec", 1), b"pw").unwrap();
        st.secrets.insert(
            "sec".into(),
            Secret {
                id: "sec".into(),
                kind: SecretKind::Secret,
                name: "db".into(),
                labels: Default::default(),
                versions: vec![SecretVersion {
                    version: 1,
                    created_at: 0,
                    data: sealed,
                }],
                meta: Meta::default(),
            },
        );

        let mut other = Sent::default();
        let msg = diff(&st, &Book::of(&st), "n2", &keyring, &mut other, true).unwrap();
        assert!(msg.secrets.is_empty(), "n2 runs nothing that uses it");

        let mut sent = Sent::default();
        let msg = diff(&st, &Book::of(&st), "n1", &keyring, &mut sent, true).unwrap();
        assert_eq!(msg.secrets.len(), 1);
        assert_eq!(msg.secrets[0].data, b"pw", "opened for the agent");
        assert!(
            msg.upserts_json
                .iter()
                .all(|j| !j.contains("cHc=") && !j.contains("\"pw\"")),
            "the task carries a reference, not the bytes"
        );
        assert!(
            diff(&st, &Book::of(&st), "n1", &keyring, &mut sent, false).is_none(),
            "sent once"
        );

        // Once the task is over, the agent is told to forget it.
        st.task_mut("t1").unwrap().desired_state = TaskState::Shutdown;
        let msg = diff(&st, &Book::of(&st), "n1", &keyring, &mut sent, false).unwrap();
        assert!(msg.secrets.is_empty());
        assert_eq!(msg.secrets_removed.len(), 1);
        assert!(msg.secrets_removed[0].data.is_empty());
    }

    /// A session skips a change only when a diff would have sent its node
    /// nothing, over random changes to tasks on three nodes, one service
    /// publishing a port (seen everywhere) and one not.
    #[test]
    fn a_session_skips_only_changes_that_would_send_its_node_nothing() {
        use crate::state::Assignment;
        use crate::types::{PortConfig, Proto, PublishMode};
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::load(dir.path()).unwrap();
        keyring.create().unwrap();
        let quiet = service("quiet", Mode::Replicated, 3);
        let mut web = service("web", Mode::Replicated, 3);
        web.spec.ports.push(PortConfig {
            protocol: Proto::Tcp,
            published: 8080,
            target: 80,
            mode: PublishMode::Ingress,
            force: false,
        });
        let nodes = ["n1", "n2", "n3"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut skipped, mut sent_any) = (0, 0);
        for round in 0..20 {
            let mut st = Arc::new(state(&nodes.map(node), &[quiet.clone(), web.clone()], &[]));
            let mut book = Arc::new(Book::of(&st));
            let mut sent: Vec<Sent> = nodes.iter().map(|_| Sent::default()).collect();
            for (n, s) in nodes.iter().zip(&mut sent) {
                diff(&st, &book, n, &keyring, s, true);
            }
            for step in 0..40 {
                let mut next = State::clone(&st);
                let id = format!("t{}", rng.gen_range(0..step + 1));
                let cmd = match rng.gen_range(0..4) {
                    0 => {
                        let svc = [&quiet, &web][rng.gen_range(0..2)];
                        let mut t =
                            task(&format!("t{step}"), svc, step as u64, TaskState::Assigned);
                        t.node_id = Some(format!("n{}", rng.gen_range(1..4)));
                        Command::CreateTasks(vec![t])
                    }
                    1 => Command::Assign(vec![Assignment {
                        task_id: id,
                        node_id: Some(format!("n{}", rng.gen_range(1..4))),
                        message: "scheduled".into(),
                        at: 1,
                    }]),
                    2 => Command::UpdateStatus(vec![(id, TaskStatus::new(TaskState::Running, ""))]),
                    _ => Command::DeleteTasks(vec![id]),
                };
                next.apply(cmd);
                let next = Arc::new(next);
                let next_book = Arc::new(Book::of(&next).sharing(&book));
                for (n, s) in nodes.iter().zip(&mut sent) {
                    let same = untouched(&st, &next, n)
                        && next_book.same_cut(&book, &next.node_networks(n));
                    let msg = diff(&next, &next_book, n, &keyring, s, false);
                    if same {
                        assert!(
                            msg.is_none(),
                            "round {round} step {step}: {n} skipped {msg:?}"
                        );
                        skipped += 1;
                    } else if msg.is_some() {
                        sent_any += 1;
                    }
                }
                (st, book) = (next, next_book);
            }
        }
        assert!(
            skipped > 100 && sent_any > 100,
            "both kinds: {skipped} {sent_any}"
        );
    }
}
