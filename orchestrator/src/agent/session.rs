//! The agent's link to the cluster: a dispatcher session with the leader
//! (found by following the managers' redirects), which keeps this node's
//! assigned tasks in a watch channel, sends heartbeats, and delivers status
//! reports. Reports wait in a queue while no manager is reachable, so none
//! is lost across a leader change.

use crate::api::cluster_pb::{
    dispatcher_client::DispatcherClient, HeartbeatRequest, SessionMessage, SessionRequest,
    StatusRequest,
};
use crate::cluster::certs::Standing;
use crate::raft::network::Peers;
use crate::types::{NodeView, Task, TaskStatus};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Status;

pub type Report = Vec<(String, TaskStatus)>;

/// Task I/O the leader's broker handed this agent, with the address of the
/// leader that handed it (where the agent calls back).
pub type Work = (String, crate::api::broker_pb::Work);

/// What the dispatcher last said this node must run and reach.
#[derive(Debug, Default)]
pub struct Assigned {
    pub tasks: Vec<Task>,
    pub view: NodeView,
    /// The secret and config bytes those tasks use (in memory only).
    pub secrets: super::secrets::Received,
}

/// The agent's side of the link.
pub struct Link {
    /// `None` until the first full set arrives: before that the agent must
    /// not judge any container an orphan.
    pub assigned: watch::Receiver<Option<Arc<Assigned>>>,
    pub reports: mpsc::UnboundedSender<Report>,
}

/// What one session has been told so far.
#[derive(Default)]
struct Known {
    tasks: BTreeMap<String, Task>,
    view: NodeView,
    secrets: super::secrets::Received,
}

/// Pause between attempts when no manager takes the session.
const RETRY: Duration = Duration::from_millis(250);

/// `managers` holds the manager addresses to try, and is updated as the
/// dispatcher reports changes; `standing` receives this node's role and
/// the CA certificates to trust; `work` the broker's task I/O.
pub fn spawn(
    peers: Arc<Peers>,
    managers: watch::Sender<Vec<String>>,
    standing: watch::Sender<Standing>,
    work: mpsc::UnboundedSender<Work>,
    stop: CancellationToken,
) -> Link {
    let (assigned_tx, assigned) = watch::channel(None);
    let (reports, reports_rx) = mpsc::unbounded_channel();
    let session = Session {
        peers,
        managers,
        standing,
        assigned: assigned_tx,
        reports: reports_rx,
        pending: BTreeMap::new(),
        work,
    };
    tokio::spawn(session.run(stop));
    Link { assigned, reports }
}

struct Session {
    peers: Arc<Peers>,
    managers: watch::Sender<Vec<String>>,
    /// What the cluster state says of this node's certificate (drives
    /// renewal).
    standing: watch::Sender<Standing>,
    assigned: watch::Sender<Option<Arc<Assigned>>>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Reports not yet accepted by a leader: task ID → latest status.
    pending: BTreeMap<String, TaskStatus>,
    work: mpsc::UnboundedSender<Work>,
}

impl Session {
    async fn run(mut self, stop: CancellationToken) {
        let mut next = 0usize;
        let mut hint: Option<String> = None;
        loop {
            let managers = self.managers.borrow().clone();
            let addr = match hint.take() {
                Some(a) => a,
                None if managers.is_empty() => {
                    tracing::error!("no manager addresses known; the agent cannot get tasks");
                    return;
                }
                None => {
                    next = (next + 1) % managers.len();
                    managers[next].clone()
                }
            };
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.serve(&addr) => r,
            };
            if let Err(status) = outcome {
                tracing::debug!(manager = %addr, error = %status.message(), "dispatcher session ended");
                hint = crate::net::leader_hint(&status);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// One session with the manager at `addr`, until it fails.
    async fn serve(&mut self, addr: &str) -> Result<(), Status> {
        // Subscribed before the channel is taken, so that a reconnect from
        // now on (a renewed certificate) ends this session.
        let mut reconnects = self.peers.reconnects();
        let channel: Channel = self.peers.channel(addr).map_err(Status::unavailable)?;
        let mut client = DispatcherClient::new(channel);
        let mut stream = client.session(SessionRequest {}).await?.into_inner();
        tracing::info!(manager = %addr, "dispatcher session open");
        let mut known = Known::default();
        let mut period = Duration::from_secs(1);
        let mut beat = tokio::time::interval(period);
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let mut msg = msg?
                        .ok_or_else(|| Status::unavailable("the manager closed the session"))?;
                    if let Some(work) = msg.work.take() {
                        let _ = self.work.send((addr.to_string(), work));
                        continue;
                    }
                    let p = Duration::from_millis(msg.heartbeat_ms.max(50));
                    if p != period {
                        period = p;
                        beat = tokio::time::interval(period);
                    }
                    self.apply(&mut known, msg);
                }
                _ = beat.tick() => {
                    tokio::time::timeout(period * 2, client.heartbeat(HeartbeatRequest {}))
                        .await
                        .map_err(|_| Status::deadline_exceeded("heartbeat timed out"))??;
                }
                _ = reconnects.changed() => {
                    // The manager judges a peer by the certificate it showed
                    // at the handshake: show it the current one.
                    return Err(Status::unavailable("reconnecting with the current certificate"));
                }
                Some(report) = self.reports.recv() => {
                    self.pending.extend(report);
                    while let Ok(more) = self.reports.try_recv() {
                        self.pending.extend(more);
                    }
                }
            }
            if !self.pending.is_empty() {
                self.flush(&mut client, period).await?;
            }
        }
    }

    fn apply(&mut self, known: &mut Known, msg: SessionMessage) {
        if !msg.view_json.is_empty() {
            match serde_json::from_str(&msg.view_json) {
                Ok(v) => known.view = v,
                Err(e) => tracing::warn!(error = %e, "undecodable view from the dispatcher"),
            }
        }
        for json in &msg.upserts_json {
            match serde_json::from_str::<Task>(json) {
                Ok(t) => {
                    known.tasks.insert(t.id.clone(), t);
                }
                Err(e) => tracing::warn!(error = %e, "undecodable task from the dispatcher"),
            }
        }
        for id in &msg.removed {
            known.tasks.remove(id);
        }
        if !msg.secrets.is_empty() || !msg.secrets_removed.is_empty() {
            // IDs only: the bytes are never logged.
            let ids: Vec<&str> = msg.secrets.iter().map(|s| s.id.as_str()).collect();
            tracing::info!(received = ?ids, forgotten = msg.secrets_removed.len(), "secrets received from the dispatcher");
        }
        for s in msg.secrets {
            known.secrets.insert((s.id, s.version), s.data);
        }
        for s in msg.secrets_removed {
            known.secrets.remove(&(s.id, s.version));
        }
        self.standing.send_if_modified(|s| {
            let role = !msg.role.is_empty() && s.role != msg.role;
            let trust = !msg.trust_pem.is_empty() && s.trust_pem != msg.trust_pem;
            if role {
                s.role = msg.role.clone();
            }
            if trust {
                s.trust_pem = msg.trust_pem.clone();
            }
            role || trust
        });
        if !msg.managers.is_empty() && *self.managers.borrow() != msg.managers {
            self.managers.send_replace(msg.managers.clone());
        }
        self.assigned.send_replace(Some(Arc::new(Assigned {
            tasks: known.tasks.values().cloned().collect(),
            view: known.view.clone(),
            secrets: known.secrets.clone(),
        })));
    }

    async fn flush(
        &mut self,
        client: &mut DispatcherClient<Channel>,
        period: Duration,
    ) -> Result<(), Status> {
        let req = StatusRequest {
            updates_json: self
                .pending
                .iter()
                .map(|u| serde_json::to_string(&u).expect("statuses serialize"))
                .collect(),
        };
        tokio::time::timeout(period * 3, client.update_status(req))
            .await
            .map_err(|_| Status::deadline_exceeded("status report timed out"))??;
        self.pending.clear();
        Ok(())
    }
}
