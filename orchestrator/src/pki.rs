//! The cluster's public-key infrastructure: a root CA made at `swarm init`,
//! node certificates issued from CSRs, and the identity (node ID and role) a
//! certificate carries. Every node-to-node connection is authenticated with
//! these certificates (see `net`).
//!
//! A node certificate's subject is `CN=<node id>, OU=swarm-manager|swarm-worker,
//! O=<cluster id>`. Its DNS names are the role name, so a client that wants a
//! manager verifies the server against the name `swarm-manager`, and a worker
//! certificate can never pass as a manager.

pub mod token;

use crate::keyring::{Field, Keyring};
pub use crate::types::RootCa;
use crate::types::{ClusterInfo, NodeRole};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

fn invalid(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |e| PkiError::Invalid {
        what,
        reason: e.to_string(),
    }
}

/// The DNS name a role's certificates carry and servers are checked against.
pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "swarm-manager",
        NodeRole::Worker => "swarm-worker",
    }
}

/// Lifetime of the root CA: node certificates are what rotate.
const CA_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Default node certificate lifetime (Swarm's default is 90 days).
pub const DEFAULT_CERT_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Node certificate lifetimes `init` accepts: from a minute (shorter than
/// Swarm's hour, so renewal can be watched), up to the CA's own lifetime
/// (a longer one overflows the clock arithmetic).
pub fn check_cert_expiry(d: Duration) -> Result<(), String> {
    let min = Duration::from_secs(60);
    if d < min || d > CA_LIFETIME {
        return Err(format!(
            "--cert-expiry {d:?} is outside 1m-{}h (the CA's own lifetime)",
            CA_LIFETIME.as_secs() / 3600
        ));
    }
    Ok(())
}

/// The raft member ID of the node `node_id`. Derived, not chosen: a raft
/// message's sender is then checked against the node its certificate
/// names, and no node can stand in for another's vote. (63 bits, never 0,
/// which openraft does not take; the CA refuses a node ID whose raft ID
/// collides with a member's.)
pub fn raft_id_of(node_id: &str) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, node_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    (u64::from_be_bytes(first) >> 1).max(1)
}

/// Allowance for clocks that differ a little between nodes.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Sign a node's CSR with the cluster's CA, for its role and with the
/// cluster's certificate lifetime: what join, renewal and a manager's own
/// renewal all do. The CA key is opened for the signature only. During a
/// rotation the new root signs.
pub fn issue(
    cluster: &ClusterInfo,
    keyring: &Keyring,
    csr_pem: &str,
    node_id: &str,
    role: NodeRole,
) -> Result<String, PkiError> {
    let (cert_pem, key) = cluster.issuing_ca();
    let ca = RootCa {
        cert_pem: cert_pem.to_string(),
        key_pem: keyring
            .open_text(Field::CaKey, key)
            .map_err(|e| PkiError::Invalid {
                what: "the CA key".into(),
                reason: e.to_string(),
            })?,
    };
    ca.issue(
        csr_pem,
        node_id,
        role,
        &cluster.id,
        Duration::from_millis(cluster.cert_expiry_ms),
    )
}

/// The digest of a CA certificate (PEM), which join tokens carry.
pub fn ca_digest(ca_cert_pem: &str) -> Result<String, PkiError> {
    Ok(cert_digest(&pem_to_der(ca_cert_pem, "the CA certificate")?))
}

impl RootCa {
    /// A new ECDSA P-256 root for the cluster `cluster_id`.
    pub fn create(cluster_id: &str) -> Result<RootCa, PkiError> {
        let key = KeyPair::generate().map_err(invalid("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        // Each root has a name of its own, so that during a rotation a
        // chain names which root issued it, and path building never
        // confuses the old root with the new one.
        params.distinguished_name.push(
            DnType::CommonName,
            format!("swarm-ca {}", &hex::encode(rand::random::<[u8; 4]>())),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, cluster_id);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + CA_LIFETIME).into();
        let cert = params
            .self_signed(&key)
            .map_err(invalid("self-signing the CA"))?;
        Ok(RootCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Sign a node certificate for `csr_pem`. Only the CSR's public key is
    /// used: identity, role and lifetime are the CA's decision.
    pub fn issue(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: NodeRole,
        cluster_id: &str,
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(invalid("the CSR"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node_id);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role_name(role));
        params
            .distinguished_name
            .push(DnType::OrganizationName, cluster_id);
        params.subject_alt_names = vec![SanType::DnsName(
            role_name(role)
                .try_into()
                .map_err(invalid("the role name"))?,
        )];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + lifetime).into();
        csr.params = params;
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(invalid("the CA key"))?;
        let ca_cert = CertificateParams::from_ca_cert_pem(&self.cert_pem)
            .map_err(invalid("the CA certificate"))?
            .self_signed(&ca_key)
            .map_err(invalid("the CA certificate"))?;
        let cert = csr
            .signed_by(&ca_cert, &ca_key)
            .map_err(invalid("signing the node certificate"))?;
        Ok(cert.pem())
    }
}

/// The common name of a CA certificate (PEM): what the certificates it
/// issues carry as their issuer.
pub fn ca_name(ca_cert_pem: &str) -> Result<String, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = pem_to_der(ca_cert_pem, "the CA certificate")?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| PkiError::Invalid {
        what: "the CA certificate".into(),
        reason: e.to_string(),
    })?;
    let name = cert.subject().iter_common_name().next();
    Ok(name
        .and_then(|n| n.as_str().ok())
        .unwrap_or_default()
        .to_string())
}

/// The new root `next`, signed by the old root `self`: a node that trusts
/// only the old root can follow a chain from a certificate the new root
/// issued, through this one, to the root it knows. That is what lets the
/// nodes of a swarm move to a new root one at a time (`swarm ca --rotate`).
impl RootCa {
    pub fn cross_sign(&self, next: &RootCa) -> Result<String, PkiError> {
        let next_key = KeyPair::from_pem(&next.key_pem).map_err(invalid("the new CA key"))?;
        let key = KeyPair::from_pem(&self.key_pem).map_err(invalid("the CA key"))?;
        let issuer = CertificateParams::from_ca_cert_pem(&self.cert_pem)
            .map_err(invalid("the CA certificate"))?
            .self_signed(&key)
            .map_err(invalid("the CA certificate"))?;
        let cert = CertificateParams::from_ca_cert_pem(&next.cert_pem)
            .map_err(invalid("the new CA certificate"))?
            .signed_by(&next_key, &issuer, &key)
            .map_err(invalid("cross-signing the new CA"))?;
        Ok(cert.pem())
    }
}

/// A fresh node key and a CSR for it, both PEM. The CSR names nothing: the
/// CA decides the identity.
pub fn new_key_and_csr() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(invalid("generating a node key"))?;
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .map_err(invalid("creating a CSR"))?
        .pem()
        .map_err(invalid("encoding the CSR"))?;
    Ok((key.serialize_pem(), csr))
}

pub fn cert_digest(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// The first certificate in a PEM document, as DER.
pub fn pem_to_der(pem: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let bad = |reason: String| PkiError::Invalid {
        what: what.into(),
        reason,
    };
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| bad("no certificate in PEM".into()))?
        .map(|c| c.to_vec())
        .map_err(|e| bad(e.to_string()))
}

/// When a certificate (PEM) stops being valid, seconds since the epoch.
pub fn not_after(pem: &str) -> Result<i64, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = pem_to_der(pem, "certificate")?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| PkiError::Invalid {
        what: "certificate".into(),
        reason: "not X.509 DER".into(),
    })?;
    Ok(cert.validity().not_after.timestamp())
}

/// Who a certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub node_id: String,
    pub role: NodeRole,
    pub cluster_id: String,
    /// The common name of the root that issued it (each root has its own).
    pub issuer: String,
    /// Validity window, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl Identity {
    /// Read the identity of a certificate this cluster's CA issued. (Callers
    /// verify the chain first; this only parses.)
    pub fn of(der: &[u8]) -> Result<Identity, PkiError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let bad = |reason: &str| PkiError::Invalid {
            what: "node certificate".into(),
            reason: reason.into(),
        };
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| bad("not X.509 DER"))?;
        let subject = cert.subject();
        let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
            it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
        };
        let node_id = first(&mut subject.iter_common_name()).ok_or_else(|| bad("no CN"))?;
        let ou = first(&mut subject.iter_organizational_unit()).ok_or_else(|| bad("no OU"))?;
        let role = match ou.as_str() {
            "swarm-manager" => NodeRole::Manager,
            "swarm-worker" => NodeRole::Worker,
            _ => return Err(bad("OU is neither swarm-manager nor swarm-worker")),
        };
        let cluster_id = first(&mut subject.iter_organization()).unwrap_or_default();
        let issuer = first(&mut cert.issuer().iter_common_name()).unwrap_or_default();
        Ok(Identity {
            node_id,
            role,
            cluster_id,
            issuer,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// The raft member ID this certificate's holder speaks as.
    pub fn raft_id(&self) -> u64 {
        raft_id_of(&self.node_id)
    }

    /// When to renew: at a point between 50% and 80% of the lifetime, chosen
    /// at random so a cluster's nodes do not all renew at once.
    pub fn renew_at(&self) -> i64 {
        // Certificates are backdated by the skew allowance; their life
        // counts from when they were issued.
        let issued = self.not_before + CLOCK_SKEW.as_secs() as i64;
        let life = (self.not_after - issued).max(0) as f64;
        let frac = 0.5 + rand::random::<f64>() * 0.3;
        issued + (life * frac) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_lifetime_past_the_cas_is_refused_not_a_panic() {
        assert!(check_cert_expiry(DEFAULT_CERT_EXPIRY).is_ok());
        assert!(check_cert_expiry(Duration::from_secs(90)).is_ok());
        assert!(check_cert_expiry(Duration::from_secs(59)).is_err());
        let e = check_cert_expiry(Duration::from_secs(u64::MAX / 2)).unwrap_err();
        assert!(e.contains("the CA's own lifetime"), "{e}");
    }

    #[test]
    fn issued_certificates_carry_node_id_role_and_lifetime() {
        let ca = RootCa::create("cluster1").unwrap();
        let (_key, csr) = new_key_and_csr().unwrap();
        let pem = ca
            .issue(
                &csr,
                "node1",
                NodeRole::Worker,
                "cluster1",
                Duration::from_secs(600),
            )
            .unwrap();
        let id = Identity::of(&pem_to_der(&pem, "cert").unwrap()).unwrap();
        assert_eq!(id.node_id, "node1");
        assert_eq!(id.role, NodeRole::Worker);
        assert_eq!(id.cluster_id, "cluster1");
        // 600 s of life plus the clock-skew allowance before now.
        assert_eq!(id.not_after - id.not_before, 600 + 300);
        let issued = id.not_before + 300;
        let at = id.renew_at();
        assert!(
            at >= issued + 300 && at <= issued + 480 + 1,
            "{at} vs {issued}"
        );
    }

    #[test]
    fn raft_ids_follow_from_node_ids() {
        assert_eq!(raft_id_of("n1"), raft_id_of("n1"));
        assert_ne!(raft_id_of("n1"), raft_id_of("n2"));
        assert!(raft_id_of("n1") >> 63 == 0 && raft_id_of("n1") != 0);
    }

    #[test]
    fn digests_differ_between_cas() {
        let a = RootCa::create("a").unwrap();
        let b = RootCa::create("b").unwrap();
        assert_eq!(ca_digest(&a.cert_pem).unwrap().len(), 64);
        assert_ne!(
            ca_digest(&a.cert_pem).unwrap(),
            ca_digest(&b.cert_pem).unwrap()
        );
    }

    /// Whether a manager certificate issued by `issuer`, shown with
    /// `intermediates`, verifies for a node that trusts only `root`.
    fn verifies(root: &RootCa, issuer: &RootCa, intermediates: &[&str]) -> bool {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let (_key, csr) = new_key_and_csr().unwrap();
        let leaf = issuer
            .issue(&csr, "n1", NodeRole::Manager, "c", DEFAULT_CERT_EXPIRY)
            .unwrap();
        let der = |pem: &str| CertificateDer::from(pem_to_der(pem, "cert").unwrap());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&root.cert_pem)).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let chain: Vec<CertificateDer> = intermediates.iter().map(|p| der(p)).collect();
        verifier
            .verify_server_cert(
                &der(&leaf),
                &chain,
                &ServerName::try_from("swarm-manager").unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn a_new_roots_certificates_verify_for_nodes_that_trust_only_the_old_root_through_the_cross_signed_one(
    ) {
        let old = RootCa::create("c").unwrap();
        let new = RootCa::create("c").unwrap();
        let cross = old.cross_sign(&new).unwrap();
        assert!(
            Identity::of(&pem_to_der(&cross, "cross").unwrap()).is_err(),
            "a CA certificate is no node identity"
        );
        // The old root's nodes follow the cross-signed certificate.
        assert!(verifies(&old, &new, &[&new.cert_pem, &cross]));
        assert!(
            !verifies(&old, &new, &[&new.cert_pem]),
            "without it they cannot"
        );
        // The new root's nodes need nothing more, and the old root's
        // certificates still verify for the old root's nodes.
        assert!(verifies(&new, &new, &[&new.cert_pem, &cross]));
        assert!(verifies(&old, &old, &[&old.cert_pem]));
        // A root of another swarm verifies none of it.
        let other = RootCa::create("c").unwrap();
        assert!(!verifies(&other, &new, &[&new.cert_pem, &cross]));
    }

    #[test]
    fn garbage_csr_is_refused_with_a_reason() {
        let ca = RootCa::create("c").unwrap();
        let err = ca
            .issue("nope", "n", NodeRole::Manager, "c", DEFAULT_CERT_EXPIRY)
            .unwrap_err();
        assert!(err.to_string().starts_with("the CSR:"), "{err}");
    }
}
