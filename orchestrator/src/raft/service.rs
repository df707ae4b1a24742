//! The server side of raft's transport: the `Raft` gRPC service, for callers
//! holding a manager certificate only, each speaking as the raft member its
//! certificate's node ID names.

use super::elector::{Elector, PreVote};
use super::{NodeId, Raft, TypeConfig};
use crate::api::cluster_pb::{raft_server, Blob};
use crate::cluster::access::{self, Gate, Need};
use crate::net::Peer;
use crate::store::Store;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

pub struct RaftService {
    raft: Raft,
    elector: Arc<Elector>,
    store: Store,
}

/// Largest raft message: a snapshot of a big cluster's whole state. Only
/// managers get as far as sending one: the gate refuses anyone else
/// before the body is read.
const MAX_RAFT_MESSAGE: usize = 1 << 30;

impl RaftService {
    pub fn new(store: &Store) -> InterceptedService<raft_server::RaftServer<RaftService>, Gate> {
        let server = raft_server::RaftServer::new(RaftService {
            raft: store.raft().clone(),
            elector: store.elector().clone(),
            store: store.clone(),
        })
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
        InterceptedService::new(server, Gate::new(store.clone(), Need::ManagerCert))
    }
}

/// The raft member a message speaks for.
trait Sender {
    fn sender(&self) -> Option<NodeId>;
}

impl Sender for AppendEntriesRequest<TypeConfig> {
    fn sender(&self) -> Option<NodeId> {
        self.vote.leader_id().voted_for()
    }
}

impl Sender for VoteRequest<NodeId> {
    fn sender(&self) -> Option<NodeId> {
        self.vote.leader_id().voted_for()
    }
}

impl Sender for InstallSnapshotRequest<TypeConfig> {
    fn sender(&self) -> Option<NodeId> {
        self.vote.leader_id().voted_for()
    }
}

impl Sender for PreVote {
    fn sender(&self) -> Option<NodeId> {
        Some(self.candidate)
    }
}

/// The message, if it speaks for the raft member its sender's certificate
/// names: no manager can send as another (and so stand in for its vote
/// or its leadership).
fn decode<T: DeserializeOwned + Sender>(req: Request<Blob>) -> Result<T, Status> {
    let who = Peer::require(&req, true)?;
    let msg: T = serde_json::from_slice(&req.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
    let own = who.raft_id();
    match msg.sender() {
        Some(id) if id == own => Ok(msg),
        other => Err(Status::permission_denied(format!(
            "node {} (raft ID {own}) sent a raft message as raft member {}",
            who.node_id,
            other.map_or("none".to_string(), |i| i.to_string())
        ))),
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Response<Blob>, Status> {
    Ok(Response::new(Blob {
        json: serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))?,
    }))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        encode(&self.raft.append_entries(decode(req)?).await)
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        access::caller(&req, &self.store, Need::Candidate)?;
        encode(&self.raft.vote(decode(req)?).await)
    }

    async fn install_snapshot(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        encode(&self.raft.install_snapshot(decode(req)?).await)
    }

    async fn pre_vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        access::caller(&req, &self.store, Need::Candidate)?;
        encode(&self.elector.answer(decode(req)?).await)
    }
}
