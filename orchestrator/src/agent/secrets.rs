//! Secret and config files for tasks. The dispatcher sends this node the
//! bytes its tasks use (and nothing else); the agent keeps them in memory
//! and writes each task's files on a tmpfs, owned and moded as the service
//! asks, which the task's container sees read-only at the target path.
//! Nothing of it touches a disk: the directory is refused unless it is on
//! tmpfs, and the bytes are never logged.

use crate::types::{SecretKind, SecretRef, Task};
use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Secret bytes as received, by (secret ID, version).
pub type Received = BTreeMap<(String, u64), Vec<u8>>;

pub struct SecretFiles {
    /// `<--secrets-dir>/<node ID>`: one directory per task below it.
    pub dir: PathBuf,
}

/// A file to mount into a task's container: host path, container path.
pub type Mount = (String, String);

impl SecretFiles {
    /// Make sure the directory exists and is a tmpfs, mounting one when it
    /// is not (a daemon in the host's mount namespace; the lab mounts its
    /// own, since mounts made inside `ip netns exec` stay there).
    pub fn ensure_tmpfs(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        if is_tmpfs(&self.dir)? {
            return Ok(());
        }
        mount_tmpfs(&self.dir)?;
        if !is_tmpfs(&self.dir)? {
            return Err(format!("{} is not on tmpfs", self.dir.display()));
        }
        Ok(())
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.dir.join(task_id)
    }

    /// Write the task's secret and config files; returns what to mount.
    /// An error names the reference at fault (never its bytes).
    pub fn write(&self, task: &Task, received: &Received) -> Result<Vec<Mount>, String> {
        let refs: Vec<(SecretKind, &SecretRef)> = task.spec.data_refs().collect();
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_tmpfs()?;
        let dir = self.task_dir(&task.id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut mounts = Vec::new();
        for (i, (kind, r)) in refs.into_iter().enumerate() {
            let data = received.get(&(r.id.clone(), r.version)).ok_or_else(|| {
                format!(
                    "{kind} {} (version {}) was not sent to this node",
                    r.name, r.version
                )
            })?;
            let path = dir.join(format!("{kind}-{i}"));
            write_file(&path, data, r).map_err(|e| format!("{kind} {}: {e}", r.name))?;
            mounts.push((path.display().to_string(), kind.mount_path(&r.target)));
        }
        Ok(mounts)
    }

    /// Drop a task's files (it was removed).
    pub fn forget(&self, task_id: &str) {
        let dir = self.task_dir(task_id);
        if dir.exists() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn write_file(path: &Path, data: &[u8], r: &SecretRef) -> std::io::Result<()> {
    use std::io::Write;
    let uid = parse_id(&r.uid, "uid")?;
    let gid = parse_id(&r.gid, "gid")?;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    f.set_permissions(std::fs::Permissions::from_mode(r.mode & 0o7777))?;
    Ok(())
}

fn parse_id(s: &str, what: &str) -> std::io::Result<u32> {
    if s.is_empty() {
        return Ok(0);
    }
    s.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} {s:?} is not a number"),
        )
    })
}

fn is_tmpfs(dir: &Path) -> Result<bool, String> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} has a NUL byte", dir.display()))?;
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and fs a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut fs) } != 0 {
        return Err(format!(
            "statfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(fs.f_type == libc::TMPFS_MAGIC)
}

fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} has a NUL byte", dir.display()))?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: all pointers are valid C strings for the call's duration.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            c"mode=0700,size=64m".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mounting a tmpfs for secrets at {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_get_the_owner_and_mode_the_reference_asks_for() {
        let dir = tempfile::tempdir().unwrap();
        let r = SecretRef {
            uid: "1000".into(),
            gid: "1001".into(),
            mode: 0o400,
            ..SecretRef::named("db")
        };
        let path = dir.path().join("f");
        write_file(&path, b"pw", &r).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o400));
        assert_eq!(std::fs::read(&path).unwrap(), b"pw");
        let bad = SecretRef {
            uid: "root".into(),
            ..r
        };
        assert!(write_file(&path, b"pw", &bad).is_err());
    }

    #[test]
    fn dev_shm_is_tmpfs_and_the_repo_is_not() {
        assert!(is_tmpfs(Path::new("/dev/shm")).unwrap());
        assert!(!is_tmpfs(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap());
    }
}
