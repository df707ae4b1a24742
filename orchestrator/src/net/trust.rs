//! The CA certificates a node trusts and shows, which change during a CA
//! rotation: one root normally; during a rotation the new root (which
//! issues), the old root, and the new root cross-signed by the old one.
//!
//! Verifiers are fixed in a rustls config once it is built, so the configs
//! hold `Trusted`, which asks the node's current `Trust` at each handshake.

use super::provider;
use crate::pki::PkiError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::sync::Arc;

#[derive(Debug)]
pub struct Trust {
    /// The bundle as given (PEM), to store it with the node's certificate.
    pub pem: String,
    /// Every CA certificate of the bundle, shown after the node's own: a
    /// joiner finds its token's CA there, and a node that knows only the
    /// old root follows the cross-signed one to it.
    pub chain: Vec<CertificateDer<'static>>,
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<WebPkiServerVerifier>,
}

fn bad(reason: impl Into<String>) -> PkiError {
    PkiError::Invalid {
        what: "the CA certificates".into(),
        reason: reason.into(),
    }
}

impl Trust {
    /// Trust the self-signed roots of `pem` (one or more certificates).
    pub fn of(pem: &str) -> Result<Trust, PkiError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        for der in &chain {
            let (_, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
            if cert.subject() == cert.issuer() {
                roots.add(der.clone()).map_err(|e| bad(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            return Err(bad("no root CA certificate in them"));
        }
        let roots = Arc::new(roots);
        let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let server = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Trust {
            pem: pem.to_string(),
            chain,
            client,
            server,
        })
    }
}

/// The node's current trust, as a rustls verifier on both sides.
#[derive(Debug)]
pub struct Trusted(pub Arc<super::Tls>);

impl Trusted {
    fn client(&self) -> Arc<dyn ClientCertVerifier> {
        self.0.trust().client.clone()
    }

    fn server(&self) -> Arc<WebPkiServerVerifier> {
        self.0.trust().server.clone()
    }
}

impl ClientCertVerifier for Trusted {
    fn offer_client_auth(&self) -> bool {
        true
    }

    // Joiners have no certificate yet; each call checks its caller.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    // Hints are optional, and ours would only repeat the one cluster's
    // roots that every client already has.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.client()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

impl ServerCertVerifier for Trusted {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.server()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

// Handshake signatures do not depend on which roots are trusted: every
// verifier here (and the joiner's, in net.rs) checks them alike.
pub(super) fn verify_tls12(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let algorithms = provider().signature_verification_algorithms;
    rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms)
}

pub(super) fn verify_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let algorithms = provider().signature_verification_algorithms;
    rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms)
}

pub(super) fn schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}
