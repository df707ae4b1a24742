fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from Debian's protobuf-compiler (scripts/setup.sh installs it).
    tonic_build::configure()
        .compile_protos(&["proto/control.proto", "proto/cluster.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/control.proto");
    println!("cargo:rerun-if-changed=proto/cluster.proto");
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
    Ok(())
}
