//! The server side of raft's transport: the `Raft` gRPC service, for callers
//! holding a manager certificate only.

use super::elector::Elector;
use super::Raft;
use crate::api::cluster_pb::{raft_server, Blob};
use crate::net::Peer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

pub struct RaftService {
    raft: Raft,
    elector: Arc<Elector>,
}

/// Largest raft message: a snapshot of a big cluster's whole state. Only
/// managers get as far as sending one: the gate refuses anyone else
/// before the body is read.
const MAX_RAFT_MESSAGE: usize = 1 << 30;

impl RaftService {
    pub fn new(
        raft: Raft,
        elector: Arc<Elector>,
    ) -> InterceptedService<raft_server::RaftServer<RaftService>, crate::net::Gate> {
        let server = raft_server::RaftServer::new(RaftService { raft, elector })
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE);
        InterceptedService::new(server, crate::net::managers_only)
    }
}

fn decode<T: DeserializeOwned>(req: Request<Blob>) -> Result<T, Status> {
    Peer::require(&req, true)?;
    serde_json::from_slice(&req.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
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
        encode(&self.raft.vote(decode(req)?).await)
    }

    async fn install_snapshot(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        encode(&self.raft.install_snapshot(decode(req)?).await)
    }

    async fn pre_vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        encode(&self.elector.answer(decode(req)?).await)
    }
}
