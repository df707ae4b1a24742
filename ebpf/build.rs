//! Compiles the BPF programs in bpf/*.c with clang (BPF target) for embedding,
//! and runs bpf/layout.c on the host to emit the ABI layout table that the
//! Rust mirror is tested against.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The BPF programs, one per attach point.
const PROGRAMS: &[&str] = &["xdp_mesh", "tc_egress", "tc_task", "xdp_pass"];

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("{what}: cannot run {cmd:?}: {e}. Install the BPF toolchain with scripts/setup.sh")
    });
    assert!(status.success(), "{what} failed: {cmd:?}");
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-19".into());
    let include = root.join("include");
    // Debian keeps asm/types.h under the multiarch directory.
    let multiarch = Path::new("/usr/include/x86_64-linux-gnu");

    for prog in PROGRAMS {
        let src = root.join("bpf").join(format!("{prog}.c"));
        let obj = out.join(format!("{prog}.o"));
        run(
            Command::new(&clang)
                .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
                .arg("-I")
                .arg(&include)
                .arg("-I")
                .arg(multiarch)
                .arg("-c")
                .arg(&src)
                .arg("-o")
                .arg(&obj),
            &format!("compiling {}", src.display()),
        );
    }

    let probe = out.join("layout");
    run(
        Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .arg("-I")
            .arg(&include)
            .arg(root.join("bpf/layout.c"))
            .arg("-o")
            .arg(&probe),
        "compiling the ABI layout probe",
    );
    let table = Command::new(&probe)
        .output()
        .expect("running the layout probe");
    assert!(table.status.success(), "the ABI layout probe failed");
    std::fs::write(out.join("layout.rs"), table.stdout).expect("writing layout.rs");

    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-env-changed=CLANG");
}
