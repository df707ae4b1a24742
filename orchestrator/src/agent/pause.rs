//! The pause image, carried in the binary: a static build of images/pause
//! (orchestrator/build.rs) that the agent imports into Docker as
//! `swarm/pause:latest` whenever that image is missing or is not the one
//! this binary carries, so a host runs tasks with no image build and no
//! registry, and an upgraded daemon never runs an older pause process.
//!
//! A pause image named with `--pause-image` is the operator's: it is used
//! as it is, never imported over.

use super::engine::Engine;
use tokio::sync::Mutex;

pub const DEFAULT_IMAGE: &str = "swarm/pause:latest";

/// The static pause binary.
const BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swarm-pause"));

/// Names the binary an image was imported from (its SHA-256), so a stale
/// image is told from the current one without running it.
const DIGEST_LABEL: &str = "swarm.pause.digest";

/// One import at a time: tasks prepared together all find it missing.
static IMPORTING: Mutex<()> = Mutex::const_new(());

/// The binary's SHA-256 in hex, worked out once: every task's prepare
/// compares the image's label with it.
static DIGEST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let d = ring::digest::digest(&ring::digest::SHA256, BINARY);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
});

/// The image's root filesystem: the binary as `/pause`, nothing else.
fn rootfs() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(BINARY.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "pause", BINARY)
        .expect("appending to a tar in memory");
    tar.into_inner().expect("finishing a tar in memory")
}

/// Make `image` usable as the pause image: the carried one is imported
/// when it is missing or stale. An error says what Docker refused.
pub async fn ensure(engine: &Engine, image: &str) -> Result<(), String> {
    if image != DEFAULT_IMAGE {
        return engine
            .check_image(image)
            .await
            .map_err(|e| format!("{e} (the pause image given with --pause-image)"));
    }
    let want = DIGEST.as_str();
    let current = |labels: &std::collections::HashMap<String, String>| {
        labels.get(DIGEST_LABEL).map(String::as_str) == Some(want)
    };
    if engine.image_labels(image).await.is_ok_and(|l| current(&l)) {
        return Ok(());
    }
    let _one = IMPORTING.lock().await;
    // Another task may have imported it while this one waited.
    if engine.image_labels(image).await.is_ok_and(|l| current(&l)) {
        return Ok(());
    }
    let label = format!("LABEL {DIGEST_LABEL}={want}");
    let changes = [r#"ENTRYPOINT ["/pause"]"#, label.as_str()];
    engine
        .import(image, rootfs(), &changes)
        .await
        .map_err(|e| format!("importing the pause image {image}: {e}"))?;
    tracing::info!(image, digest = %want, "imported the pause image this binary carries");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_holds_only_an_executable_static_pause() {
        let bytes = rootfs();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, [("pause".into(), 0o755, BINARY.len() as u64)]);
        // A 64-bit ELF with no program interpreter (PT_INTERP): it runs in
        // an image with no libc and no loader.
        assert_eq!(&BINARY[..5], b"\x7fELF\x02");
        let word = |at: usize, n: usize| {
            BINARY[at..at + n]
                .iter()
                .rev()
                .fold(0usize, |v, b| v << 8 | *b as usize)
        };
        let (phoff, phentsize, phnum) = (word(0x20, 8), word(0x36, 2), word(0x38, 2));
        let types: Vec<usize> = (0..phnum).map(|i| word(phoff + i * phentsize, 4)).collect();
        assert!(!types.is_empty() && !types.contains(&3), "{types:?}");
        assert_eq!(DIGEST.len(), 64);
    }
}
