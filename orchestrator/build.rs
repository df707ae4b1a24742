fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from Debian's protobuf-compiler (scripts/setup.sh installs it).
    tonic_build::configure()
        .compile_protos(&["proto/control.proto", "proto/cluster.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/control.proto");
    println!("cargo:rerun-if-changed=proto/cluster.proto");
    Ok(())
}
