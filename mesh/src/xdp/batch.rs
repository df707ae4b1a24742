//! Batched map operations (BPF_MAP_{LOOKUP,UPDATE,DELETE}_BATCH): a whole
//! flow table read in a few hundred system calls instead of two per entry,
//! and a service's Maglev chunks written or removed in one. aya has no
//! batch operations, so this is the raw bpf(2) command.

use aya::Pod;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The batch member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf_batch(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid batch attribute whose pointers the callers
    // set to live buffers of `count` elements; its size is given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Write `keys[i]` → `values[i]` into the map `fd` (added or replaced).
pub fn update<K: Pod, V: Pod>(fd: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "a value for every key");
    for (k, v) in keys.chunks(4096).zip(values.chunks(4096)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        bpf_batch(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}

/// Delete `keys` from the hash map `fd`. A missing key (gone already)
/// stops the kernel's batch with ENOENT after the keys before it; the rest
/// are deleted from the key after it.
pub fn delete<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    let mut rest = keys;
    while !rest.is_empty() {
        let part = &rest[..rest.len().min(4096)];
        let mut attr = BatchAttr {
            keys: part.as_ptr() as u64,
            count: part.len() as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        let done = match bpf_batch(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => part.len(),
            // attr.count keys went; the next one was missing.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => attr.count as usize + 1,
            Err(e) => return Err(e),
        };
        rest = &rest[done.min(rest.len())..];
    }
    Ok(())
}

/// Call `f` with every (key, value) of the hash map `fd`, `chunk` entries
/// at a time. Entries added or removed meanwhile may or may not be seen,
/// as with any walk of a live map.
pub fn for_each<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    mut f: impl FnMut(&[K], &[V]),
) -> io::Result<()> {
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![V::default(); chunk];
    // The kernel's position token for hash maps (a bucket index).
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &mut token_in as *mut u64 as u64
            },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        // attr points at buffers of `chunk` keys and values that outlive
        // the call, and at the two tokens.
        let err = bpf_batch(BPF_MAP_LOOKUP_BATCH, &mut attr).err();
        let n = attr.count as usize;
        if n > 0
            && err
                .as_ref()
                .is_none_or(|e| e.raw_os_error() == Some(libc::ENOENT))
        {
            f(&keys[..n], &values[..n]);
        }
        match err {
            None => {}
            // ENOENT: that was the last batch.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Some(e) => return Err(e),
        }
        token_in = token_out;
        first = false;
    }
}
