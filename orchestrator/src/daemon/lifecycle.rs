//! Joining and leaving the swarm: `init`, `join`, becoming a raft voter,
//! and `leave`.

use super::{Daemon, InitOptions};
use crate::api::cluster_pb::{cluster_client::ClusterClient, AddVoterRequest, JoinRequest};
use crate::cluster::join;
use crate::keyring::Field;
use crate::net::Tls;
use crate::pki::token::{self, JoinToken};
use crate::pki::{self, RootCa};
use crate::state::Command;
use crate::types::{new_id, now_ms, ClusterInfo, NodeRole};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;

impl Daemon {
    /// `swarm init`: a new CA, this node's certificate, a one-voter raft
    /// group, and the cluster record. Every step can be taken again: an
    /// init cut short by a crash is finished by the next one (or at start,
    /// once the cluster record is in, by `resume_init`).
    pub async fn init(self: &Arc<Self>, opts: InitOptions) -> Result<String> {
        if self.certs.load()?.is_some() {
            anyhow::bail!("this node is already part of a swarm");
        }
        self.identity.save(&self.config.data_dir)?;
        // The data key first: the cluster record holds the CA key and the
        // join secrets sealed by it.
        if !self.keyring.has_key() {
            self.keyring
                .create()
                .context("creating the swarm's data key")?;
            crate::crash::point("init-keyed");
        }
        let addr = self.advertise();
        if !self.store.is_initialized().await {
            self.store.bootstrap(&addr).await?;
            crate::crash::point("init-bootstrapped");
        }
        self.store.wait_for_leader(Duration::from_secs(10)).await?;
        self.remember_managers(vec![addr])?;
        if self.store.state().cluster.is_none() {
            let cluster_id = new_id();
            let ca = RootCa::create(&cluster_id)?;
            let seal = |field, plain: &str| self.keyring.seal_field(field, plain.as_bytes());
            let cluster = ClusterInfo {
                id: cluster_id.clone(),
                created_at: now_ms(),
                ca_cert_pem: ca.cert_pem.clone(),
                ca_key: seal(Field::CaKey, &ca.key_pem)?,
                worker_secret: seal(Field::JoinSecret(NodeRole::Worker), &token::new_secret())?,
                manager_secret: seal(Field::JoinSecret(NodeRole::Manager), &token::new_secret())?,
                unlock_key: None,
                cert_expiry_ms: opts.cert_expiry.as_millis() as u64,
                heartbeat_ms: opts.heartbeat.as_millis() as u64,
                addr_pool: opts.addr_pool.clone(),
                pool_mask_len: opts.pool_mask_len,
                rotation: None,
            };
            let node = self.node_record(NodeRole::Manager).await;
            self.store
                .write(Command::InitCluster {
                    cluster,
                    node,
                    ingress_id: new_id(),
                })
                .await
                .context("writing the cluster record")?;
            crate::crash::point("init-recorded");
        }
        self.finish_init().await
    }

    /// After a crash during init, at start: finish it if the cluster record
    /// was written (init's caller may never have heard; the swarm exists).
    pub(super) async fn resume_init(self: &Arc<Self>) -> Result<()> {
        if !self.store.is_initialized().await {
            return Ok(());
        }
        self.store.wait_for_leader(Duration::from_secs(10)).await?;
        if self.store.state().cluster.is_some() {
            tracing::info!("finishing an init that was cut short");
            self.finish_init().await?;
        }
        Ok(())
    }

    /// The steps of init after the cluster record: this node's certificate
    /// from the CA in the state, and its roles.
    async fn finish_init(self: &Arc<Self>) -> Result<String> {
        let st = self.store.state();
        let cluster = st.cluster.as_ref().context("no cluster record")?;
        let me = &self.identity.node_id;
        if !st.nodes.contains_key(me) {
            anyhow::bail!(
                "this node's raft store holds swarm {} but not this node ({me}); move {} away to start afresh",
                cluster.id,
                self.config.data_dir.join("raft.redb").display()
            );
        }
        let (key_pem, csr) = pki::new_key_and_csr()?;
        let cert_pem = pki::issue(cluster, &self.keyring, &csr, me, NodeRole::Manager)?;
        self.certs.save(&cluster.ca_cert_pem, &cert_pem, &key_pem)?;
        self.activate(Tls::new(&cluster.ca_cert_pem, &cert_pem, &key_pem)?)
            .await?;
        Ok(cluster.id.clone())
    }

    /// `swarm join`: trade the token for a certificate, and the node ID the
    /// CA assigns, at `remote`. The daemon then starts again as that node
    /// (its raft store and its containers' labels go by the ID); this
    /// answers once the next generation has taken up the role: at once for
    /// a worker, once a raft voter for a manager.
    pub async fn join(self: &Arc<Self>, token: &str, remote: &str) -> Result<(String, NodeRole)> {
        if self.store.is_initialized().await || self.certs.load()?.is_some() {
            anyhow::bail!("this node is already part of a swarm");
        }
        let token = JoinToken::parse(token)?;
        let (key_pem, csr_pem) = pki::new_key_and_csr()?;
        let me = self.node_record(NodeRole::Worker).await;
        let resp = join::request(
            &token,
            remote,
            JoinRequest {
                csr_pem,
                hostname: me.hostname,
                addr: me.addr.clone(),
                engine_version: me.engine_version,
                nano_cpus: me.nano_cpus,
                memory_bytes: me.memory_bytes,
                gateway_subnet: me.gateway_subnet.map(|g| g.to_string()).unwrap_or_default(),
                ..Default::default()
            },
        )
        .await?;
        crate::crash::point("join-answered");
        let tls = Tls::new(&resp.ca_pem, &resp.cert_pem, &key_pem)?;
        let role = tls.identity().role;
        if tls.identity().node_id != resp.node_id {
            anyhow::bail!(
                "the manager answered node ID {} but signed a certificate for {}",
                resp.node_id,
                tls.identity().node_id
            );
        }
        if !resp.secrets_key.is_empty() {
            self.keyring
                .install(&resp.secrets_key)
                .context("keeping the swarm's secrets key")?;
        }
        self.remember_managers(resp.managers.clone())?;
        super::Identity::new(&resp.node_id).save(&self.config.data_dir)?;
        crate::crash::point("join-identified");
        // The certificates last: with them on disk, the node is in the
        // swarm, and a restart resumes from there.
        self.certs.save(&resp.ca_pem, &resp.cert_pem, &key_pem)?;
        crate::crash::point("join-certified");
        self.restart(super::Restart::Joined);
        let next = self.successor().await?;
        let mut settled = next.settled.subscribe();
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            settled.wait_for(|s| *s == super::Settled::Yes),
        )
        .await
        .map(|_| ());
        if waited.is_err() {
            let why = match &*next.settled.borrow() {
                super::Settled::Not(why) => why.clone(),
                super::Settled::Yes => String::new(),
            };
            anyhow::bail!(
                "joined as node {}, but it has not taken up the {} role yet: {why}; it keeps trying (see `swarm node ls` on a manager)",
                resp.node_id,
                role.as_str()
            );
        }
        Ok((resp.node_id, role))
    }

    /// A manager without the secrets key (a promoted worker) asks the other
    /// managers for it, with its manager certificate.
    pub(super) async fn fetch_secrets_key(&self, managers: &[String]) -> Result<()> {
        if self.keyring.has_key() {
            return Ok(());
        }
        let mut last = String::from("no manager address known");
        for m in managers.iter().filter(|m| **m != self.advertise()) {
            let channel = self
                .store
                .peers()
                .channel(m)
                .map_err(|e| anyhow::anyhow!(e))?;
            match ClusterClient::new(channel)
                .secrets_key(crate::api::cluster_pb::Empty {})
                .await
            {
                Ok(r) => {
                    return self
                        .keyring
                        .install(&r.into_inner().key)
                        .context("keeping the swarm's secrets key")
                }
                Err(s) => last = format!("{m}: {}", s.message()),
            }
        }
        anyhow::bail!("cannot get the swarm's secrets key from another manager: {last}")
    }

    /// Ask the managers to add this node to raft, then wait until the
    /// replicated state has reached it.
    pub(super) async fn become_voter(&self, managers: &[String], addr: &str) -> Result<()> {
        let req = AddVoterRequest {
            raft_id: self.identity.raft_id,
            addr: addr.to_string(),
        };
        let mut last = String::from("no manager address known");
        for m in managers {
            let channel = self
                .store
                .peers()
                .channel(m)
                .map_err(|e| anyhow::anyhow!(e))?;
            match ClusterClient::new(channel).add_voter(req.clone()).await {
                Ok(_) => {
                    let mut changes = self.store.subscribe();
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        changes.wait_for(|st| st.cluster.is_some()),
                    )
                    .await
                    .context("waiting for the cluster state to replicate")??;
                    return Ok(());
                }
                Err(s) => last = format!("{m}: {}", s.message()),
            }
        }
        anyhow::bail!("joined as a manager, but could not become a raft voter: {last}")
    }

    /// `swarm leave`: a manager first leaves raft (refused without `force`
    /// if that would cost the others their quorum); then this node stops
    /// its roles, removes its task containers and forgets its identity.
    pub async fn leave(self: &Arc<Self>, force: bool) -> Result<()> {
        let Some(tls) = self.store.peers().tls() else {
            anyhow::bail!("this node is not part of a swarm");
        };
        if tls.identity().role == NodeRole::Manager && !force {
            self.leave_raft().await?;
        }
        self.stop.cancel();
        self.store.shutdown().await;
        match self.engine.task_containers().await {
            Ok(all) => {
                for c in all.values() {
                    for id in c.ids() {
                        if let Err(e) = self.engine.remove(id).await {
                            tracing::warn!(container = id, error = %e, "cannot remove a task container");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list task containers"),
        }
        self.unplumb().await;
        let dir = &self.config.data_dir;
        let _ = std::fs::remove_dir_all(dir.join("certs"));
        self.keyring.clear();
        for f in ["managers.json", "advertise_addr", "raft.redb", "node.json"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        self.restart(super::Restart::Left);
        Ok(())
    }

    /// Ask the leader to take this manager out; it refuses when the
    /// remaining managers would lose their quorum.
    async fn leave_raft(&self) -> Result<()> {
        let me = self.identity.raft_id;
        if self.store.voters() == [me] {
            anyhow::bail!(
                "this node is the last manager: leaving erases the swarm's state. Use --force to leave anyway"
            );
        }
        let req = AddVoterRequest {
            raft_id: me,
            addr: self.advertise(),
        };
        let channel = self
            .store
            .peers()
            .channel(&self.advertise())
            .map_err(|e| anyhow::anyhow!(e))?;
        ClusterClient::new(channel)
            .remove_voter(req)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable => anyhow::anyhow!(
                    "cannot reach the raft leader ({}): leaving now could break quorum. Use --force to leave anyway",
                    s.message()
                ),
                _ => anyhow::anyhow!("{}. Use --force to leave anyway", s.message()),
            })?;
        // The leader drops this node's vote right after; a removed node may
        // never see that last membership entry, so wait for the record only.
        let id = self.identity.node_id.clone();
        let mut changes = self.store.subscribe();
        tokio::time::timeout(
            Duration::from_secs(10),
            changes.wait_for(|st| !st.nodes.contains_key(&id)),
        )
        .await
        .context("waiting for the leader to remove this node")?
        .context("waiting for the leader to remove this node")?;
        Ok(())
    }
}

impl Daemon {
    /// Take down what this node built for the swarm: host-mode port and
    /// isolation rules, overlays, VIPs and the data plane.
    async fn unplumb(&self) {
        use swarm_mesh::{hostports, isolation, overlay};
        let mode = self.mesh.get().map(|m| m.lock().expect("mesh lock").mode);
        let pin_dir = self.config.pin_dir.clone();
        let rules = tokio::task::spawn_blocking(move || {
            let mut errors = Vec::new();
            for (what, result) in [
                ("host-mode port rules", hostports::clear()),
                ("network isolation rules", isolation::clear()),
            ] {
                if let Err(e) = result {
                    errors.push(format!("{what}: {e}"));
                }
            }
            let dp = match mode {
                Some(crate::agent::mesh::Mode::Xdp) => swarm_mesh::xdp::detach(&pin_dir),
                Some(crate::agent::mesh::Mode::Iptables) => {
                    swarm_mesh::iptables::IptablesDataplane::detach()
                }
                None => Ok(()),
            };
            if let Err(e) = dp {
                errors.push(format!("data plane: {e}"));
            }
            errors
        })
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
        for e in rules {
            tracing::warn!(error = %e, "cannot remove what this node set up for the swarm");
        }
        if let Err(e) = overlay::remove_except(&[]).await {
            tracing::warn!(error = %e, "cannot remove the overlay networks");
        }
        if let Err(e) = overlay::sync_vips(&[]).await {
            tracing::warn!(error = %e, "cannot remove the VIPs");
        }
    }
}
