//! The data key on disk, and the unlock key's text form.
//!
//! `secrets.key` is JSON: `{"data_key": SEALED, "kek": KEY}`, where SEALED
//! is the data key sealed by KEY (base64). Under autolock there is no
//! `kek`: the data key is sealed by the swarm's unlock key, which only the
//! operator holds (`SWMKEY-1-...`, as docker prints it).

use super::{open_with, seal_with, Key, Keys, KEY_LEN};
use anyhow::{Context, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FILE: &str = "secrets.key";
/// What the data key is bound to, sealed on disk.
const DATA_BINDING: &str = "node/data-key";
/// What the node's TLS key is bound to, sealed on disk under autolock.
pub const TLS_KEY_BINDING: &str = "node/tls-key";
const UNLOCK_PREFIX: &str = "SWMKEY-1-";

#[derive(Serialize, Deserialize)]
struct File {
    #[serde(with = "crate::types::base64_bytes")]
    data_key: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kek: Option<String>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

fn key_of(bytes: &[u8], what: &str) -> Result<Key> {
    Key::try_from(bytes).map_err(|_| anyhow::anyhow!("{what} is not a {KEY_LEN}-byte key"))
}

/// The keys as the file at `path` has them: none, open, or locked.
pub(super) fn read(path: &Path) -> Result<Keys> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Keys::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let corrupt = || {
        format!(
            "{} is corrupt; restore it or leave the swarm",
            path.display()
        )
    };
    let file: File = serde_json::from_slice(&bytes).with_context(corrupt)?;
    let Some(kek) = file.kek else {
        return Ok(Keys {
            locked: true,
            ..Keys::default()
        });
    };
    let kek = key_of(&b64().decode(kek).with_context(corrupt)?, "the local key")?;
    let data = open_with(&kek, DATA_BINDING, &file.data_key).with_context(corrupt)?;
    Ok(Keys {
        data: Some(key_of(&data, "the data key")?),
        kek: Some(kek),
        autolock: false,
        locked: false,
    })
}

/// The data key in the file at `path`, opened with `unlock_key`.
pub(super) fn open_with_unlock_key(path: &Path, unlock_key: &Key) -> Result<Key> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))?;
    let data = open_with(unlock_key, DATA_BINDING, &file.data_key)
        .map_err(|_| anyhow::anyhow!("invalid unlock key"))?;
    key_of(&data, "the data key")
}

/// Write `keys` to `path`: the data key sealed by the key-encryption key,
/// which is written beside it unless it is the unlock key.
pub(super) fn write(path: &Path, keys: &Keys) -> Result<()> {
    let (Some(data), Some(kek)) = (keys.data, keys.kek) else {
        anyhow::bail!("no data key to keep");
    };
    let file = File {
        data_key: seal_with(&kek, DATA_BINDING, &data)?,
        kek: (!keys.autolock).then(|| b64().encode(kek)),
    };
    crate::files::write_private(path, &serde_json::to_vec(&file)?)
}

/// The unlock key as the operator sees it.
pub fn unlock_key_text(key: &Key) -> String {
    format!("{UNLOCK_PREFIX}{}", b64().encode(key))
}

/// An unlock key from its text form.
pub fn parse_unlock_key(text: &str) -> Result<Key, String> {
    let body = text
        .trim()
        .strip_prefix(UNLOCK_PREFIX)
        .ok_or_else(|| format!("invalid unlock key: it must start with {UNLOCK_PREFIX}"))?;
    let bytes = b64()
        .decode(body)
        .map_err(|_| "invalid unlock key: not base64 after the prefix".to_string())?;
    Key::try_from(bytes.as_slice()).map_err(|_| "invalid unlock key: wrong length".to_string())
}
