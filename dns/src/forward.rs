//! Forwarding names that are not the cluster's to the node's resolvers:
//! the query as it came, to each upstream in turn, over UDP.

use hickory_proto::op::Message;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The first upstream answer to `query`, or `None` when there is no
/// upstream or none answered. An unreachable upstream fails at once (no
/// route), so a node without resolvers answers without a stall.
pub async fn ask(upstreams: &[SocketAddr], query: &[u8]) -> Option<Message> {
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => match Message::from_vec(&buf[..n]) {
                Ok(m) => return Some(m),
                Err(e) => {
                    tracing::debug!(upstream = %up, error = %e, "undecodable upstream answer")
                }
            },
            Ok(Err(e)) => tracing::debug!(upstream = %up, error = %e, "upstream unreachable"),
            Err(_) => tracing::debug!(upstream = %up, "upstream timed out"),
        }
    }
    None
}
