//! When a manager starts an election: pre-vote, on top of openraft.
//!
//! openraft 0.9 elects as soon as a follower's timer fires. A manager whose
//! log is behind (it just restarted, or was cut off) then bumps the term with
//! a campaign it cannot win; the managers that could win meet that term
//! already spent and split their votes, and each split costs another
//! timeout. Failover took 2–3.5 s that way. So openraft's own timer is off
//! (`enable_elect = false`) and this loop decides instead: after a random
//! silence from the leader, it asks the other voters first whether they too
//! have lost the leader and whether its log is at least as new as theirs,
//! and calls the election only when a majority says yes. A manager that
//! alone lost the leader, or is behind, never disturbs the others.

use super::log_store::LogStore;
use super::network::Peers;
use super::{NodeId, Raft};
use crate::api::cluster_pb::{raft_client::RaftClient, Blob};
use openraft::storage::RaftLogStorage;
use openraft::{LogId, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the loop looks at the time since the leader was last heard.
const TICK: Duration = Duration::from_millis(10);
/// The spread of the election timeout above the lease: wide enough that
/// two followers rarely ask in the same instant.
const JITTER_MS: u64 = 200;
/// How long a pre-vote waits for each peer.
const ASK_TIMEOUT: Duration = Duration::from_millis(200);

/// "Would you vote for me?", asked before an election.
#[derive(Debug, Serialize, Deserialize)]
pub struct PreVote {
    pub candidate: NodeId,
    pub last_log_id: Option<LogId<NodeId>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PreVoteReply {
    pub granted: bool,
    /// Why not, when not granted (for the logs).
    pub why: String,
}

/// What the loop and the pre-vote answer need from raft's state.
struct View {
    leading: bool,
    /// Voters and their node API addresses.
    voters: BTreeMap<NodeId, String>,
    /// Time since this node last heard from a leader (or changed its vote).
    silent: Duration,
}

pub struct Elector {
    raft: Raft,
    id: NodeId,
    /// Taken away by `close`, so a store can be reopened while a server
    /// still holds this elector.
    log: Mutex<Option<LogStore>>,
    peers: Arc<Peers>,
    /// openraft's leader lease: a voter refuses votes for this long after
    /// it last heard from the leader, so no election can succeed sooner.
    lease: Duration,
}

impl Elector {
    pub fn new(raft: Raft, id: NodeId, log: LogStore, peers: Arc<Peers>) -> Elector {
        let lease = Duration::from_millis(raft.config().election_timeout_max);
        Elector {
            raft,
            id,
            log: Mutex::new(Some(log)),
            peers,
            lease,
        }
    }

    /// Runs until raft shuts down.
    pub async fn run(self: Arc<Self>) {
        let mut wait = self.timeout();
        let mut last_silent = Duration::ZERO;
        loop {
            tokio::time::sleep(TICK).await;
            let Some(v) = self.view().await else { return };
            // A leader was heard (or a vote cast) since the last look: the
            // countdown starts again, with a fresh random timeout.
            if v.silent < last_silent {
                wait = self.timeout();
            }
            last_silent = v.silent;
            if v.leading || !v.voters.contains_key(&self.id) || v.silent < wait {
                continue;
            }
            if v.voters.len() == 1 || self.pre_vote(&v).await {
                tracing::info!(
                    silent_ms = v.silent.as_millis() as u64,
                    "no word from a raft leader; a majority agrees: starting an election"
                );
                if self.raft.trigger().elect().await.is_err() {
                    return;
                }
                wait = self.timeout();
            } else {
                wait = v.silent + jitter();
            }
        }
    }

    /// Whether this node follows a leader it has not heard from for a lease.
    pub async fn leader_lost(&self) -> bool {
        self.view()
            .await
            .is_some_and(|v| !v.leading && v.silent >= self.lease)
    }

    /// Answer another manager's pre-vote.
    pub async fn answer(&self, req: PreVote) -> PreVoteReply {
        let refuse = |why: String| PreVoteReply {
            granted: false,
            why,
        };
        let Some(v) = self.view().await else {
            return refuse("raft is shutting down".into());
        };
        if v.leading {
            return refuse("this manager is the leader".into());
        }
        if v.silent < self.lease {
            return refuse(format!(
                "heard from the leader {} ms ago",
                v.silent.as_millis()
            ));
        }
        let mine = self.last_log_id().await;
        if req.last_log_id < mine {
            return refuse(format!(
                "the candidate's log ends at {:?}, before this manager's {mine:?}",
                req.last_log_id
            ));
        }
        PreVoteReply {
            granted: true,
            why: String::new(),
        }
    }

    /// Ask the other voters; true when a majority (counting this node)
    /// grants.
    async fn pre_vote(&self, v: &View) -> bool {
        let req = PreVote {
            candidate: self.id,
            last_log_id: self.last_log_id().await,
        };
        let body = serde_json::to_vec(&req).expect("pre-votes serialize");
        let asks = v
            .voters
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(peer, addr)| self.ask(*peer, addr, body.clone()));
        let granted = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter(|g| *g)
            .count();
        granted + 1 > v.voters.len() / 2
    }

    async fn ask(&self, peer: NodeId, addr: &str, json: Vec<u8>) -> bool {
        let Ok(channel) = self.peers.channel(addr) else {
            return false;
        };
        let mut client = RaftClient::new(channel);
        let reply = match tokio::time::timeout(ASK_TIMEOUT, client.pre_vote(Blob { json })).await {
            Ok(Ok(r)) => r.into_inner(),
            _ => return false,
        };
        match serde_json::from_slice::<PreVoteReply>(&reply.json) {
            Ok(r) if r.granted => true,
            Ok(r) => {
                tracing::debug!(peer, why = %r.why, "pre-vote refused");
                false
            }
            Err(_) => false,
        }
    }

    async fn view(&self) -> Option<View> {
        self.raft
            .with_raft_state(|st| {
                let m = st.membership_state.effective().membership();
                View {
                    leading: st.server_state == ServerState::Leader,
                    voters: m
                        .voter_ids()
                        .map(|v| {
                            (
                                v,
                                m.get_node(&v).map(|n| n.addr.clone()).unwrap_or_default(),
                            )
                        })
                        .collect(),
                    silent: st
                        .vote_last_modified()
                        .map_or(Duration::MAX, |t| t.elapsed()),
                }
            })
            .await
            .ok()
    }

    async fn last_log_id(&self) -> Option<LogId<NodeId>> {
        let mut log = self.log.lock().expect("elector lock").clone()?;
        log.get_log_state().await.ok()?.last_log_id
    }

    /// Let go of the log's database (raft is shut down).
    pub fn close(&self) {
        self.log.lock().expect("elector lock").take();
    }

    /// A random election timeout past the lease (so the voters asked have
    /// let go of the old leader too).
    fn timeout(&self) -> Duration {
        self.lease + Duration::from_millis(20) + jitter()
    }
}

fn jitter() -> Duration {
    Duration::from_millis(rand::random::<u64>() % JITTER_MS)
}
