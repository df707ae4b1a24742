//! What a task's container is made with, beyond image, command and
//! environment: the options compose files (and docker's service flags)
//! give a swarm service's container spec.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A path of the node.
    Bind,
    /// A named volume of the node's engine (made on first use).
    #[default]
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path (bind) or volume name (volume); empty for tmpfs and for an
    /// anonymous volume.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    /// tmpfs only; 0 means the engine's default.
    #[serde(default)]
    pub tmpfs_size_bytes: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// Every field's default leaves the image's (or Docker's) own behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerOptions {
    /// Replaces the image's ENTRYPOINT when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The task's hostname (set on its sandbox, whose UTS and network the
    /// application shares); default `SERVICE-SLOT-TASKID`, as the tutorial
    /// page shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Time between the stop signal and SIGKILL; Docker's 10 s when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_ms: Option<u64>,
    /// Container labels (compose's service-level `labels:`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// `HOST:IP` entries for the task's /etc/hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
}

impl ContainerOptions {
    pub fn is_default(&self) -> bool {
        *self == ContainerOptions::default()
    }
}
