//! Secrets and configs: named, versioned bytes that tasks see as files.
//! The two kinds share one shape; a secret's bytes are sealed (encrypted by
//! the managers' key, `secrets.rs`) before they reach the store, a config's
//! are kept as given.

use super::{Meta, Millis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Docker's limit on one secret or config (500 KiB).
pub const MAX_DATA_BYTES: usize = 500 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretKind {
    Secret,
    Config,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Secret => "secret",
            SecretKind::Config => "config",
        }
    }

    /// Where a task sees it when the reference gives no absolute target:
    /// secrets under `/run/secrets/`, configs at the root, as in docker.
    pub fn mount_path(self, target: &str) -> String {
        if target.starts_with('/') {
            return target.to_string();
        }
        match self {
            SecretKind::Secret => format!("/run/secrets/{target}"),
            SecretKind::Config => format!("/{target}"),
        }
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersion {
    /// 1, 2, ...: `secret update` adds the next one.
    pub version: u64,
    pub created_at: Millis,
    /// Sealed for secrets (nonce, ciphertext and tag), plain for configs;
    /// empty (and left out) in what `inspect` shows of a secret.
    #[serde(
        default,
        with = "crate::types::base64_bytes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub id: String,
    pub kind: SecretKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Oldest first; never empty once stored.
    pub versions: Vec<SecretVersion>,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Secret {
    pub fn latest(&self) -> Option<&SecretVersion> {
        self.versions.last()
    }

    pub fn version(&self, v: u64) -> Option<&SecretVersion> {
        self.versions.iter().find(|x| x.version == v)
    }

    /// What `inspect` and `ls` may show: a secret's bytes never leave the
    /// managers this way (a config's do, as in docker).
    pub fn redacted(&self) -> Secret {
        let mut s = self.clone();
        if s.kind == SecretKind::Secret {
            for v in &mut s.versions {
                v.data.clear();
            }
        }
        s
    }
}

/// A service's use of a secret or config: which version of it, and the
/// file a task sees it as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// The secret's ID once the daemon resolved it (the CLI sends the name).
    #[serde(default)]
    pub id: String,
    pub name: String,
    /// 0 until resolved; then the version tasks mount. `secret update`
    /// moves it to the new version, which rolls the service.
    #[serde(default)]
    pub version: u64,
    /// A file name (relative to `/run/secrets` or `/`) or an absolute path.
    pub target: String,
    #[serde(default = "root")]
    pub uid: String,
    #[serde(default = "root")]
    pub gid: String,
    /// File mode; docker's default is 0444.
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn root() -> String {
    "0".into()
}

fn default_mode() -> u32 {
    0o444
}

impl SecretRef {
    /// A reference with docker's defaults: the target is the name.
    pub fn named(name: &str) -> SecretRef {
        SecretRef {
            id: String::new(),
            name: name.to_string(),
            version: 0,
            target: name.to_string(),
            uid: root(),
            gid: root(),
            mode: default_mode(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_to_dockers_places() {
        assert_eq!(
            SecretKind::Secret.mount_path("db_password"),
            "/run/secrets/db_password"
        );
        assert_eq!(SecretKind::Config.mount_path("app.conf"), "/app.conf");
        assert_eq!(SecretKind::Secret.mount_path("/etc/x"), "/etc/x");
    }

    #[test]
    fn redaction_drops_secret_bytes_only() {
        let s = Secret {
            id: "i".into(),
            kind: SecretKind::Secret,
            name: "n".into(),
            labels: Default::default(),
            versions: vec![SecretVersion {
                version: 1,
                created_at: 0,
                data: b"x".to_vec(),
            }],
            meta: Meta::default(),
        };
        assert!(s.redacted().versions[0].data.is_empty());
        let c = Secret {
            kind: SecretKind::Config,
            ..s
        };
        assert_eq!(c.redacted().versions[0].data, b"x");
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"data\":\"eA==\""), "{json}");
    }
}
