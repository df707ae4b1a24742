//! This node's certificate on disk, and its renewal: at a random point
//! between 50% and 80% of its lifetime, or at once when the node's role in
//! the cluster no longer matches the one its certificate names.

use crate::api::cluster_pb::{cluster_client::ClusterClient, RenewRequest};
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

/// The PEM files under `<data dir>/certs`.
pub struct CertFiles {
    dir: PathBuf,
}

pub struct Loaded {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertFiles {
    pub fn new(data_dir: &Path) -> CertFiles {
        CertFiles {
            dir: data_dir.join("certs"),
        }
    }

    pub fn load(&self) -> Result<Option<Loaded>> {
        let read = |name: &str| {
            let p = self.dir.join(name);
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
        };
        if !self.dir.join("node.crt").exists() {
            return Ok(None);
        }
        Ok(Some(Loaded {
            ca_pem: read("ca.crt")?,
            cert_pem: read("node.crt")?,
            key_pem: read("node.key")?,
        }))
    }

    /// Write all three files, each through a temporary file and a rename, so
    /// a crash leaves either the old or the new file, never half of one.
    pub fn save(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        for (name, body, mode) in [
            ("node.key", key_pem, 0o600),
            ("ca.crt", ca_pem, 0o644),
            ("node.crt", cert_pem, 0o644),
        ] {
            let tmp = self.dir.join(format!("{name}.tmp"));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::io::Write::write_all(&mut f, body.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(name))
                .with_context(|| format!("installing {name}"))?;
        }
        Ok(())
    }
}

/// Keep this node's certificate fresh. `role` is the role the cluster state
/// gives this node (from the dispatcher); `managers` says where to ask.
pub async fn renew_loop(
    tls: Arc<Tls>,
    store: Store,
    files: CertFiles,
    mut role: watch::Receiver<String>,
    managers: watch::Receiver<Vec<String>>,
    stop: CancellationToken,
) {
    loop {
        let id = tls.identity();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let wait = Duration::from_secs(id.renew_at().saturating_sub(now).max(0) as u64);
        let wanted = role.borrow_and_update().clone();
        let role_changed = !wanted.is_empty() && wanted != id.role.as_str();
        if role_changed || wait.is_zero() {
            let list = managers.borrow().clone();
            match renew(&tls, &store, &files, &list).await {
                Ok(()) => {
                    let now = tls.identity();
                    tracing::info!(
                        role = now.role.as_str(),
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
            _ = role.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
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
            pki::issue(cluster, &csr_pem, &node.id, node.role)?
        }
        _ => ask_managers(store.peers(), managers, &csr_pem).await?,
    };
    files.save(tls.ca_pem(), &cert, &key_pem)?;
    tls.update(&cert, &key_pem)?;
    if tls.identity().role != me.role {
        // Servers judge a peer by the certificate it showed at the
        // handshake: reconnect so they see the new role.
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
