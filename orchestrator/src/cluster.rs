//! The `Cluster` service managers serve to other nodes: joining with a
//! token, forwarding writes to the leader, adding a joined manager to raft,
//! and renewing certificates.

pub mod access;
pub mod certs;
pub mod join;
pub mod membership;

use crate::api::cluster_pb::{
    cluster_client::ClusterClient, cluster_server, joining_server, AddVoterRequest, Blob, Empty,
    JoinRequest, JoinResponse, ProposeResponse, RenewRequest, RenewResponse, SecretsKeyResponse,
};
use crate::keyring::{Field, Keyring};
use crate::pki::token::secrets_match;
use crate::state::Command;
use crate::store::{Store, StoreError};
use crate::types::{now_ms, Availability, Meta, Millis, Node, NodeRole, NodeState};
use access::{Gate, Need};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

/// How far each manager's clock at `addrs` is from this node's: asked
/// over the node API, judged at the middle of the round trip (NTP's way).
pub async fn clock_skews(
    peers: &crate::raft::network::Peers,
    addrs: &[String],
) -> Vec<crate::api::pb::ManagerClock> {
    use crate::api::cluster_pb::cluster_client::ClusterClient;
    let mut out = Vec::new();
    for addr in addrs {
        let asked = async {
            let channel = peers.channel(addr)?;
            let t0 = crate::types::now_ns();
            let resp = ClusterClient::new(channel)
                .clock(Empty {})
                .await
                .map_err(|s| s.message().to_string())?;
            let t1 = crate::types::now_ns();
            let remote = resp.into_inner().unix_nanos;
            Ok::<_, String>((remote - (t0 + t1) / 2, t1 - t0))
        };
        let m = match tokio::time::timeout(std::time::Duration::from_secs(3), asked).await {
            Ok(Ok((offset, rtt))) => crate::api::pb::ManagerClock {
                addr: addr.clone(),
                offset_ms: offset / 1_000_000,
                rtt_ms: rtt / 1_000_000,
                error: String::new(),
            },
            Ok(Err(e)) => crate::api::pb::ManagerClock {
                addr: addr.clone(),
                error: e,
                ..Default::default()
            },
            Err(_) => crate::api::pb::ManagerClock {
                addr: addr.clone(),
                error: "no answer within 3 s".into(),
                ..Default::default()
            },
        };
        out.push(m);
    }
    out
}

pub struct ClusterService {
    store: Store,
    keyring: Keyring,
}

/// Largest message of the Cluster service: a forwarded command (a stack
/// deploy with its secrets is the biggest).
const MAX_CLUSTER_MESSAGE: usize = 16 << 20;
/// Largest join request: a CSR and a few short fields.
const MAX_JOIN_MESSAGE: usize = 64 << 10;

pub type ClusterServer = InterceptedService<cluster_server::ClusterServer<ClusterService>, Gate>;

impl ClusterService {
    /// The service, refusing callers without a node certificate before
    /// their message is read.
    pub fn new(store: Store, keyring: Keyring) -> ClusterServer {
        let server = cluster_server::ClusterServer::new(ClusterService {
            store: store.clone(),
            keyring,
        })
        .max_decoding_message_size(MAX_CLUSTER_MESSAGE);
        InterceptedService::new(server, Gate::new(store, Need::Node))
    }
}

/// `Join`, the one call open without a certificate.
pub struct JoinService {
    store: Store,
    keyring: Keyring,
}

impl JoinService {
    pub fn new(store: Store, keyring: Keyring) -> joining_server::JoiningServer<JoinService> {
        joining_server::JoiningServer::new(JoinService { store, keyring })
            .max_decoding_message_size(MAX_JOIN_MESSAGE)
    }
}

impl ClusterService {
    /// The caller may add or remove only its own vote: the raft ID its
    /// certificate's node ID gives.
    fn check_voter(who: &crate::pki::Identity, raft_id: u64) -> Result<(), Status> {
        if raft_id == who.raft_id() {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "node {} speaks as raft ID {}, not {raft_id}",
            who.node_id,
            who.raft_id()
        )))
    }

    fn leader_client(&self) -> Result<ClusterClient<tonic::transport::Channel>, Status> {
        self.store.leader_client().map_err(Status::from)
    }
}

/// The record a join creates: what the joiner says about itself, under the
/// ID and the role the CA chose.
pub(crate) fn joined_node(req: &JoinRequest, id: String, role: NodeRole, now: Millis) -> Node {
    Node {
        raft_id: crate::pki::raft_id_of(&id),
        id,
        hostname: req.hostname.clone(),
        role,
        availability: Availability::Active,
        // READY once its agent's session starts beating.
        state: NodeState::Unknown,
        addr: req.addr.clone(),
        engine_version: req.engine_version.clone(),
        nano_cpus: req.nano_cpus,
        memory_bytes: req.memory_bytes,
        labels: Default::default(),
        gateway_subnet: req.gateway_subnet.parse().ok(),
        attachments: Vec::new(),
        meta: Meta::new(now),
    }
}

/// A new node ID for a joiner: fresh, never a removed node's, and with a
/// raft ID no member has (a reused raft ID would stand in for another
/// manager's vote). The joiner has no say in either.
pub(crate) fn assign_node_id(st: &crate::state::State) -> String {
    loop {
        let id = crate::types::new_id();
        let raft_id = crate::pki::raft_id_of(&id);
        let taken = st.nodes.contains_key(&id)
            || st.removed.contains(&id)
            || st.nodes.values().any(|n| n.raft_id == raft_id);
        if !taken {
            return id;
        }
    }
}

#[tonic::async_trait]
impl joining_server::Joining for JoinService {
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = req.into_inner();
        let st = self.store.state();
        let cluster = st
            .cluster
            .as_ref()
            .ok_or_else(|| Status::unavailable("this manager is not part of a swarm yet"))?;
        let secret = |role| {
            self.keyring
                .open_text(Field::JoinSecret(role), cluster.join_secret(role))
                .map_err(|e| Status::unavailable(e.to_string()))
        };
        let role = if secrets_match(&req.secret, &secret(NodeRole::Manager)?) {
            NodeRole::Manager
        } else if secrets_match(&req.secret, &secret(NodeRole::Worker)?) {
            NodeRole::Worker
        } else {
            return Err(Status::permission_denied(
                "invalid join token: the secret does not match this swarm's worker or manager token (was it rotated?)",
            ));
        };
        let node_id = assign_node_id(&st);
        let cert_pem = crate::pki::issue(cluster, &self.keyring, &req.csr_pem, &node_id, role)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let node = joined_node(&req, node_id.clone(), role, now_ms());
        self.store
            .write(Command::PutNode(node))
            .await
            .map_err(Status::from)?;
        tracing::info!(node = %node_id, hostname = %req.hostname, role = role.as_str(), "node joined");
        let mut managers = self.store.state().manager_addrs();
        managers.sort();
        // Only a manager gets the key; the token's CA pin means it goes to
        // the holder of the manager token over a channel only it can read.
        let secrets_key = match role {
            NodeRole::Manager => self.keyring.export().unwrap_or_default(),
            NodeRole::Worker => Vec::new(),
        };
        Ok(Response::new(JoinResponse {
            node_id,
            cert_pem,
            ca_pem: cluster.trust_pem(),
            role: role.as_str().into(),
            managers,
            secrets_key,
        }))
    }
}

#[tonic::async_trait]
impl cluster_server::Cluster for ClusterService {
    async fn propose(&self, req: Request<Blob>) -> Result<Response<ProposeResponse>, Status> {
        access::caller(&req, &self.store, Need::Manager)?;
        let cmd: Command = serde_json::from_slice(&req.get_ref().json)
            .map_err(|e| Status::invalid_argument(format!("undecodable command: {e}")))?;
        if !self.store.is_leader() {
            return Err(crate::net::not_leader(self.store.leader_addr()));
        }
        match self.store.write(cmd).await {
            Ok(()) => Ok(Response::new(ProposeResponse {
                rejection_json: String::new(),
                applied_index: self.store.applied_index(),
            })),
            Err(StoreError::Rejected(r)) => Ok(Response::new(ProposeResponse {
                rejection_json: serde_json::to_string(&r).expect("rejections serialize"),
                applied_index: 0,
            })),
            Err(e) => Err(e.into()),
        }
    }

    async fn add_voter(&self, req: Request<AddVoterRequest>) -> Result<Response<Empty>, Status> {
        let who = access::caller(&req, &self.store, Need::Manager)?;
        let req = req.into_inner();
        Self::check_voter(&who, req.raft_id)?;
        if !self.store.is_leader() {
            // Membership changes run on the leader: pass it on.
            return self.leader_client()?.add_voter(req).await;
        }
        self.store
            .add_voter(req.raft_id, &req.addr)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(Empty {}))
    }

    async fn remove_voter(&self, req: Request<AddVoterRequest>) -> Result<Response<Empty>, Status> {
        let who = access::caller(&req, &self.store, Need::Manager)?;
        let req = req.into_inner();
        Self::check_voter(&who, req.raft_id)?;
        if !self.store.is_leader() {
            return self.leader_client()?.remove_voter(req).await;
        }
        // The quorum check waits for fresh heartbeat answers, so a write
        // proposed after it will commit; only a cut in the instant between
        // the two leaves the outcome open.
        let removed = async {
            self.store.quorum_without(req.raft_id).await?;
            self.store
                .write(Command::RemoveNode { id: who.node_id })
                .await?;
            // Drop the vote now rather than leave it to the membership
            // loop, so the caller knows raft no longer counts it.
            self.store.remove_voter(req.raft_id).await
        }
        .await;
        match removed {
            Ok(()) => {}
            Err(StoreError::NoQuorum {
                reachable,
                managers,
                needed,
            }) => {
                return Err(Status::failed_precondition(format!(
                    "leaving would break quorum: {reachable} of {managers} managers reachable, {needed} needed"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Response::new(Empty {}))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let who = crate::net::Peer::require(&req, false)?;
        let st = self.store.state();
        let cluster = st
            .cluster
            .as_ref()
            .ok_or_else(|| Status::unavailable("this manager is not part of a swarm"))?;
        let node = st.nodes.get(&who.node_id).ok_or_else(|| {
            Status::permission_denied(format!("node {} was removed from the swarm", who.node_id))
        })?;
        let cert_pem = crate::pki::issue(
            cluster,
            &self.keyring,
            &req.get_ref().csr_pem,
            &node.id,
            node.role,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(RenewResponse {
            cert_pem,
            role: node.role.as_str().into(),
        }))
    }

    async fn read_index(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<crate::api::cluster_pb::ReadIndexResponse>, Status> {
        access::caller(&req, &self.store, Need::Manager)?;
        if !self.store.is_leader() {
            return Err(crate::net::not_leader(self.store.leader_addr()));
        }
        let index = self.store.read_index().await.map_err(Status::from)?;
        Ok(Response::new(crate::api::cluster_pb::ReadIndexResponse {
            index,
        }))
    }

    async fn clock(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<crate::api::cluster_pb::ClockResponse>, Status> {
        access::caller(&req, &self.store, Need::Node)?;
        Ok(Response::new(crate::api::cluster_pb::ClockResponse {
            unix_nanos: crate::types::now_ns(),
        }))
    }

    async fn secrets_key(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<SecretsKeyResponse>, Status> {
        // The certificate's role can be stale (a demoted manager keeps its
        // certificate until renewal): the state decides.
        access::caller(&req, &self.store, Need::Manager)?;
        let key = self.keyring.export().ok_or_else(|| {
            Status::unavailable("this manager has no secrets key either; ask another")
        })?;
        Ok(Response::new(SecretsKeyResponse { key }))
    }
}

#[cfg(test)]
#[path = "cluster/tls_tests.rs"]
mod tls_tests;
