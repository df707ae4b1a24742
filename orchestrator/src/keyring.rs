//! The managers' secrets key: AES-256-GCM, one key for the whole swarm,
//! kept by every manager in its data directory (`secrets.key`, mode 0600)
//! and never in the raft store, whose log and snapshots hold only what it
//! sealed. `init` makes the key; a manager gets it when it joins (in the
//! join answer, over TLS pinned to the CA) or when it is promoted (from
//! another manager, with its manager certificate). Workers never hold it.
//!
//! Each sealed value is bound to the secret and version it belongs to (the
//! AEAD's associated data), so a sealed blob cannot be moved to another
//! secret in the store and still open.

use anyhow::{Context, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub const KEY_LEN: usize = 32;
const FILE: &str = "secrets.key";

/// Shared by the control API (which seals), the dispatcher (which opens for
/// the agents that need a secret) and the cluster service (which hands the
/// key to new managers). Empty on workers.
#[derive(Clone)]
pub struct Keyring {
    path: PathBuf,
    key: Arc<RwLock<Option<[u8; KEY_LEN]>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("this manager has no secrets key yet (it is still joining or being promoted); retry on another manager")]
    NoKey,
    #[error(
        "secret data does not open with this swarm's key (corrupt, or sealed by another swarm)"
    )]
    Corrupt,
    #[error("the system's random source failed; cannot seal a secret")]
    Random,
}

impl Keyring {
    /// The key in `dir`, if this node has one.
    pub fn load(dir: &Path) -> Result<Keyring> {
        let path = dir.join(FILE);
        let key =
            match std::fs::read(&path) {
                Ok(b) => Some(<[u8; KEY_LEN]>::try_from(b.as_slice()).map_err(|_| {
                    anyhow::anyhow!("{} is not a {KEY_LEN}-byte key", path.display())
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
        Ok(Keyring {
            path,
            key: Arc::new(RwLock::new(key)),
        })
    }

    pub fn has_key(&self) -> bool {
        self.key.read().expect("keyring lock").is_some()
    }

    /// A fresh key, for `init`.
    pub fn create(&self) -> Result<()> {
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        self.install(&key)
    }

    /// Keep `key` (from a join answer or another manager), on disk first.
    pub fn install(&self, key: &[u8]) -> Result<()> {
        let key = <[u8; KEY_LEN]>::try_from(key).map_err(|_| {
            anyhow::anyhow!("the secrets key is {} bytes, not {KEY_LEN}", key.len())
        })?;
        crate::files::write_private(&self.path, &key)?;
        *self.key.write().expect("keyring lock") = Some(key);
        Ok(())
    }

    /// The raw key, to hand to another manager.
    pub fn export(&self) -> Option<Vec<u8>> {
        self.key.read().expect("keyring lock").map(|k| k.to_vec())
    }

    /// Forget the key (on `leave` or demotion), file included.
    pub fn clear(&self) {
        *self.key.write().expect("keyring lock") = None;
        let _ = std::fs::remove_file(&self.path);
    }

    fn cipher(&self) -> Result<LessSafeKey, SealError> {
        let key = self
            .key
            .read()
            .expect("keyring lock")
            .ok_or(SealError::NoKey)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte AES-256 key");
        Ok(LessSafeKey::new(unbound))
    }

    /// Encrypt `plain` for the secret version named by `bound_to`: a random
    /// nonce, then the ciphertext and its tag.
    pub fn seal(&self, bound_to: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let cipher = self.cipher()?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = plain.to_vec();
        cipher
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound_to.as_bytes()),
                &mut out,
            )
            .map_err(|_| SealError::Corrupt)?;
        let mut sealed = nonce.to_vec();
        sealed.append(&mut out);
        Ok(sealed)
    }

    pub fn open(&self, bound_to: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let cipher = self.cipher()?;
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        let mut buf = body.to_vec();
        let plain = cipher
            .open_in_place(nonce, Aad::from(bound_to.as_bytes()), &mut buf)
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

/// What a sealed secret version is bound to.
pub fn binding(secret_id: &str, version: u64) -> String {
    format!("{secret_id}/{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::load(dir.path()).unwrap();
        assert!(matches!(ring.seal("s/1", b"x"), Err(SealError::NoKey)));
        ring.create().unwrap();
        let sealed = ring.seal("s/1", b"supersecretpassword").unwrap();
        assert!(!sealed
            .windows(b"supersecret".len())
            .any(|w| w == b"supersecret"));
        assert_eq!(ring.open("s/1", &sealed).unwrap(), b"supersecretpassword");
        assert!(matches!(ring.open("s/2", &sealed), Err(SealError::Corrupt)));
        assert!(matches!(
            ring.open("s/1", &sealed[..5]),
            Err(SealError::Corrupt)
        ));

        // The key survives a restart, readable by its owner only.
        let again = Keyring::load(dir.path()).unwrap();
        assert_eq!(again.open("s/1", &sealed).unwrap(), b"supersecretpassword");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let other = tempfile::tempdir().unwrap();
        let stranger = Keyring::load(other.path()).unwrap();
        stranger.create().unwrap();
        assert!(matches!(
            stranger.open("s/1", &sealed),
            Err(SealError::Corrupt)
        ));
    }
}
