fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from Debian's protobuf-compiler (scripts/setup.sh installs it).
    // The broker's messages are shared: the control API carries them
    // unchanged between the CLI and its daemon. The APIs that import them
    // refer to them by path, which leaves a broker file holding no
    // messages, so broker.proto is compiled last, over it.
    tonic_build::configure()
        .extern_path(".swarm.broker.v1", "crate::api::broker_pb")
        .compile_protos(&["proto/control.proto", "proto/cluster.proto"], &["proto"])?;
    tonic_build::configure().compile_protos(&["proto/broker.proto"], &["proto"])?;
    for proto in ["broker", "control", "cluster"] {
        println!("cargo:rerun-if-changed=proto/{proto}.proto");
    }
    // The commit `swarm version` reports: from git when building in a
    // checkout, "unknown" otherwise (a source tarball).
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SWARM_COMMIT={commit}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    build_pause()?;
    Ok(())
}

/// The pause process (images/pause) as a static binary, which the daemon
/// carries and imports into Docker as the pause image when it is missing
/// (`agent::pause`), so a host needs no image build to run tasks. It has no
/// dependencies, so rustc builds it directly: no nested cargo and its locks.
fn build_pause() -> Result<(), Box<dyn std::error::Error>> {
    let src = "../images/pause/src/main.rs";
    println!("cargo:rerun-if-changed={src}");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("swarm-pause");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = std::env::var("TARGET")?;
    let status = std::process::Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "swarm_pause",
        ])
        .args(["--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        // Static: the image holds nothing but this file.
        .args(["-C", "target-feature=+crt-static"])
        .arg("-o")
        .arg(&out)
        .arg(src)
        .env("CARGO_PKG_VERSION", std::env::var("CARGO_PKG_VERSION")?)
        .status()
        .map_err(|e| format!("running {rustc} for the pause binary: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{rustc} failed to build the static pause binary from {src} ({status}); \
             a static glibc (libc6-dev) is needed, scripts/setup.sh installs it"
        )
        .into());
    }
    Ok(())
}
