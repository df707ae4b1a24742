//! The cluster store: reads come from the locally applied state, writes go
//! through raft. Manager loops and the agent talk to each other only through
//! this store.

use crate::api::cluster_pb::{cluster_client::ClusterClient, Blob};
use crate::raft::network::{Network, Peers};
use crate::raft::{self, elector::Elector, log_store::LogStore, state_machine::StateMachine};
use crate::state::{Command, Rejection, State};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// See [`Store::standing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub listed: bool,
    pub led: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the raft store at {path}: {source}")]
    Open {
        path: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The command was committed but the state machine refused it.
    #[error("{0}")]
    Rejected(Rejection),
    #[error("no leader: this manager cannot reach a raft leader ({0})")]
    NoLeader(String),
    /// Too few managers answer for raft to commit anything.
    #[error("no quorum: {reachable} of {managers} managers reachable; writes need {needed}. Bring managers back or fix the network between them")]
    NoQuorum {
        reachable: usize,
        managers: usize,
        needed: usize,
    },
    /// The command went to raft, but no answer came in time: it may yet
    /// be applied, or may not. Read the state before retrying.
    #[error("the write was sent but did not finish within {after:?} ({why}): it may or may not have been applied; check the state before retrying")]
    Unknown { after: Duration, why: String },
    #[error("raft error: {0}")]
    Raft(String),
}

/// The one mapping from store failures to gRPC codes, for every API.
impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> tonic::Status {
        let msg = e.to_string();
        match e {
            StoreError::Rejected(r) => match r {
                Rejection::NotFound { .. } => tonic::Status::not_found(msg),
                Rejection::NameInUse { .. } | Rejection::IdExists { .. } => {
                    tonic::Status::already_exists(msg)
                }
                Rejection::Conflict { .. } => tonic::Status::aborted(msg),
                _ => tonic::Status::failed_precondition(msg),
            },
            StoreError::NoLeader(_) | StoreError::NoQuorum { .. } => {
                tonic::Status::unavailable(msg)
            }
            StoreError::Unknown { .. } => tonic::Status::deadline_exceeded(msg),
            StoreError::Open { .. } | StoreError::Raft(_) => tonic::Status::internal(msg),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    raft: raft::Raft,
    raft_id: raft::NodeId,
    state: watch::Receiver<Arc<State>>,
    peers: Arc<Peers>,
    elector: Arc<Elector>,
    /// Commands waiting for the group-commit task (see `group_commit`).
    queue: mpsc::UnboundedSender<Queued>,
}

/// A queued command, its caller's reply channel, and the flag that says
/// it went to raft (so a timed-out caller learns its outcome is unknown).
type Queued = (
    Command,
    oneshot::Sender<Result<(), StoreError>>,
    Arc<AtomicBool>,
);

/// Most commands one raft entry carries.
const MAX_BATCH: usize = 512;

/// How long a write may wait for raft before it is reported as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
/// The longest a forwarded write waits for this node to apply it.
const READ_YOUR_WRITES: Duration = Duration::from_secs(2);
/// A peer that answered within this window counts as reachable.
const REACHABLE_WINDOW: Duration = Duration::from_secs(2);
/// How long `quorum_without` waits for fresh heartbeat answers: several
/// heartbeat intervals, and longer than a replication backoff (500 ms).
const QUORUM_PROBE: Duration = Duration::from_millis(1200);

impl Store {
    /// Open (or create) the store in `dir`, restoring any state on disk.
    pub async fn open(dir: &Path, raft_id: raft::NodeId) -> Result<Store, StoreError> {
        Store::open_with(dir, raft_id, raft::config()).await
    }

    pub async fn open_with(
        dir: &Path,
        raft_id: raft::NodeId,
        config: openraft::Config,
    ) -> Result<Store, StoreError> {
        let path = dir.join("raft.redb");
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.display().to_string(),
            source: e,
        };
        let db = Arc::new(redb::Database::create(&path).map_err(|e| open_err(e.into()))?);
        let log = LogStore::new(db.clone()).map_err(|e| open_err(e.into()))?;
        let (sm, state) = StateMachine::open(db).map_err(|e| open_err(e.into()))?;
        let config = Arc::new(config.validate().map_err(|e| open_err(e.into()))?);
        let peers = Arc::new(Peers::default());
        let network = Network {
            peers: peers.clone(),
        };
        let raft = raft::Raft::new(raft_id, config, network, log.clone(), sm)
            .await
            .map_err(|e| open_err(e.into()))?;
        let elector = Arc::new(Elector::new(raft.clone(), raft_id, log, peers.clone()));
        tokio::spawn(elector.clone().run());
        let (queue, queued) = mpsc::unbounded_channel();
        let store = Store {
            raft,
            raft_id,
            state,
            peers,
            elector,
            queue,
        };
        tokio::spawn(store.clone().group_commit(queued));
        Ok(store)
    }

    /// Make this node the single voter of a new raft group. Fails if the group
    /// already has a membership.
    pub async fn bootstrap(&self, advertise_addr: &str) -> Result<(), StoreError> {
        let members = BTreeMap::from([(self.raft_id, BasicNode::new(advertise_addr))]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))
    }

    /// Whether this store has been part of a raft group (initialised before).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Wait until some node leads the group.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(), StoreError> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::NoLeader(e.to_string()))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.raft_id)
    }

    pub fn raft_metrics(&self) -> watch::Receiver<openraft::RaftMetrics<raft::NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// The latest applied state.
    pub fn state(&self) -> Arc<State> {
        self.state.borrow().clone()
    }

    /// A receiver that changes whenever a command is applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<State>> {
        self.state.clone()
    }

    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    pub fn elector(&self) -> &Arc<Elector> {
        &self.elector
    }

    pub fn raft(&self) -> &raft::Raft {
        &self.raft
    }

    /// Commit a command and wait for it to be applied (on the leader, which
    /// is this node or the one the command is forwarded to). Fails fast when
    /// the managers have no quorum, saying how many answer.
    pub async fn write(&self, cmd: Command) -> Result<(), StoreError> {
        // One request ID for every try: a retry after a try whose outcome
        // was lost applies at most once (`state/requests.rs`).
        let cmd = Command::Request {
            id: crate::types::new_id(),
            cmd: Box::new(cmd),
        };
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let sent = Arc::new(AtomicBool::new(false));
        loop {
            let attempt = self.write_once(cmd.clone(), sent.clone());
            let result = tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or_else(|_| match sent.load(Ordering::SeqCst) {
                    true => Err(StoreError::Unknown {
                        after: WRITE_TIMEOUT,
                        why: self.no_quorum().to_string(),
                    }),
                    false => Err(self.no_quorum()),
                });
            match result {
                // A leader change is in progress: retry while time remains.
                Err(StoreError::NoLeader(_)) if tokio::time::Instant::now() < deadline => {
                    let _ = self.wait_for_leader(Duration::from_millis(300)).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(StoreError::NoLeader(_)) => return Err(self.no_quorum()),
                other => return other,
            }
        }
    }

    /// Group commit: while one raft entry is being committed, commands from
    /// other writers queue up, and the next entry carries all of them, so
    /// concurrent writers share one log fsync.
    async fn group_commit(self, mut queued: mpsc::UnboundedReceiver<Queued>) {
        while let Some(first) = queued.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queued.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            // A caller that gave up (its deadline passed while it queued)
            // was told its write failed: it must not apply after all.
            batch.retain(|(_, reply, _)| !reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            if batch.len() == 1 {
                let (cmd, reply, sent) = batch.pop().expect("one queued command");
                let _ = reply.send(self.write_direct(cmd, &sent).await);
                continue;
            }
            let mut cmds = Vec::with_capacity(batch.len());
            let mut replies = Vec::with_capacity(batch.len());
            for (cmd, reply, sent) in batch {
                sent.store(true, Ordering::SeqCst);
                cmds.push(cmd);
                replies.push(reply);
            }
            if self.quorum_lost() {
                for reply in replies {
                    let _ = reply.send(Err(self.no_quorum()));
                }
                continue;
            }
            let proposed = crate::metrics::EVENTS.proposal_seconds.start_timer();
            let written = self.raft.client_write(Command::Batch(cmds)).await;
            proposed.observe_duration();
            match written {
                Ok(resp) => {
                    for (reply, r) in replies.into_iter().zip(resp.data.batch) {
                        let _ = reply.send(match r.error {
                            Some(e) => Err(StoreError::Rejected(e)),
                            None => Ok(()),
                        });
                    }
                }
                // Leadership moved or raft failed: each writer retries alone.
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::NoLeader(e.to_string())));
                    }
                }
            }
        }
    }

    /// One attempt: through the group commit on the leader, forwarded to
    /// the leader elsewhere.
    async fn write_once(&self, cmd: Command, sent: Arc<AtomicBool>) -> Result<(), StoreError> {
        if self.is_leader() {
            let (tx, rx) = oneshot::channel();
            if self.queue.send((cmd.clone(), tx, sent.clone())).is_ok() {
                if let Ok(result) = rx.await {
                    return result;
                }
            }
        }
        self.write_direct(cmd, &sent).await
    }

    async fn write_direct(&self, cmd: Command, sent: &AtomicBool) -> Result<(), StoreError> {
        use openraft::error::{ClientWriteError, RaftError};
        if self.quorum_lost() {
            return Err(self.no_quorum());
        }
        sent.store(true, Ordering::SeqCst);
        let proposed = crate::metrics::EVENTS.proposal_seconds.start_timer();
        let written = self.raft.client_write(cmd.clone()).await;
        proposed.observe_duration();
        match written {
            Ok(resp) => match resp.data.error {
                Some(e) => Err(StoreError::Rejected(e)),
                None => Ok(()),
            },
            // A follower that has not heard from the leader for a lease
            // fails without forwarding: a request stuck on a cut link
            // would otherwise reach the leader, and apply, after the
            // caller was told it failed.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))
                if self.elector.leader_lost().await =>
            {
                Err(StoreError::NoLeader(
                    "no word from the leader lately".into(),
                ))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
                Some(node) => self.forward(&node.addr, &cmd).await,
                None => Err(StoreError::NoLeader("no leader is elected".into())),
            },
            Err(e) => Err(StoreError::Raft(e.to_string())),
        }
    }

    /// Whether this node leads but has heard from no quorum lately, so a
    /// write would only wait.
    fn quorum_lost(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader == Some(self.raft_id)
            && m.millis_since_quorum_ack
                .is_some_and(|ms| u128::from(ms) > REACHABLE_WINDOW.as_millis())
            && self.voters().len() > 1
    }

    /// Send a command to the leader at `addr` (manager-to-manager, mTLS).
    async fn forward(&self, addr: &str, cmd: &Command) -> Result<(), StoreError> {
        let channel = self.peers.channel(addr).map_err(StoreError::NoLeader)?;
        let body = Blob {
            json: serde_json::to_vec(cmd).expect("commands serialize"),
        };
        match ClusterClient::new(channel).propose(body).await {
            Ok(r) if r.get_ref().rejection_json.is_empty() => {
                // Read your writes: a read on this manager right after the
                // write answers sees it. The write stands either way.
                let _ = self
                    .raft
                    .wait(Some(READ_YOUR_WRITES))
                    .applied_index_at_least(Some(r.get_ref().applied_index), "a forwarded write")
                    .await;
                Ok(())
            }
            Ok(r) => Err(match serde_json::from_str(&r.get_ref().rejection_json) {
                Ok(rejection) => StoreError::Rejected(rejection),
                Err(e) => StoreError::Raft(format!("leader at {addr}: undecodable rejection: {e}")),
            }),
            Err(s) if s.code() == tonic::Code::Unavailable => Err(StoreError::NoLeader(format!(
                "leader at {addr}: {}",
                s.message()
            ))),
            Err(s) => Err(StoreError::Raft(format!(
                "leader at {addr}: {}",
                s.message()
            ))),
        }
    }

    /// Make the next read of this node's state linearizable (raft's
    /// ReadIndex): the leader confirms with a quorum that it still leads
    /// and names its commit point, and this node waits until it has
    /// applied as far. Reads without it see this node's applied state,
    /// which may lag.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let barrier = async {
            let index = match self.is_leader() {
                true => self.read_index().await?,
                false => {
                    self.leader_client()?
                        .read_index(crate::api::cluster_pb::Empty {})
                        .await
                        .map_err(|s| StoreError::NoLeader(format!("the leader: {}", s.message())))?
                        .into_inner()
                        .index
                }
            };
            self.raft
                .wait(None)
                .applied_index_at_least(Some(index), "a consistent read")
                .await
                .map_err(|e| StoreError::Raft(e.to_string()))?;
            Ok(())
        };
        tokio::time::timeout(WRITE_TIMEOUT, barrier)
            .await
            .unwrap_or_else(|_| Err(self.no_quorum()))
    }

    /// A client of the Cluster service on the current leader.
    pub fn leader_client(&self) -> Result<ClusterClient<tonic::transport::Channel>, StoreError> {
        Ok(ClusterClient::new(self.leader_channel()?))
    }

    /// A channel to the current leader, for any of its node services.
    pub fn leader_channel(&self) -> Result<tonic::transport::Channel, StoreError> {
        let leader = self
            .leader_addr()
            .ok_or_else(|| StoreError::NoLeader("no leader is elected".into()))?;
        self.peers.channel(&leader).map_err(StoreError::NoLeader)
    }

    /// On the leader: the read index, once a quorum confirmed it leads.
    pub async fn read_index(&self) -> Result<u64, StoreError> {
        let (read, _) = self
            .raft
            .get_read_log_id()
            .await
            .map_err(|e| StoreError::NoLeader(e.to_string()))?;
        Ok(read.map_or(0, |l| l.index))
    }

    /// The index of the last log entry applied to this node's state.
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// The node API address of the current leader, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// Where this node stands in raft, for a demoted manager deciding
    /// when it may go: whether the newest voter set it knows (the target
    /// of a joint change) still lists it, and whether it knows a leader.
    pub fn standing(&self) -> Standing {
        let m = self.raft.metrics().borrow().clone();
        let newest = m.membership_config.membership().get_joint_config().last();
        Standing {
            listed: newest.is_some_and(|voters| voters.contains(&self.raft_id)),
            led: m.current_leader.is_some(),
        }
    }

    /// Raft IDs of the voting managers.
    pub fn voters(&self) -> Vec<raft::NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    fn no_quorum(&self) -> StoreError {
        let voters = self.voters();
        let reachable = voters
            .iter()
            .filter(|&&v| v == self.raft_id || self.peers.answered_within(v, REACHABLE_WINDOW))
            .count();
        StoreError::NoQuorum {
            reachable,
            managers: voters.len(),
            needed: voters.len() / 2 + 1,
        }
    }

    /// Whether the voters other than `leaving` still have a quorum, judged
    /// by heartbeat answers that arrive after this call starts. Recent
    /// answers are not enough: a manager cut off a moment ago still looks
    /// reachable, and a leave proposed then would sit in the log and commit
    /// whenever the quorum returns, long after the caller was told no.
    /// Meaningful on the leader only, which heartbeats every voter.
    pub async fn quorum_without(&self, leaving: raft::NodeId) -> Result<(), StoreError> {
        let start = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + QUORUM_PROBE;
        loop {
            let rest: Vec<_> = self
                .voters()
                .into_iter()
                .filter(|v| *v != leaving)
                .collect();
            let reachable = rest
                .iter()
                .filter(|&&v| v == self.raft_id || self.peers.answered_since(v, start))
                .count();
            let needed = rest.len() / 2 + 1;
            if !rest.is_empty() && reachable >= needed {
                return Ok(());
            }
            if rest.is_empty() || tokio::time::Instant::now() >= deadline {
                return Err(StoreError::NoQuorum {
                    reachable,
                    managers: rest.len(),
                    needed,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Take `raft_id` out of the voters (it may be this leader itself,
    /// which then steps down). Must run on the leader.
    pub async fn remove_voter(&self, raft_id: raft::NodeId) -> Result<(), StoreError> {
        // The membership loop may be making the same change: retry while a
        // change is in progress, and stop as soon as the vote is gone.
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        loop {
            let voters = self.voters();
            if !voters.contains(&raft_id) {
                return Ok(());
            }
            let rest: std::collections::BTreeSet<_> =
                voters.into_iter().filter(|v| *v != raft_id).collect();
            if rest.is_empty() {
                return Err(StoreError::Rejected(Rejection::Invalid(
                    "cannot remove the last manager".into(),
                )));
            }
            match self.raft.change_membership(rest, false).await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(StoreError::Raft(format!(
                        "removing manager {raft_id} from raft: {e}"
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Make `raft_id` a voter: it first catches up as a learner. Must run on
    /// the leader.
    pub async fn add_voter(&self, raft_id: raft::NodeId, addr: &str) -> Result<(), StoreError> {
        let e = |e: String| StoreError::Raft(format!("adding manager {raft_id} at {addr}: {e}"));
        self.raft
            .add_learner(raft_id, BasicNode::new(addr), true)
            .await
            .map_err(|x| e(x.to_string()))?;
        let mut voters: std::collections::BTreeSet<_> = self.voters().into_iter().collect();
        voters.insert(raft_id);
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|x| e(x.to_string()))?;
        Ok(())
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.elector.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::node;

    #[test]
    fn rejections_map_to_grpc_codes_by_kind() {
        use crate::state::Kind;
        let code = |e: StoreError| tonic::Status::from(e).code();
        let rejected = |r| code(StoreError::Rejected(r));
        assert_eq!(
            rejected(Rejection::NotFound {
                kind: Kind::Service,
                id: "x".into()
            }),
            tonic::Code::NotFound
        );
        assert_eq!(
            rejected(Rejection::NameInUse {
                kind: Kind::Service,
                name: "web".into()
            }),
            tonic::Code::AlreadyExists
        );
        assert_eq!(
            rejected(Rejection::Invalid("no".into())),
            tonic::Code::FailedPrecondition
        );
        let no_quorum = StoreError::NoQuorum {
            reachable: 1,
            managers: 3,
            needed: 2,
        };
        assert_eq!(code(no_quorum), tonic::Code::Unavailable);
        assert_eq!(
            code(StoreError::NoLeader("x".into())),
            tonic::Code::Unavailable
        );
        assert_eq!(
            code(StoreError::Unknown {
                after: WRITE_TIMEOUT,
                why: "no quorum".into()
            }),
            tonic::Code::DeadlineExceeded
        );
    }

    /// A queued command whose caller gave up is dropped, not proposed:
    /// the caller was told it failed, so it must not apply later.
    #[tokio::test]
    async fn a_command_whose_caller_gave_up_is_never_proposed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).await.unwrap();
        store.bootstrap("127.0.0.1:0").await.unwrap();
        store
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();
        let svc = |id: &str| {
            let mut s = crate::manager::testutil::service(id, crate::types::Mode::Replicated, 1);
            s.spec.name = id.into();
            Command::CreateService(s)
        };
        let (abandoned, gone) = oneshot::channel();
        drop(gone);
        let flag = Arc::new(AtomicBool::new(false));
        store
            .queue
            .send((svc("abandoned"), abandoned, flag.clone()))
            .unwrap();
        store.write(svc("kept")).await.unwrap();
        let st = store.state();
        assert!(st.service_by_name("kept").is_some());
        assert!(st.service_by_name("abandoned").is_none());
        assert!(!flag.load(Ordering::SeqCst), "it never went to raft");
    }

    /// Snapshots and log compaction run, and a store reopened after them
    /// has every acknowledged write.
    #[tokio::test]
    async fn snapshots_compact_the_log_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = openraft::Config {
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(50),
            max_in_snapshot_log_to_keep: 10,
            purge_batch_size: 1,
            ..raft::config()
        };
        let store = Store::open_with(dir.path(), 1, config.clone())
            .await
            .unwrap();
        store.bootstrap("127.0.0.1:0").await.unwrap();
        store.wait_for_leader(Duration::from_secs(5)).await.unwrap();
        for i in 0..120 {
            store
                .write(Command::PutNode(node(&format!("n{i}"))))
                .await
                .unwrap();
        }
        let m = store
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= 90) && m.purged.is_some(),
                "a snapshot and a purged log",
            )
            .await
            .unwrap();
        assert!(m.purged.unwrap().index >= 50, "{:?}", m.purged);
        store.shutdown().await;
        drop(store);

        let again = Store::open_with(dir.path(), 1, config).await.unwrap();
        assert_eq!(again.state().nodes.len(), 120);
        again.wait_for_leader(Duration::from_secs(5)).await.unwrap();
        again.write(Command::PutNode(node("late"))).await.unwrap();
        assert_eq!(again.state().nodes.len(), 121);
        again.shutdown().await;
    }
}
