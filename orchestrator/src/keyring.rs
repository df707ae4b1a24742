//! The swarm's data key: AES-256-GCM, one key for the whole swarm, held by
//! every manager. It seals what the raft store must not hold in the clear:
//! secret data, the CA key, the join secrets and the unlock key. `init`
//! makes it; a manager gets it when it joins (in the join answer, over TLS
//! pinned to the CA) or when it is promoted (from another manager, with
//! its manager certificate). Workers never hold it.
//!
//! On disk (`secrets.key`, `at_rest`) the data key is itself sealed, by a
//! key-encryption key: a random one kept beside it, or, with autolock on,
//! the swarm's unlock key, which is kept nowhere on the node. A restarted
//! manager under autolock is locked until `swarm unlock` gives the key.
//!
//! Each sealed value is bound to what it belongs to (the AEAD's associated
//! data), so a sealed blob cannot be moved to another place in the store
//! and still open.

mod at_rest;

use crate::types::{NodeRole, Sealed};
use anyhow::Result;
pub use at_rest::{parse_unlock_key, unlock_key_text};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub const KEY_LEN: usize = 32;
pub type Key = [u8; KEY_LEN];

/// Shared by the control API (which seals), the dispatcher (which opens for
/// the agents that need a secret), the cluster service (which hands the
/// key to new managers) and the certificate files (which seal the node's
/// key under autolock). Empty on workers.
#[derive(Clone)]
pub struct Keyring {
    path: PathBuf,
    keys: Arc<RwLock<Keys>>,
}

#[derive(Default)]
struct Keys {
    /// The data key, once known (None on a worker, or while locked).
    data: Option<Key>,
    /// The key that seals the data key on disk: a random local one, or the
    /// unlock key.
    kek: Option<Key>,
    /// Whether `kek` is the swarm's unlock key (autolock).
    autolock: bool,
    /// The file holds a data key this node cannot open yet.
    locked: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("this manager has no data key yet (it is still joining or being promoted, or it is locked); retry on another manager")]
    NoKey,
    #[error(
        "sealed data does not open with this swarm's key (corrupt, or sealed by another swarm)"
    )]
    Corrupt,
    #[error("the system's random source failed; cannot seal")]
    Random,
}

pub fn random_key() -> Result<Key> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(key)
}

impl Keyring {
    /// The keys in `dir`, if this node has any. A file whose data key is
    /// sealed by the unlock key leaves the keyring locked.
    pub fn load(dir: &Path) -> Result<Keyring> {
        let path = dir.join(at_rest::FILE);
        let keys = at_rest::read(&path)?;
        Ok(Keyring {
            path,
            keys: Arc::new(RwLock::new(keys)),
        })
    }

    pub fn has_key(&self) -> bool {
        self.keys.read().expect("keyring lock").data.is_some()
    }

    /// Whether the data key is on disk but sealed by an unlock key this
    /// node has not been given since it started.
    pub fn is_locked(&self) -> bool {
        self.keys.read().expect("keyring lock").locked
    }

    /// A fresh data key, for `init`.
    pub fn create(&self) -> Result<()> {
        self.install(&random_key()?)
    }

    /// Keep the data key `key` (from a join answer or another manager), on
    /// disk first, sealed by a fresh local key-encryption key.
    pub fn install(&self, key: &[u8]) -> Result<()> {
        let data = Key::try_from(key)
            .map_err(|_| anyhow::anyhow!("the data key is {} bytes, not {KEY_LEN}", key.len()))?;
        let next = Keys {
            data: Some(data),
            kek: Some(random_key()?),
            autolock: false,
            locked: false,
        };
        at_rest::write(&self.path, &next)?;
        *self.keys.write().expect("keyring lock") = next;
        Ok(())
    }

    /// Open a locked keyring with the swarm's unlock key.
    pub fn unlock(&self, unlock_key: &Key) -> Result<()> {
        let data = at_rest::open_with_unlock_key(&self.path, unlock_key)?;
        let mut keys = self.keys.write().expect("keyring lock");
        *keys = Keys {
            data: Some(data),
            kek: Some(*unlock_key),
            autolock: true,
            locked: false,
        };
        Ok(())
    }

    /// Follow the swarm's autolock setting: seal the data key on disk with
    /// the unlock key (and keep no key-encryption key beside it), or with
    /// a fresh local one when autolock is off. Whether anything changed.
    pub fn follow_autolock(&self, unlock_key: Option<&Key>) -> Result<bool> {
        let mut keys = self.keys.write().expect("keyring lock");
        if keys.data.is_none() {
            return Ok(false);
        }
        let next_kek = match (unlock_key, keys.autolock) {
            (Some(k), true) if keys.kek.as_ref() == Some(k) => return Ok(false),
            (None, false) => return Ok(false),
            (Some(k), _) => *k,
            (None, true) => random_key()?,
        };
        let next = Keys {
            data: keys.data,
            kek: Some(next_kek),
            autolock: unlock_key.is_some(),
            locked: false,
        };
        at_rest::write(&self.path, &next)?;
        *keys = next;
        Ok(true)
    }

    /// Whether the node's TLS key is to be sealed on disk (autolock).
    pub fn autolock(&self) -> bool {
        self.keys.read().expect("keyring lock").autolock
    }

    /// Seal the node's TLS key (under autolock), with the data key: it
    /// then opens exactly when the data key does, and rotating the unlock
    /// key leaves it as it is.
    pub fn seal_tls_key(&self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal(at_rest::TLS_KEY_BINDING, plain)
    }

    pub fn open_tls_key(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open(at_rest::TLS_KEY_BINDING, sealed)
    }

    /// The raw data key, to hand to another manager.
    pub fn export(&self) -> Option<Vec<u8>> {
        self.keys
            .read()
            .expect("keyring lock")
            .data
            .map(|k| k.to_vec())
    }

    /// Forget the keys (on `leave` or demotion), file included.
    pub fn clear(&self) {
        *self.keys.write().expect("keyring lock") = Keys::default();
        let _ = std::fs::remove_file(&self.path);
    }

    fn data_key(&self) -> Result<Key, SealError> {
        self.keys
            .read()
            .expect("keyring lock")
            .data
            .ok_or(SealError::NoKey)
    }

    /// Encrypt `plain` with the data key for what `bound_to` names.
    pub fn seal(&self, bound_to: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        seal_with(&self.data_key()?, bound_to, plain)
    }

    pub fn open(&self, bound_to: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        open_with(&self.data_key()?, bound_to, sealed)
    }
}

fn cipher(key: &Key) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

/// A random nonce, then the ciphertext and its tag.
fn seal_with(key: &Key, bound_to: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Random)?;
    let mut out = plain.to_vec();
    cipher(key)
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

fn open_with(key: &Key, bound_to: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN {
        return Err(SealError::Corrupt);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
    let mut buf = body.to_vec();
    let plain = cipher(key)
        .open_in_place(nonce, Aad::from(bound_to.as_bytes()), &mut buf)
        .map_err(|_| SealError::Corrupt)?;
    Ok(plain.to_vec())
}

/// What a sealed secret version is bound to.
pub fn binding(secret_id: &str, version: u64) -> String {
    format!("{secret_id}/{version}")
}

/// The sealed fields of the cluster record, each bound to its name, so a
/// sealed join secret cannot stand in for the CA key.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    CaKey,
    JoinSecret(NodeRole),
    UnlockKey,
}

impl Field {
    fn binding(self) -> &'static str {
        match self {
            Field::CaKey => "cluster/ca-key",
            Field::JoinSecret(NodeRole::Worker) => "cluster/worker-secret",
            Field::JoinSecret(NodeRole::Manager) => "cluster/manager-secret",
            Field::UnlockKey => "cluster/unlock-key",
        }
    }
}

impl Keyring {
    pub fn seal_field(&self, field: Field, plain: &[u8]) -> Result<Sealed, SealError> {
        self.seal(field.binding(), plain).map(Sealed)
    }

    pub fn open_field(&self, field: Field, sealed: &Sealed) -> Result<Vec<u8>, SealError> {
        self.open(field.binding(), &sealed.0)
    }

    /// A sealed field that holds text (a PEM key, a join secret).
    pub fn open_text(&self, field: Field, sealed: &Sealed) -> Result<String, SealError> {
        String::from_utf8(self.open_field(field, sealed)?).map_err(|_| SealError::Corrupt)
    }
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
        let mode = std::fs::metadata(dir.path().join(at_rest::FILE))
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

    #[test]
    fn under_autolock_the_data_key_opens_only_with_the_unlock_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::load(dir.path()).unwrap();
        ring.create().unwrap();
        let sealed = ring.seal("s/1", b"x").unwrap();
        let unlock = random_key().unwrap();
        assert!(ring.follow_autolock(Some(&unlock)).unwrap());
        assert!(!ring.follow_autolock(Some(&unlock)).unwrap(), "no change");
        let file = std::fs::read_to_string(dir.path().join(at_rest::FILE)).unwrap();
        assert!(!file.contains("kek"), "no key beside the data key: {file}");

        // Restarted, it is locked until given the unlock key.
        let again = Keyring::load(dir.path()).unwrap();
        assert!(again.is_locked());
        assert!(matches!(again.open("s/1", &sealed), Err(SealError::NoKey)));
        let wrong = again.unlock(&random_key().unwrap()).unwrap_err();
        assert!(wrong.to_string().contains("invalid unlock key"), "{wrong}");
        again.unlock(&unlock).unwrap();
        assert_eq!(again.open("s/1", &sealed).unwrap(), b"x");
        // The node's TLS key is sealed by the data key, which is open.
        let tls = again.seal_tls_key(b"key").unwrap();
        assert_eq!(again.open_tls_key(&tls).unwrap(), b"key");

        // Off again: the next start needs no key.
        assert!(again.follow_autolock(None).unwrap());
        let third = Keyring::load(dir.path()).unwrap();
        assert!(!third.is_locked());
        assert_eq!(third.open("s/1", &sealed).unwrap(), b"x");

        assert_eq!(parse_unlock_key(&unlock_key_text(&unlock)).unwrap(), unlock);
        assert!(parse_unlock_key("SWMKEY-1-short").is_err());
        assert!(parse_unlock_key("nope").unwrap_err().contains("SWMKEY-1-"));
    }
}
