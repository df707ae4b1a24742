//! Node-to-node transport: gRPC over mutual TLS (rustls, TLS 1.3 only).
//!
//! Servers are always managers and present `[node cert, CA certs]`; clients
//! verify them against the cluster CA under the name `swarm-manager`, so a
//! worker's certificate cannot serve. Clients present their node certificate
//! when they have one; a joiner has none yet and is let in to the `Join` call
//! only. What a peer may call is decided per RPC from the identity its
//! certificate carries (`Peer`), which the handshake extracts once.
//!
//! The node's certificate is swapped in place on renewal: the resolvers read
//! the current one for every new handshake.

use crate::pki::{self, PkiError};
use crate::types::NodeRole;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{server::TlsStream, TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

/// The port managers listen on unless `--advertise-addr` names another.
pub const DEFAULT_PORT: u16 = 2377;
/// Name every manager certificate carries and every client checks.
const MANAGER_NAME: &str = "swarm-manager";
/// A connection attempt that takes longer is treated as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for any node-to-node call to start answering.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The answer of a manager that is not the raft leader: UNAVAILABLE, with
/// the leader's address in the status details (`NotLeader`), so callers
/// follow it without reading the message.
pub fn not_leader(leader_addr: Option<String>) -> tonic::Status {
    use prost::Message;
    let msg = match &leader_addr {
        Some(addr) => format!("not the leader; the leader is at {addr}"),
        None => "not the leader; no leader is elected".to_string(),
    };
    let details = crate::api::cluster_pb::NotLeader {
        leader_addr: leader_addr.unwrap_or_default(),
    };
    tonic::Status::with_details(
        tonic::Code::Unavailable,
        msg,
        details.encode_to_vec().into(),
    )
}

/// The leader's address that a `not_leader` status carries, if any.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    use prost::Message;
    if status.code() != tonic::Code::Unavailable || status.details().is_empty() {
        return None;
    }
    crate::api::cluster_pb::NotLeader::decode(status.details())
        .ok()
        .map(|n| n.leader_addr)
        .filter(|a| !a.is_empty())
}

/// `ADDR` or `ADDR:PORT` → `ADDR:PORT`, defaulting the port to 2377.
pub fn with_default_port(addr: &str) -> String {
    if addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

mod trust;

use trust::{Trust, Trusted};

/// This node's TLS credentials: the CA certificates it trusts (`trust.rs`)
/// and its current certificate and key. Both are swapped in place, on
/// renewal and during a CA rotation; every new handshake reads them.
#[derive(Debug)]
pub struct Tls {
    trust: RwLock<Arc<Trust>>,
    current: RwLock<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    identity: pki::Identity,
    cert_pem: String,
    /// The key's PEM, to write it again (sealed or not) on an autolock
    /// change.
    key_pem: String,
}

/// The node's key and certificate, shown with the CA certificates of
/// `trust` after it.
fn load_certified(
    trust: &Trust,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Arc<CertifiedKey>, pki::Identity), PkiError> {
    let bad = |what: &str, reason: String| PkiError::Invalid {
        what: what.into(),
        reason,
    };
    let cert = pki::pem_to_der(cert_pem, "node certificate")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| bad("node key", e.to_string()))?
        .ok_or_else(|| bad("node key", "no private key in PEM".into()))?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad("node key", e.to_string()))?;
    let identity = pki::Identity::of(&cert)?;
    let certified = CertifiedKey::new(shown(trust, CertificateDer::from(cert)), signer);
    // A key from one write and a certificate from another must not pass
    // as a pair: the handshake would fail later, and say less.
    certified.keys_match().map_err(|e| {
        bad(
            "node key",
            format!("it does not match the node certificate ({e})"),
        )
    })?;
    Ok((Arc::new(certified), identity))
}

fn shown(trust: &Trust, cert: CertificateDer<'static>) -> Vec<CertificateDer<'static>> {
    std::iter::once(cert)
        .chain(trust.chain.iter().cloned())
        .collect()
}

impl Tls {
    /// `ca_pem` holds the CA certificates to trust: one root, or during a
    /// rotation the bundle the cluster gives (`ClusterInfo::trust_pem`).
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<Tls>, PkiError> {
        let trust = Trust::of(ca_pem)?;
        let (key, identity) = load_certified(&trust, cert_pem, key_pem)?;
        Ok(Arc::new(Tls {
            trust: RwLock::new(Arc::new(trust)),
            current: RwLock::new(Current {
                key,
                identity,
                cert_pem: cert_pem.into(),
                key_pem: key_pem.into(),
            }),
        }))
    }

    fn trust(&self) -> Arc<Trust> {
        self.trust.read().expect("tls lock").clone()
    }

    /// Swap in a renewed (or role-changed) certificate.
    pub fn update(&self, cert_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let (key, identity) = load_certified(&self.trust(), cert_pem, key_pem)?;
        *self.current.write().expect("tls lock") = Current {
            key,
            identity,
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        };
        Ok(())
    }

    /// Trust the CA certificates of `ca_pem` from now on, and show them
    /// after the node's certificate. Whether they changed.
    pub fn set_trust(&self, ca_pem: &str) -> Result<bool, PkiError> {
        if self.trust().pem == ca_pem {
            return Ok(false);
        }
        let trust = Arc::new(Trust::of(ca_pem)?);
        let mut current = self.current.write().expect("tls lock");
        let cert = current.key.cert[0].clone();
        current.key = Arc::new(CertifiedKey::new(
            shown(&trust, cert),
            current.key.key.clone(),
        ));
        *self.trust.write().expect("tls lock") = trust;
        Ok(true)
    }

    pub fn cert_pem(&self) -> String {
        self.current.read().expect("tls lock").cert_pem.clone()
    }

    pub fn key_pem(&self) -> String {
        self.current.read().expect("tls lock").key_pem.clone()
    }

    pub fn identity(&self) -> pki::Identity {
        self.current.read().expect("tls lock").identity.clone()
    }

    /// The CA certificates this node trusts, PEM.
    pub fn ca_pem(&self) -> String {
        self.trust().pem.clone()
    }

    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 is supported by ring")
            .with_client_cert_verifier(Arc::new(Trusted(self.clone())))
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    /// A client config that checks the server is a manager of this cluster
    /// and presents this node's certificate.
    pub fn client_config(self: &Arc<Self>) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 is supported by ring")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Trusted(self.clone())))
            .with_client_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for Tls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().ok()?.key.clone())
    }
}

impl ResolvesClientCert for Tls {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().ok()?.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Client config for a joiner: it has no certificate and does not know the
/// CA yet, only the CA's digest from the token. It accepts a server whose
/// chain includes a CA with that digest and whose certificate that CA signed
/// for the manager name; anything else fails the handshake before a secret
/// is sent.
pub fn pinned_client_config(ca_digest: &str) -> Arc<ClientConfig> {
    let verifier = Arc::new(PinnedCa {
        digest: ca_digest.to_ascii_lowercase(),
        provider: provider(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported by ring")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
struct PinnedCa {
    digest: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| pki::cert_digest(c) == self.digest)
        else {
            let seen: Vec<String> = intermediates.iter().map(|c| pki::cert_digest(c)).collect();
            return Err(rustls::Error::General(format!(
                "the manager's CA does not match the token: the token expects CA digest {}, the manager presented {}; check that the token belongs to this cluster",
                self.digest,
                if seen.is_empty() { "no CA".to_string() } else { seen.join(", ") }
            )));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("the manager's CA: {e}")))?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        trust::verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        trust::verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        trust::schemes()
    }
}

/// A gRPC channel to the manager at `addr` over TLS. Lazy: it connects on
/// first use and reconnects after failures by itself.
pub fn channel(addr: &str, config: Arc<ClientConfig>) -> Result<Channel, tonic::transport::Error> {
    let addr = with_default_port(addr);
    // The timeout bounds each call until its response starts (a session's
    // stream may then run on): a peer behind a cut link must not hang a
    // caller until TCP gives up.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let (addr, config) = (addr.clone(), config.clone());
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(MANAGER_NAME).expect("valid DNS name");
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Who is on the other end of a server connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub remote: SocketAddr,
    /// `None` for a joiner that has no certificate yet.
    pub identity: Option<pki::Identity>,
}

impl Peer {
    /// The identity of a request's peer, refusing those without a
    /// certificate or (with `managers_only`) with a worker certificate.
    pub fn require<T>(
        req: &tonic::Request<T>,
        managers_only: bool,
    ) -> Result<pki::Identity, tonic::Status> {
        let peer = req
            .extensions()
            .get::<Peer>()
            .ok_or_else(|| tonic::Status::unauthenticated("no TLS peer information"))?;
        let id = peer.identity.clone().ok_or_else(|| {
            tonic::Status::unauthenticated(format!(
                "{} presented no node certificate; only `join` is open without one",
                peer.remote
            ))
        })?;
        if managers_only && id.role != NodeRole::Manager {
            return Err(tonic::Status::permission_denied(format!(
                "node {} has a worker certificate; this API is for managers only",
                id.node_id
            )));
        }
        Ok(id)
    }
}

/// Handshakes in progress at once; more wait for a free one.
const MAX_HANDSHAKES: usize = 64;
/// Open connections; a connection past it is closed at once.
const MAX_CONNECTIONS: usize = 4096;
/// Open connections without a node certificate (joiners), which may only
/// join and then reconnect with their certificate.
const MAX_ANONYMOUS: usize = 64;

/// A server-side TLS connection, with the peer identity tonic hands to
/// every request on it. It holds its place among the open connections
/// until it closes.
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
    /// Resolves when the connection is cut (`Connections::cut`); dropping
    /// the connection cancels its token, which unregisters it.
    cut: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    _unregister: tokio_util::sync::DropGuard,
    _slots: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl TlsConn {
    fn check_cut(&mut self, cx: &mut Context<'_>) -> Result<(), std::io::Error> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the peer's role changed or it was removed; it must reconnect",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

/// Open connections by the node their certificate names. A server judges
/// a peer by the certificate it showed at the handshake, so when a node's
/// role changes or it is removed, its connections are cut: it must
/// reconnect, and be judged again.
#[derive(Clone, Default)]
pub struct Connections(
    Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<CancellationToken>>>>,
);

impl Connections {
    fn register(&self, node: &str) -> CancellationToken {
        let token = CancellationToken::new();
        let mut all = self.0.lock().expect("connections lock");
        let open = all.entry(node.to_string()).or_default();
        open.retain(|t| !t.is_cancelled());
        open.push(token.clone());
        token
    }

    /// Close every open connection of `node`; how many there were.
    pub fn cut(&self, node: &str) -> usize {
        let open = self.0.lock().expect("connections lock").remove(node);
        let open: Vec<_> = open
            .into_iter()
            .flatten()
            .filter(|t| !t.is_cancelled())
            .collect();
        open.iter().for_each(CancellationToken::cancel);
        open.len()
    }
}

impl Connected for TlsConn {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accept TCP connections and complete TLS handshakes, each in its own task
/// so a slow or hostile client cannot hold up the others.
/// The listener closes when `stop` is cancelled, freeing the port. Each
/// connection with a certificate is registered in `conns`.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    conns: Connections,
    stop: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsConn, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let anonymous = Arc::new(tokio::sync::Semaphore::new(MAX_ANONYMOUS));
    tokio::spawn(async move {
        loop {
            // Accept no more than can be handshaken at once, so a flood of
            // connections cannot pile up tasks and TLS state.
            let handshake_slot = tokio::select! {
                _ = stop.cancelled() => return,
                s = handshakes.clone().acquire_owned() => s.expect("never closed"),
            };
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let (tcp, remote) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a node connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Ok(open_slot) = open.clone().try_acquire_owned() else {
                tracing::warn!(%remote, "too many node connections ({MAX_CONNECTIONS}); closing one");
                continue;
            };
            let (acceptor, out, anonymous) = (acceptor.clone(), tx.clone(), anonymous.clone());
            let conns = conns.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(CONNECT_TIMEOUT * 5, acceptor.accept(tcp));
                let stream = match handshake.await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| pki::Identity::of(c).ok());
                drop(handshake_slot);
                let mut slots = vec![open_slot];
                if identity.is_none() {
                    match anonymous.try_acquire_owned() {
                        Ok(s) => slots.push(s),
                        Err(_) => {
                            tracing::warn!(%remote, "too many connections without a certificate ({MAX_ANONYMOUS}); closing one");
                            return;
                        }
                    }
                }
                let token = match &identity {
                    Some(id) => conns.register(&id.node_id),
                    None => CancellationToken::new(),
                };
                let peer = Peer { remote, identity };
                let _ = out
                    .send(Ok(TlsConn {
                        stream,
                        peer,
                        cut: Box::pin(token.clone().cancelled_owned()),
                        _unregister: token.drop_guard(),
                        _slots: slots,
                    }))
                    .await;
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The full cause chain of an error, which tonic transport errors hide
/// behind "transport error".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_hint_travels_in_the_status_details() {
        let s = not_leader(Some("198.18.0.12:2377".into()));
        assert_eq!(leader_hint(&s).as_deref(), Some("198.18.0.12:2377"));
        assert_eq!(leader_hint(&not_leader(None)), None);
        // A message that merely reads like a redirect is not one.
        let lookalike = tonic::Status::unavailable("the leader is at 10.0.0.1:2377");
        assert_eq!(leader_hint(&lookalike), None);
    }
}
