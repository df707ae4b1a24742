//! Who the node API lets in, over real TLS on loopback with a real raft
//! store: callers are judged by the certificate they present.

use super::ClusterService;
use crate::api::cluster_pb::{
    cluster_client::ClusterClient, joining_client::JoiningClient, Blob, JoinRequest,
};
use crate::net::{self, Tls};
use crate::pki::{self, RootCa};
use crate::store::Store;
use crate::types::NodeRole;
use std::sync::Arc;
use std::time::Duration;

fn credentials(ca: &RootCa, role: NodeRole, cluster: &str) -> Arc<Tls> {
    let (key, csr) = pki::new_key_and_csr().unwrap();
    let cert = ca
        .issue(&csr, "node1", role, cluster, Duration::from_secs(600))
        .unwrap();
    Tls::new(&ca.cert_pem, &cert, &key).unwrap()
}

/// A manager serving the Cluster service on a loopback port.
async fn serve(dir: &std::path::Path, tls: Arc<Tls>) -> String {
    let store = Store::open(dir, 1).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    store.bootstrap(&addr).await.unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(ClusterService::new(
            store.clone(),
            crate::keyring::Keyring::load(dir).unwrap(),
        ))
        .add_service(crate::raft::service::RaftService::new(
            store.raft().clone(),
            store.elector().clone(),
        ))
        .add_service(super::JoinService::new(
            store,
            crate::keyring::Keyring::load(dir).unwrap(),
        ))
        .serve_with_incoming(net::incoming(
            listener,
            tls.server_config(),
            tokio_util::sync::CancellationToken::new(),
        ));
    tokio::spawn(server);
    addr
}

async fn propose(addr: &str, config: Arc<rustls::ClientConfig>) -> Result<(), String> {
    let channel = net::channel(addr, config).unwrap();
    ClusterClient::new(channel)
        .propose(Blob {
            json: b"{}".to_vec(),
        })
        .await
        .map(|_| ())
        .map_err(|s| match std::error::Error::source(&s) {
            Some(e) => format!("{}: {}", s.message(), net::error_chain(e)),
            None => s.message().to_string(),
        })
}

#[tokio::test]
async fn only_manager_certificates_of_this_cluster_reach_manager_apis() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RootCa::create("c1").unwrap();
    let addr = serve(dir.path(), credentials(&ca, NodeRole::Manager, "c1")).await;

    // A manager of this cluster gets through to the command decoder.
    let manager = credentials(&ca, NodeRole::Manager, "c1");
    let err = propose(&addr, manager.client_config()).await.unwrap_err();
    assert!(err.contains("undecodable command"), "{err}");

    // A worker of this cluster is refused by role.
    let worker = credentials(&ca, NodeRole::Worker, "c1");
    let err = propose(&addr, worker.client_config()).await.unwrap_err();
    assert!(
        err.contains("worker certificate; this API is for managers only"),
        "{err}"
    );

    // A manager certificate from another cluster's CA fails the handshake.
    let other = RootCa::create("c2").unwrap();
    let mut foreign = (*credentials(&other, NodeRole::Manager, "c2").client_config()).clone();
    // Trust our server, so only the client certificate can be at fault.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pki::pem_to_der(&ca.cert_pem, "ca").unwrap().into())
        .unwrap();
    let fixed = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(foreign.client_auth_cert_resolver.clone());
    foreign = fixed;
    foreign.alpn_protocols = vec![b"h2".to_vec()];
    let err = propose(&addr, Arc::new(foreign)).await.unwrap_err();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("alert"),
        "{err}"
    );

    // No certificate at all: only Join is open.
    let err = propose(&addr, net::pinned_client_config(&ca.digest().unwrap()))
        .await
        .unwrap_err();
    assert!(err.contains("presented no node certificate"), "{err}");

    // A joiner pinned to another CA's digest refuses this server.
    let err = propose(&addr, net::pinned_client_config(&other.digest().unwrap()))
        .await
        .unwrap_err();
    assert!(err.contains("does not match the token"), "{err}");
}

#[tokio::test]
async fn a_caller_without_a_certificate_is_refused_before_its_message_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RootCa::create("c1").unwrap();
    let addr = serve(dir.path(), credentials(&ca, NodeRole::Manager, "c1")).await;
    let anonymous = || net::pinned_client_config(&ca.digest().unwrap());

    // 20 MB to Propose, past the service's own limit: the gate answers
    // first, so the body is never buffered.
    let channel = net::channel(&addr, anonymous()).unwrap();
    let err = ClusterClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .propose(Blob {
            json: vec![b' '; 20 << 20],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("presented no node certificate"),
        "{err:?}"
    );

    // Join is open without one, but takes small messages only.
    let channel = net::channel(&addr, anonymous()).unwrap();
    let err = JoiningClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .join(JoinRequest {
            csr_pem: "x".repeat(1 << 20),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("message length too large"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_worker_certificate_cannot_speak_raft() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RootCa::create("c1").unwrap();
    let addr = serve(dir.path(), credentials(&ca, NodeRole::Manager, "c1")).await;
    let worker = credentials(&ca, NodeRole::Worker, "c1");
    let channel = net::channel(&addr, worker.client_config()).unwrap();
    let err = crate::api::cluster_pb::raft_client::RaftClient::new(channel)
        .vote(Blob {
            json: b"{}".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("worker certificate"), "{err:?}");
}
