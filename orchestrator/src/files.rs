//! Files the daemon keeps in its data directory.

use anyhow::{Context, Result};
use std::path::Path;

/// Replace `path` with `body`, whole: a file only its owner can read,
/// created so (not chmod-ed after), written to a temporary file, synced,
/// renamed over the old one, and the directory synced. A crash leaves the
/// old file or the new one, and once this returns the new one survives a
/// power cut.
pub fn write_private(path: &Path, body: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
