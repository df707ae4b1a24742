//! Raft consensus for the cluster store, built on openraft with its log and
//! state machine kept on disk in one redb file. Managers talk raft to each
//! other over mutual TLS (`network`, `service`).

pub mod elector;
pub mod log_store;
pub mod network;
pub mod service;
pub mod state_machine;

use crate::state::{Command, Response};
use openraft::BasicNode;
use std::io::Cursor;

openraft::declare_raft_types!(
    /// Types for the cluster store's raft group.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;

/// redb table names, shared by the log store and the state machine, which live
/// in the same file so one fsync policy covers both.
pub(crate) mod tables {
    use redb::TableDefinition;
    /// Log index -> JSON-encoded entry.
    pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
    /// "vote", "committed", "last_purged" -> JSON.
    pub const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
    /// "<kind>/<id>" -> JSON object of the state machine.
    pub const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_objects");
    /// "last_applied", "membership" -> JSON.
    pub const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
}

/// Raft timing tuned for a LAN cluster: fast failure detection, as the
/// failover goals (under a second) need. openraft's election timer is off:
/// `elector` starts elections, after a pre-vote. `election_timeout_max` is
/// the leader lease (a voter ignores candidates for that long after it
/// last heard the leader); every AppendEntries must answer within one
/// heartbeat interval, so that stays at 100 ms.
/// Snapshots every 5,000 applied entries, keeping the last 1,000 in the log
/// so a briefly lagging manager catches up from the log, not a snapshot.
pub fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "swarm".into(),
        heartbeat_interval: 100,
        election_timeout_min: 250,
        election_timeout_max: 350,
        enable_elect: false,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "raft/suite_tests.rs"]
mod suite_tests;

#[cfg(test)]
#[path = "raft/crash_tests.rs"]
mod crash_tests;
