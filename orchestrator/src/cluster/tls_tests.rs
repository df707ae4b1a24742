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
    credentials_of(ca, "node1", role, cluster)
}

fn credentials_of(ca: &RootCa, node: &str, role: NodeRole, cluster: &str) -> Arc<Tls> {
    let (key, csr) = pki::new_key_and_csr().unwrap();
    let cert = ca
        .issue(&csr, node, role, cluster, Duration::from_secs(600))
        .unwrap();
    Tls::new(&ca.cert_pem, &cert, &key).unwrap()
}

/// A manager serving the node API on a loopback port.
struct Served {
    addr: String,
    store: Store,
    conns: net::Connections,
}

/// A one-manager swarm (`node1`, cluster `c1` of `ca`) whose state also
/// knows a manager `m2` and a worker `w1`.
async fn serve(dir: &std::path::Path, ca: &RootCa, tls: Arc<Tls>) -> Served {
    let store = Store::open(dir, pki::raft_id_of("node1")).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    store.bootstrap(&addr).await.unwrap();
    store
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let record = |id: &str, role| {
        let mut n = crate::manager::testutil::node(id);
        (n.raft_id, n.role) = (pki::raft_id_of(id), role);
        n
    };
    let keyring = crate::keyring::Keyring::load(dir).unwrap();
    keyring.create().unwrap();
    use crate::keyring::Field;
    let seal = |field, plain: &str| keyring.seal_field(field, plain.as_bytes()).unwrap();
    let cluster = crate::types::ClusterInfo {
        id: "c1".into(),
        created_at: 0,
        ca_cert_pem: ca.cert_pem.clone(),
        ca_key: seal(Field::CaKey, &ca.key_pem),
        worker_secret: seal(Field::JoinSecret(NodeRole::Worker), &"w".repeat(25)),
        manager_secret: seal(Field::JoinSecret(NodeRole::Manager), &"m".repeat(25)),
        unlock_key: None,
        cert_expiry_ms: 600_000,
        heartbeat_ms: 1000,
        addr_pool: crate::types::default_addr_pool(),
        pool_mask_len: 24,
        rotation: None,
    };
    store
        .write(crate::state::Command::InitCluster {
            cluster,
            node: record("node1", NodeRole::Manager),
            ingress_id: "ingress".into(),
        })
        .await
        .unwrap();
    for (id, role) in [("m2", NodeRole::Manager), ("w1", NodeRole::Worker)] {
        store
            .write(crate::state::Command::PutNode(record(id, role)))
            .await
            .unwrap();
    }
    let conns = net::Connections::default();
    let server = tonic::transport::Server::builder()
        .add_service(ClusterService::new(store.clone(), keyring.clone()))
        .add_service(crate::raft::service::RaftService::new(&store))
        .add_service(super::JoinService::new(store.clone(), keyring))
        .serve_with_incoming(net::incoming(
            listener,
            tls.server_config(),
            conns.clone(),
            tokio_util::sync::CancellationToken::new(),
        ));
    tokio::spawn(server);
    Served { addr, store, conns }
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
    let addr = serve(dir.path(), &ca, credentials(&ca, NodeRole::Manager, "c1"))
        .await
        .addr;

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
    let err = propose(
        &addr,
        net::pinned_client_config(&pki::ca_digest(&ca.cert_pem).unwrap()),
    )
    .await
    .unwrap_err();
    assert!(err.contains("presented no node certificate"), "{err}");

    // A joiner pinned to another CA's digest refuses this server.
    let err = propose(
        &addr,
        net::pinned_client_config(&pki::ca_digest(&other.cert_pem).unwrap()),
    )
    .await
    .unwrap_err();
    assert!(err.contains("does not match the token"), "{err}");
}

#[tokio::test]
async fn a_caller_without_a_certificate_is_refused_before_its_message_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RootCa::create("c1").unwrap();
    let addr = serve(dir.path(), &ca, credentials(&ca, NodeRole::Manager, "c1"))
        .await
        .addr;
    let anonymous = || net::pinned_client_config(&pki::ca_digest(&ca.cert_pem).unwrap());

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
    let addr = serve(dir.path(), &ca, credentials(&ca, NodeRole::Manager, "c1"))
        .await
        .addr;
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

fn raft_client(
    addr: &str,
    tls: &Arc<Tls>,
) -> crate::api::cluster_pb::raft_client::RaftClient<tonic::transport::Channel> {
    crate::api::cluster_pb::raft_client::RaftClient::new(
        net::channel(addr, tls.client_config()).unwrap(),
    )
}

/// A vote request as raft member `candidate`, for a term long past (so the
/// leader refuses it and keeps leading).
fn vote_as(candidate: u64) -> Blob {
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(0, candidate), None);
    Blob {
        json: serde_json::to_vec(&vote).unwrap(),
    }
}

#[tokio::test]
async fn the_state_decides_who_may_call_not_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RootCa::create("c1").unwrap();
    let served = serve(dir.path(), &ca, credentials(&ca, NodeRole::Manager, "c1")).await;
    let addr = &served.addr;
    let voter = |raft_id| crate::api::cluster_pb::AddVoterRequest {
        raft_id,
        addr: "127.0.0.1:1".into(),
    };

    // A worker may not add or remove a vote, nor speak raft.
    let worker = credentials_of(&ca, "w1", NodeRole::Worker, "c1");
    let mut cluster = ClusterClient::new(net::channel(addr, worker.client_config()).unwrap());
    for call in [
        cluster.add_voter(voter(pki::raft_id_of("w1"))).await,
        cluster.remove_voter(voter(pki::raft_id_of("w1"))).await,
    ] {
        let err = call.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    }
    // Renewing, it gets a worker certificate, whatever its CSR asks.
    let (_, csr) = pki::new_key_and_csr().unwrap();
    let renewed = cluster
        .renew(crate::api::cluster_pb::RenewRequest { csr_pem: csr })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.role, "worker");

    // A manager adds only its own vote: the raft ID its node ID gives.
    let m2 = credentials_of(&ca, "m2", NodeRole::Manager, "c1");
    let err = ClusterClient::new(net::channel(addr, m2.client_config()).unwrap())
        .add_voter(voter(pki::raft_id_of("node1")))
        .await
        .unwrap_err();
    assert!(err.message().contains("speaks as raft ID"), "{err:?}");

    // Nor may it speak raft as another member.
    let err = raft_client(addr, &m2)
        .vote(vote_as(pki::raft_id_of("node1")))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("sent a raft message as raft member"),
        "{err:?}"
    );
    raft_client(addr, &m2)
        .vote(vote_as(pki::raft_id_of("m2")))
        .await
        .expect("a manager votes as itself");

    // Demoted, its manager certificate no longer proposes or speaks raft.
    served
        .store
        .write(crate::state::Command::UpdateNode {
            id: "m2".into(),
            expected_version: served.store.state().nodes["m2"].meta.version,
            availability: crate::types::Availability::Active,
            labels: Default::default(),
            role: NodeRole::Worker,
        })
        .await
        .unwrap();
    let err = propose(addr, m2.client_config()).await.unwrap_err();
    assert!(err.contains("m2 is no longer a manager"), "{err}");
    let err = raft_client(addr, &m2)
        .vote(vote_as(pki::raft_id_of("m2")))
        .await
        .unwrap_err();
    assert!(err.message().contains("no longer a manager"), "{err:?}");

    // Removed, its certificate is refused everywhere, for good.
    served
        .store
        .write(crate::state::Command::RemoveNode { id: "w1".into() })
        .await
        .unwrap();
    let mut cluster = ClusterClient::new(net::channel(addr, worker.client_config()).unwrap());
    let (_, csr) = pki::new_key_and_csr().unwrap();
    let err = cluster
        .renew(crate::api::cluster_pb::RenewRequest { csr_pem: csr })
        .await
        .unwrap_err();
    assert!(err.message().contains("w1 was removed"), "{err:?}");
}

#[tokio::test]
async fn the_ca_names_joiners_and_no_two_alike() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RootCa::create("c1").unwrap();
    let served = serve(dir.path(), &ca, credentials(&ca, NodeRole::Manager, "c1")).await;
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let (_, csr) = pki::new_key_and_csr().unwrap();
        let channel = net::channel(
            &served.addr,
            net::pinned_client_config(&pki::ca_digest(&ca.cert_pem).unwrap()),
        )
        .unwrap();
        let resp = JoiningClient::new(channel)
            .join(JoinRequest {
                secret: "w".repeat(25),
                csr_pem: csr,
                hostname: "joiner".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let cert = pki::Identity::of(&pki::pem_to_der(&resp.cert_pem, "cert").unwrap()).unwrap();
        assert_eq!(cert.node_id, resp.node_id);
        let record = &served.store.state().nodes[&resp.node_id];
        assert_eq!(record.raft_id, pki::raft_id_of(&resp.node_id));
        assert!(ids.insert(resp.node_id));
    }
    assert_eq!(ids.len(), 2, "two joins, two node IDs");
}

#[tokio::test]
async fn a_nodes_connections_are_cut_when_it_is_judged_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RootCa::create("c1").unwrap();
    let served = serve(dir.path(), &ca, credentials(&ca, NodeRole::Manager, "c1")).await;
    let m2 = credentials_of(&ca, "m2", NodeRole::Manager, "c1");
    let mut client = raft_client(&served.addr, &m2);
    client.vote(vote_as(pki::raft_id_of("m2"))).await.unwrap();
    assert_eq!(served.conns.cut("m2"), 1, "one open connection");
    assert_eq!(served.conns.cut("m2"), 0, "cut connections are gone");
    // The client reconnects, and is judged again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = client.vote(vote_as(pki::raft_id_of("m2"))).await {
        assert!(
            std::time::Instant::now() < deadline,
            "no reconnection: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
