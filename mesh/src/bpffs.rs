//! Making sure pins land in the host's BPF filesystem. Maps and links are
//! pinned under /sys/fs/bpf/<prefix>/ so that a restarted loader finds them.
//! `ip netns exec` (how the lab runs each node) gives the process a fresh
//! sysfs, hiding the host's bpffs. Then the host's bpffs is bind-mounted back
//! over /sys/fs/bpf in this process's own mount namespace, from a second
//! mount point outside /sys that scripts/setup.sh makes, so every process
//! sees the same pins.

use crate::dataplane::DataplaneError;
use std::path::Path;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where scripts/setup.sh also mounts the host's bpffs.
const HOST_BPFFS: &str = "/run/swarm/bpffs";

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> DataplaneError {
    let op = op.into();
    move |source| DataplaneError::Io { op, source }
}

/// Whether `ensure` can work: the host's bpffs is at /sys/fs/bpf, or at
/// its alias for processes in network namespaces.
pub fn available() -> bool {
    is_bpffs(Path::new("/sys/fs/bpf")) || is_bpffs(Path::new(HOST_BPFFS))
}

/// Ensure /sys/fs/bpf is the host's bpffs, then create `dir` under it.
pub fn ensure(dir: &Path) -> Result<(), DataplaneError> {
    let root = Path::new("/sys/fs/bpf");
    if !is_bpffs(root) {
        if !is_bpffs(Path::new(HOST_BPFFS)) {
            return Err(DataplaneError::Bpf(
                "no BPF filesystem at /sys/fs/bpf, nor at /run/swarm/bpffs (its alias for \
                 processes in network namespaces); run scripts/setup.sh, which mounts both"
                    .into(),
            ));
        }
        std::fs::create_dir_all(root).map_err(io("creating /sys/fs/bpf"))?;
        nix::mount::mount(
            Some(HOST_BPFFS),
            root,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| DataplaneError::Io {
            op: "bind-mounting the host's bpffs at /sys/fs/bpf".into(),
            source: e.into(),
        })?;
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))
}
