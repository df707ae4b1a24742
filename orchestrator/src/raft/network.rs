//! Raft RPC transport between managers: openraft's messages as JSON over the
//! `Raft` gRPC service, on mutual-TLS channels shared through `Peers`.

use super::{NodeId, TypeConfig};
use crate::api::cluster_pb::{raft_client::RaftClient, Blob};
use crate::net::{self, Tls};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Connections to the other managers, shared by raft and write forwarding,
/// and a record of which peers answered lately (for "no quorum" errors).
#[derive(Default)]
pub struct Peers {
    tls: RwLock<Option<Arc<Tls>>>,
    channels: Mutex<HashMap<String, Channel>>,
    answered: Mutex<HashMap<NodeId, Instant>>,
    /// Counts `reconnect` calls, so that long-lived streams (the agent's
    /// dispatcher session) start again on a new connection too.
    reconnects: tokio::sync::watch::Sender<u64>,
}

impl Peers {
    /// Install this node's credentials (after init or join) or new ones.
    pub fn set_tls(&self, tls: Arc<Tls>) {
        *self.tls.write().expect("peers lock") = Some(tls);
        self.reconnect();
    }

    /// Drop every cached connection; new ones handshake with the current
    /// certificate. Streams on the old ones are told to start again.
    pub fn reconnect(&self) {
        self.channels.lock().expect("peers lock").clear();
        self.reconnects.send_modify(|n| *n += 1);
    }

    /// Changes whenever `reconnect` is called.
    pub fn reconnects(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reconnects.subscribe()
    }

    pub fn tls(&self) -> Option<Arc<Tls>> {
        self.tls.read().expect("peers lock").clone()
    }

    /// A (lazily connecting) channel to the manager at `addr`.
    pub fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().expect("peers lock");
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let tls = self
            .tls()
            .ok_or_else(|| "this node has no cluster certificate yet".to_string())?;
        let c = net::channel(addr, tls.client_config()).map_err(|e| format!("{addr}: {e}"))?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub fn record(&self, peer: NodeId, ok: bool) {
        let mut a = self.answered.lock().expect("peers lock");
        if ok {
            a.insert(peer, Instant::now());
        } else {
            a.remove(&peer);
        }
    }

    /// Whether `peer` answered at or after `since`.
    pub fn answered_since(&self, peer: NodeId, since: Instant) -> bool {
        self.answered
            .lock()
            .expect("peers lock")
            .get(&peer)
            .is_some_and(|t| *t >= since)
    }

    /// Whether `peer` answered within `window`.
    pub fn answered_within(&self, peer: NodeId, window: Duration) -> bool {
        self.answered
            .lock()
            .expect("peers lock")
            .get(&peer)
            .is_some_and(|t| t.elapsed() <= window)
    }
}

pub struct Network {
    pub peers: Arc<Peers>,
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
        }
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |msg: String| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                "raft peer {} at {}: {msg}",
                self.target, self.addr
            ))))
        };
        let channel = self.peers.channel(&self.addr).map_err(unreachable)?;
        let mut client = RaftClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let body = Blob {
            json: serde_json::to_vec(req).expect("raft messages serialize"),
        };
        let call = async {
            match rpc {
                Rpc::Append => client.append_entries(body).await,
                Rpc::Vote => client.vote(body).await,
                Rpc::Snapshot => client.install_snapshot(body).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                self.peers.record(self.target, false);
                return Err(unreachable(format!(
                    "{}: {}",
                    status.code(),
                    status.message()
                )));
            }
            Err(_) => {
                self.peers.record(self.target, false);
                return Err(unreachable(format!("no answer within {ttl:?}")));
            }
        };
        self.peers.record(self.target, true);
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.json)
            .map_err(|e| unreachable(format!("undecodable reply: {e}")))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// The most bytes of entries one AppendEntries carries (one entry is sent
/// whatever its size). openraft gives an append one heartbeat interval
/// (100 ms) and, when it times out, sends the same again: a follower far
/// behind, sent hundreds of large entries at once, would time out every
/// time and never catch up, and with one manager down the swarm would
/// have no quorum. A prefix answered with PartialSuccess lets openraft go
/// on from where it got.
const APPEND_BYTES: usize = 512 << 10;

/// How many of `entries`, from the first, fit in `budget` bytes of JSON
/// (at least one). Each is measured, not stored: only what is sent is
/// encoded twice.
fn entries_within<T: Serialize>(entries: &[T], budget: usize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    for (i, entry) in entries.iter().enumerate() {
        serde_json::to_writer(&mut count, entry).expect("raft entries serialize");
        if count.0 > budget {
            return i.max(1);
        }
    }
    entries.len()
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let total = rpc.entries.len();
        rpc.entries
            .truncate(entries_within(&rpc.entries, APPEND_BYTES));
        let sent = rpc.entries.last().map(|e| e.log_id);
        match self.call(Rpc::Append, &rpc, option.hard_ttl()).await? {
            // The follower took the prefix: openraft goes on from there.
            AppendEntriesResponse::Success if rpc.entries.len() < total => {
                Ok(AppendEntriesResponse::PartialSuccess(sent))
            }
            other => Ok(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::entries_within;

    #[test]
    fn an_append_carries_the_entries_that_fit_and_always_one() {
        // Each "xxxx…" string is its length plus two quote bytes in JSON.
        let entries: Vec<String> = (0..10).map(|_| "x".repeat(98)).collect();
        assert_eq!(entries_within(&entries, 10_000), 10, "all fit");
        assert_eq!(entries_within(&entries, 1_000), 10, "exactly");
        assert_eq!(entries_within(&entries, 999), 9);
        assert_eq!(entries_within(&entries, 250), 2);
        assert_eq!(entries_within(&entries, 10), 1, "one, however large");
        assert_eq!(entries_within(&Vec::<String>::new(), 10), 0);
    }
}
