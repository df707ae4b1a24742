//! This node's certificate on disk, and its renewal: at a random point
//! between 50% and 80% of its lifetime, or at once when the node's role in
//! the cluster no longer matches the one its certificate names.

use crate::api::cluster_pb::{cluster_client::ClusterClient, RenewRequest};
use crate::keyring::Keyring;
use crate::net::Tls;
use crate::pki;
use crate::raft::network::Peers;
use crate::store::Store;
use crate::types::NodeRole;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// This node's certificate, its CA's and its key: one PEM file,
/// `<data dir>/certs/node.pem` (node certificate, CA certificate, key), so
/// the set is replaced whole or not at all. (`Tls::new` checks on load
/// that the key is the certificate's.) Under autolock the key is sealed
/// by the data key (a `SWARM SEALED KEY` block), which the unlock key
/// guards: whoever could read the key from disk could speak as this
/// manager and ask another for the data key.
#[derive(Clone)]
pub struct CertFiles {
    path: PathBuf,
    /// The swarm's keys: for a manager's own renewal (the CA key is
    /// sealed) and to seal the node's key under autolock.
    keyring: Keyring,
    /// One writer at a time (renewal, re-sealing on an autolock change).
    writing: Arc<std::sync::Mutex<()>>,
}

pub struct Loaded {
    pub ca_pem: String,
    pub cert_pem: String,
    /// None while the key is sealed and the keyring locked.
    pub key_pem: Option<String>,
}

const SEALED_LABEL: &str = "SWARM SEALED KEY";

/// The key as the file holds it.
enum KeyBlock {
    Plain(String),
    /// The whole `SWARM SEALED KEY` block.
    Sealed(String),
}

impl CertFiles {
    pub fn new(data_dir: &Path, keyring: Keyring) -> CertFiles {
        CertFiles {
            path: data_dir.join("certs").join("node.pem"),
            keyring,
            writing: Arc::default(),
        }
    }

    pub fn load(&self) -> Result<Option<Loaded>> {
        let Some((ca_pem, cert_pem, key)) = self.read()? else {
            return Ok(None);
        };
        let key_pem = match key {
            KeyBlock::Plain(pem) => Some(pem),
            KeyBlock::Sealed(block) => self.open_sealed(&block)?,
        };
        Ok(Some(Loaded {
            ca_pem,
            cert_pem,
            key_pem,
        }))
    }

    /// The file's CA and node certificates and its key block, as written.
    fn read(&self) -> Result<Option<(String, String, KeyBlock)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let blocks = pem_blocks(&text);
        let certs: Vec<&str> = blocks
            .iter()
            .filter(|(label, _)| *label == "CERTIFICATE")
            .map(|(_, b)| *b)
            .collect();
        let key = blocks
            .iter()
            .find(|(label, _)| label.ends_with("PRIVATE KEY") || *label == SEALED_LABEL);
        match (certs.as_slice(), key) {
            ([cert, cas @ ..], Some((label, key))) if !cas.is_empty() => Ok(Some((
                cas.iter().map(|c| format!("{c}\n")).collect(),
                format!("{cert}\n"),
                if *label == SEALED_LABEL {
                    KeyBlock::Sealed(key.to_string())
                } else {
                    KeyBlock::Plain(format!("{key}\n"))
                },
            ))),
            _ => anyhow::bail!(
                "{} is not a node certificate, CA certificates and a key; move it away and join again",
                self.path.display()
            ),
        }
    }

    /// The key in a sealed block: None while the keyring is locked.
    fn open_sealed(&self, block: &str) -> Result<Option<String>> {
        if self.keyring.is_locked() {
            return Ok(None);
        }
        use base64::Engine;
        let body: String = block.lines().filter(|l| !l.starts_with("-----")).collect();
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(body)
            .with_context(|| format!("{}: the sealed key is not base64", self.path.display()))?;
        let plain = self
            .keyring
            .open_tls_key(&sealed)
            .with_context(|| format!("{}: the sealed key does not open", self.path.display()))?;
        Ok(Some(
            String::from_utf8(plain).context("the sealed key is not PEM")?,
        ))
    }

    /// Replace the set, whole (`files::write_private`), the key sealed
    /// under autolock.
    pub fn save(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
        let _one = self.writing.lock().expect("cert files lock");
        self.write(ca_pem, cert_pem, key_pem)
    }

    fn write(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
        let dir = self.path.parent().expect("certs/ has a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key_block = if self.keyring.autolock() {
            use base64::Engine;
            let sealed = self.keyring.seal_tls_key(key_pem.as_bytes())?;
            let text = base64::engine::general_purpose::STANDARD.encode(sealed);
            let lines: Vec<&str> = text
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
                .collect();
            format!(
                "-----BEGIN {SEALED_LABEL}-----\n{}\n-----END {SEALED_LABEL}-----",
                lines.join("\n")
            )
        } else {
            key_pem.to_string()
        };
        let body = [cert_pem, ca_pem, &key_block]
            .map(|p| p.trim().to_string() + "\n")
            .concat();
        crate::files::write_private(&self.path, body.as_bytes())
    }

    /// Write the set again if its key is not sealed as the keyring says
    /// (autolock was turned on or off, or a crash came between the two
    /// files' writes). The caller has the key: it is the running node's.
    pub fn reseal(&self, key_pem: &str) -> Result<()> {
        let _one = self.writing.lock().expect("cert files lock");
        let Some((ca_pem, cert_pem, key)) = self.read()? else {
            return Ok(());
        };
        if matches!(key, KeyBlock::Sealed(_)) != self.keyring.autolock() {
            self.write(&ca_pem, &cert_pem, key_pem)?;
        }
        Ok(())
    }
}

/// The PEM blocks of `text`: (label, the block from BEGIN to END).
fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let block_end = start + end + end_marker.len();
        out.push((label, &rest[start..block_end]));
        rest = &rest[block_end..];
    }
    out
}

/// What the cluster state says of this node's certificate, as the
/// dispatcher reports it: the role it must carry, and the CA certificates
/// to trust (`ClusterInfo::trust_pem`; the first is the root that issues).
/// Empty until the first report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    pub role: String,
    pub trust_pem: String,
}

impl Standing {
    /// Whether a certificate with identity `id` is not the one the state
    /// wants: another role, or another issuing root (a CA rotation).
    fn wants_other_than(&self, id: &pki::Identity) -> bool {
        let role = !self.role.is_empty() && self.role != id.role.as_str();
        let issuer = !self.trust_pem.is_empty()
            && pki::ca_name(&self.trust_pem).is_ok_and(|name| name != id.issuer);
        role || issuer
    }
}

/// Keep this node's certificate fresh, and as the cluster state wants it:
/// renewed at its time, or at once when `standing` asks for another role
/// or another issuing root; and trust what `standing` says to trust.
/// `managers` says where to ask.
pub async fn renew_loop(
    tls: Arc<Tls>,
    store: Store,
    files: CertFiles,
    mut standing: watch::Receiver<Standing>,
    managers: watch::Receiver<Vec<String>>,
    stop: CancellationToken,
) {
    loop {
        let wanted = standing.borrow_and_update().clone();
        if !wanted.trust_pem.is_empty() {
            if let Err(e) = trust(&tls, &files, &wanted.trust_pem) {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot take the cluster's CA certificates"
                );
            }
        }
        let id = tls.identity();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let wait = Duration::from_secs(id.renew_at().saturating_sub(now).max(0) as u64);
        if wanted.wants_other_than(&id) || wait.is_zero() {
            let list = managers.borrow().clone();
            match renew(&tls, &store, &files, &list).await {
                Ok(()) => {
                    let now = tls.identity();
                    tracing::info!(
                        role = now.role.as_str(),
                        issuer = now.issuer,
                        not_after = now.not_after,
                        "node certificate renewed"
                    );
                    continue;
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "certificate renewal failed; retrying"
                ),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = standing.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Trust `trust_pem` from now on, and keep it with the certificate.
fn trust(tls: &Tls, files: &CertFiles, trust_pem: &str) -> Result<()> {
    if tls.set_trust(trust_pem)? {
        files.save(trust_pem, &tls.cert_pem(), &tls.key_pem())?;
        tracing::info!("the cluster's CA certificates changed; trusting them");
    }
    Ok(())
}

/// A manager holds the CA in its replicated state and signs its own
/// certificate, so it never depends on another manager (or on its own,
/// possibly expired, server certificate). A worker asks the managers, in
/// turn, each with a short deadline.
async fn renew(tls: &Tls, store: &Store, files: &CertFiles, managers: &[String]) -> Result<()> {
    let (key_pem, csr_pem) = pki::new_key_and_csr()?;
    let me = tls.identity();
    let st = store.state();
    let cert = match (me.role, st.cluster.as_ref(), st.nodes.get(&me.node_id)) {
        (NodeRole::Manager, Some(cluster), Some(node)) => {
            pki::issue(cluster, &files.keyring, &csr_pem, &node.id, node.role)?
        }
        _ => ask_managers(store.peers(), managers, &csr_pem).await?,
    };
    files.save(&tls.ca_pem(), &cert, &key_pem)?;
    tls.update(&cert, &key_pem)?;
    let now = tls.identity();
    if now.role != me.role || now.issuer != me.issuer {
        // Servers judge a peer by the certificate it showed at the
        // handshake: reconnect so they see the new role, or (during a CA
        // rotation) the dispatcher sees the new root's certificate.
        store.peers().reconnect();
    }
    Ok(())
}

async fn ask_managers(peers: &Peers, managers: &[String], csr_pem: &str) -> Result<String> {
    let mut last = None;
    for addr in managers {
        let channel = match peers.channel(addr) {
            Ok(c) => c,
            Err(e) => {
                last = Some(anyhow::anyhow!(e));
                continue;
            }
        };
        let req = RenewRequest {
            csr_pem: csr_pem.to_string(),
        };
        let mut client = ClusterClient::new(channel);
        let call = client.renew(req);
        match tokio::time::timeout(Duration::from_secs(3), call).await {
            Ok(Ok(r)) => return Ok(r.into_inner().cert_pem),
            Ok(Err(s)) => last = Some(anyhow::anyhow!("{addr}: {}", s.message())),
            Err(_) => last = Some(anyhow::anyhow!("{addr}: no answer within 3s")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no manager address known")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_is_one_file_and_a_mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles::new(dir.path(), Keyring::load(dir.path()).unwrap());
        assert!(files.load().unwrap().is_none());
        let ca = pki::RootCa::create("c").unwrap();
        let (key, csr) = pki::new_key_and_csr().unwrap();
        let cert = ca
            .issue(&csr, "n1", NodeRole::Worker, "c", Duration::from_secs(600))
            .unwrap();
        files.save(&ca.cert_pem, &cert, &key).unwrap();
        let back = files.load().unwrap().unwrap();
        let back_key = back.key_pem.clone().unwrap();
        Tls::new(&back.ca_pem, &back.cert_pem, &back_key).expect("a matching set loads");
        assert_eq!(back.cert_pem.trim(), cert.trim());
        let (other_key, _) = pki::new_key_and_csr().unwrap();
        let err = Tls::new(&back.ca_pem, &back.cert_pem, &other_key).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        std::fs::write(dir.path().join("certs/node.pem"), &cert).unwrap();
        assert!(files.load().is_err(), "a partial set is refused");
    }

    #[test]
    fn under_autolock_the_nodes_key_is_sealed_until_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::load(dir.path()).unwrap();
        keyring.create().unwrap();
        let files = CertFiles::new(dir.path(), keyring.clone());
        let ca = pki::RootCa::create("c").unwrap();
        let (key, csr) = pki::new_key_and_csr().unwrap();
        let cert = ca
            .issue(&csr, "n1", NodeRole::Manager, "c", Duration::from_secs(600))
            .unwrap();
        files.save(&ca.cert_pem, &cert, &key).unwrap();
        let unlock = crate::keyring::random_key().unwrap();
        assert!(keyring.follow_autolock(Some(&unlock)).unwrap());
        files.reseal(&key).unwrap();
        let raw = std::fs::read_to_string(dir.path().join("certs/node.pem")).unwrap();
        assert!(!raw.contains("PRIVATE KEY"), "{raw}");

        // Restarted: the certificates load, the key does not, until unlocked.
        let locked = Keyring::load(dir.path()).unwrap();
        let again = CertFiles::new(dir.path(), locked.clone());
        assert_eq!(again.load().unwrap().unwrap().key_pem, None);
        locked.unlock(&unlock).unwrap();
        let opened = again.load().unwrap().unwrap().key_pem.unwrap();
        assert_eq!(opened.trim(), key.trim());
    }
}
