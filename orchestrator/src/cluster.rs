//! The `Cluster` service managers serve to other nodes: joining with a
//! token, forwarding writes to the leader, adding a joined manager to raft,
//! and renewing certificates.

pub mod certs;
pub mod join;
pub mod membership;

use crate::api::cluster_pb::{
    cluster_client::ClusterClient, cluster_server, joining_server, AddVoterRequest, Blob, Empty,
    JoinRequest, JoinResponse, ProposeResponse, RenewRequest, RenewResponse, SecretsKeyResponse,
};
use crate::dispatcher::manager_addrs;
use crate::keyring::Keyring;
use crate::net::Gate;
use crate::net::Peer;
use crate::pki::token::secrets_match;
use crate::state::Command;
use crate::store::{Store, StoreError};
use crate::types::{now_ms, Availability, Meta, Node, NodeRole, NodeState};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

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
        let server = cluster_server::ClusterServer::new(ClusterService { store, keyring })
            .max_decoding_message_size(MAX_CLUSTER_MESSAGE);
        InterceptedService::new(server, crate::net::nodes_only)
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
    /// The caller must be the manager node that owns `raft_id`.
    fn check_voter(&self, node_id: &str, raft_id: u64) -> Result<(), Status> {
        let st = self.store.state();
        let known = st
            .nodes
            .get(node_id)
            .is_some_and(|n| n.raft_id == raft_id && n.role == NodeRole::Manager);
        if known {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "node {node_id} is not a manager with raft ID {raft_id}"
            )))
        }
    }

    fn leader_client(&self) -> Result<ClusterClient<tonic::transport::Channel>, Status> {
        let leader = self
            .store
            .leader_addr()
            .ok_or_else(|| Status::unavailable("no leader is elected"))?;
        let channel = self
            .store
            .peers()
            .channel(&leader)
            .map_err(Status::unavailable)?;
        Ok(ClusterClient::new(channel))
    }
}

/// Whether a joiner's chosen IDs may enter: a well-formed node ID, and
/// neither it nor its raft ID already taken (a reused raft ID would let
/// the joiner stand in for another manager's vote).
fn admit(st: &crate::state::State, node_id: &str, raft_id: u64) -> Result<(), Status> {
    let valid_id = !node_id.is_empty()
        && node_id.len() <= 64
        && node_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid_id {
        return Err(Status::invalid_argument(format!(
            "node ID {node_id:?} is not 1-64 lowercase letters and digits"
        )));
    }
    if st.nodes.contains_key(node_id) {
        return Err(Status::already_exists(format!(
            "node ID {node_id} is already a member of this swarm; a node that left must start with a fresh data dir"
        )));
    }
    if raft_id == 0 {
        return Err(Status::invalid_argument(
            "raft ID 0 is not a valid member ID",
        ));
    }
    if let Some(n) = st.nodes.values().find(|n| n.raft_id == raft_id) {
        return Err(Status::already_exists(format!(
            "raft ID {raft_id} is already node {}'s; start the joiner with a fresh data dir",
            n.id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod admit_tests {
    use super::*;

    #[test]
    fn a_joiner_may_not_take_a_members_node_or_raft_id() {
        let mut n1 = crate::manager::testutil::node("n1");
        n1.raft_id = 7;
        let st = crate::manager::testutil::state(&[n1], &[], &[]);
        assert!(admit(&st, "n2", 8).is_ok());
        let taken = admit(&st, "n1", 8).unwrap_err();
        assert_eq!(taken.code(), tonic::Code::AlreadyExists);
        let vote = admit(&st, "n2", 7).unwrap_err();
        assert!(
            vote.message().contains("raft ID 7 is already node n1's"),
            "{vote:?}"
        );
        assert!(admit(&st, "N2!", 8).is_err());
        assert!(admit(&st, "n2", 0).is_err());
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
        let role = if secrets_match(&req.secret, &cluster.manager_secret) {
            NodeRole::Manager
        } else if secrets_match(&req.secret, &cluster.worker_secret) {
            NodeRole::Worker
        } else {
            return Err(Status::permission_denied(
                "invalid join token: the secret does not match this swarm's worker or manager token (was it rotated?)",
            ));
        };
        let node_id = req.node_id.clone();
        admit(&st, &node_id, req.raft_id)?;
        let cert_pem = crate::pki::issue(cluster, &req.csr_pem, &node_id, role)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = now_ms();
        let node = Node {
            id: node_id.clone(),
            raft_id: req.raft_id,
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
        };
        self.store
            .write(Command::PutNode(node))
            .await
            .map_err(Status::from)?;
        tracing::info!(node = %node_id, hostname = %req.hostname, role = role.as_str(), "node joined");
        let mut managers = manager_addrs(&self.store.state());
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
            ca_pem: cluster.ca.cert_pem.clone(),
            role: role.as_str().into(),
            managers,
            secrets_key,
        }))
    }
}

#[tonic::async_trait]
impl cluster_server::Cluster for ClusterService {
    async fn propose(&self, req: Request<Blob>) -> Result<Response<ProposeResponse>, Status> {
        Peer::require(&req, true)?;
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
        let who = Peer::require(&req, true)?;
        let req = req.into_inner();
        self.check_voter(&who.node_id, req.raft_id)?;
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
        let who = Peer::require(&req, true)?;
        let req = req.into_inner();
        self.check_voter(&who.node_id, req.raft_id)?;
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
        let who = Peer::require(&req, false)?;
        let st = self.store.state();
        let cluster = st
            .cluster
            .as_ref()
            .ok_or_else(|| Status::unavailable("this manager is not part of a swarm"))?;
        let node = st.nodes.get(&who.node_id).ok_or_else(|| {
            Status::permission_denied(format!("node {} was removed from the swarm", who.node_id))
        })?;
        let cert_pem = crate::pki::issue(cluster, &req.get_ref().csr_pem, &node.id, node.role)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(RenewResponse {
            cert_pem,
            role: node.role.as_str().into(),
        }))
    }

    async fn secrets_key(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<SecretsKeyResponse>, Status> {
        let who = Peer::require(&req, true)?;
        // The certificate's role can be stale (a demoted manager keeps its
        // certificate until renewal): the state decides.
        let manager = self
            .store
            .state()
            .nodes
            .get(&who.node_id)
            .is_some_and(|n| n.role == NodeRole::Manager);
        if !manager {
            return Err(Status::permission_denied(format!(
                "node {} is not a manager",
                who.node_id
            )));
        }
        let key = self.keyring.export().ok_or_else(|| {
            Status::unavailable("this manager has no secrets key either; ask another")
        })?;
        Ok(Response::new(SecretsKeyResponse { key }))
    }
}

#[cfg(test)]
#[path = "cluster/tls_tests.rs"]
mod tls_tests;
