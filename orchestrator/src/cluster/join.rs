//! The joiner's side of `swarm join`: reach a manager, check that its CA is
//! the one the token names (before the secret leaves this node), and trade
//! the token and a CSR for a node certificate.

use crate::api::cluster_pb::{joining_client::JoiningClient, JoinRequest, JoinResponse};
use crate::net;
use crate::pki::token::JoinToken;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot reach manager {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("manager {addr} refused the join: {reason}")]
    Refused { addr: String, reason: String },
}

/// How long a join may take in all.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn request(
    token: &JoinToken,
    remote: &str,
    req: JoinRequest,
) -> Result<JoinResponse, JoinError> {
    let addr = net::with_default_port(remote);
    let unreachable = |reason: String| JoinError::Unreachable {
        addr: addr.clone(),
        reason,
    };
    let channel = net::channel(&addr, net::pinned_client_config(&token.ca_digest))
        .map_err(|e| unreachable(net::error_chain(&e)))?;
    let mut client = JoiningClient::new(channel);
    let call = client.join(JoinRequest {
        secret: token.secret.clone(),
        ..req
    });
    match tokio::time::timeout(JOIN_TIMEOUT, call).await {
        Err(_) => Err(unreachable(format!("no answer within {JOIN_TIMEOUT:?}"))),
        Ok(Ok(r)) => Ok(r.into_inner()),
        // Handshake failures (such as a CA that does not match the token)
        // surface as transport errors; their cause chain says what happened.
        Ok(Err(s)) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unknown => {
            let detail = std::error::Error::source(&s)
                .map(net::error_chain)
                .unwrap_or_else(|| s.message().to_string());
            Err(unreachable(detail))
        }
        Ok(Err(s)) => Err(JoinError::Refused {
            addr,
            reason: s.message().to_string(),
        }),
    }
}
