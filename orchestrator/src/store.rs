//! The cluster store: reads come from the locally applied state, writes go
//! through raft. Manager loops and the agent talk to each other only through
//! this store.

use crate::raft::{self, log_store::LogStore, network::Network, state_machine::StateMachine};
use crate::state::{Command, State};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the raft store at {path}: {source}")]
    Open {
        path: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The command was committed but the state machine refused it.
    #[error("{0}")]
    Rejected(String),
    #[error("no leader: this manager cannot reach a raft leader ({0})")]
    NoLeader(String),
    #[error("raft error: {0}")]
    Raft(String),
}

#[derive(Clone)]
pub struct Store {
    raft: raft::Raft,
    raft_id: raft::NodeId,
    state: watch::Receiver<Arc<State>>,
}

impl Store {
    /// Open (or create) the store in `dir`, restoring any state on disk.
    pub async fn open(dir: &Path, raft_id: raft::NodeId) -> Result<Store, StoreError> {
        let path = dir.join("raft.redb");
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.display().to_string(),
            source: e,
        };
        let db = Arc::new(redb::Database::create(&path).map_err(|e| open_err(e.into()))?);
        let log = LogStore::new(db.clone()).map_err(|e| open_err(e.into()))?;
        let (sm, state) = StateMachine::open(db).map_err(|e| open_err(e.into()))?;
        let config = Arc::new(raft::config().validate().map_err(|e| open_err(e.into()))?);
        let raft = raft::Raft::new(raft_id, config, Network, log, sm)
            .await
            .map_err(|e| open_err(e.into()))?;
        Ok(Store {
            raft,
            raft_id,
            state,
        })
    }

    /// Make this node the single voter of a new raft group. Fails if the group
    /// already has a membership.
    pub async fn bootstrap(&self, advertise_addr: &str) -> Result<(), StoreError> {
        let members = BTreeMap::from([(self.raft_id, BasicNode::new(advertise_addr))]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| StoreError::Raft(e.to_string()))
    }

    /// Whether this store has been part of a raft group (initialised before).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Wait until some node leads the group.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(), StoreError> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::NoLeader(e.to_string()))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.raft_id)
    }

    pub fn raft_metrics(&self) -> watch::Receiver<openraft::RaftMetrics<raft::NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// The latest applied state.
    pub fn state(&self) -> Arc<State> {
        self.state.borrow().clone()
    }

    /// A receiver that changes whenever a command is applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<State>> {
        self.state.clone()
    }

    /// Commit a command and wait for it to be applied here.
    pub async fn write(&self, cmd: Command) -> Result<(), StoreError> {
        use openraft::error::{ClientWriteError, RaftError};
        match self.raft.client_write(cmd).await {
            Ok(resp) => match resp.data.error {
                Some(e) => Err(StoreError::Rejected(e)),
                None => Ok(()),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(StoreError::NoLeader(format!(
                    "leader is {:?}; writes must go to the leader",
                    f.leader_id
                )))
            }
            Err(e) => Err(StoreError::Raft(e.to_string())),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
