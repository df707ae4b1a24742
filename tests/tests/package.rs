//! The Debian package: built by scripts/package.sh, installed with dpkg on
//! this machine, run from where it installs, its units verified by
//! systemd-analyze, and removed without a trace.

use serde_json::Value;
use swarm_tests::*;

fn dpkg(args: &[&str]) -> Run {
    run(std::process::Command::new("dpkg").args(args))
}

const FILES: [&str; 6] = [
    "/usr/bin/swarm",
    "/usr/lib/systemd/system/swarm.service",
    "/lib/systemd/system/swarm-bpffs.service",
    "/usr/lib/sysctl.d/99-swarm.conf",
    "/usr/share/bash-completion/completions/swarm",
    "/usr/share/man/man1/swarm-service-create.1.gz",
];

#[test]
fn the_package_installs_runs_from_its_path_and_purges_cleanly() {
    let _lab = single_node_swarm();
    // A run that failed half-way may have left it installed.
    dpkg(&["--purge", "swarm"]);
    let out = std::env::temp_dir().join(unique("deb"));
    let built = run(std::process::Command::new("bash")
        .arg(repo_root().join("scripts/package.sh"))
        .args(["--debug", "--no-build", "--out"])
        .arg(&out));
    assert_eq!(built.code, 0, "{built:?}");
    let deb = built.stdout.lines().last().unwrap_or_default().to_string();
    assert!(deb.ends_with(".deb"), "{built:?}");
    let info = dpkg(&["--info", &deb]).ok().stdout;
    assert!(
        info.contains("Package: swarm") && info.contains("Depends: libc6"),
        "{info}"
    );

    dpkg(&["-i", &deb]).ok();
    for f in FILES {
        assert!(std::path::Path::new(f).exists(), "{f} not installed");
    }
    // The installed binary is this build, and talks to the lab's daemon.
    let version = lab(&[
        "exec",
        "n1",
        "/usr/bin/swarm",
        "version",
        "--format",
        "json",
    ])
    .ok()
    .json_lines();
    assert_eq!(
        version[0]["Client"]["Version"],
        version[0]["Server"]["Version"]
    );
    assert_eq!(
        version[0]["Client"]["GitCommit"],
        version[0]["Server"]["GitCommit"]
    );
    // `swarm check` from the installed path judges this host as the build does.
    let items = |bin: &str| -> Vec<(String, String)> {
        let r = run(std::process::Command::new(bin).args(["check", "--format", "json"]));
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| (i["check"].to_string(), i["status"].to_string()))
            .collect()
    };
    let installed = items("/usr/bin/swarm");
    assert!(installed.len() >= 8, "{installed:?}");
    assert_eq!(installed, items(swarm_bin().to_str().unwrap()));
    // The units as installed, with their binary and man pages in place.
    let verify = run(std::process::Command::new("systemd-analyze").args([
        "verify",
        "/usr/lib/systemd/system/swarm.service",
        "/lib/systemd/system/swarm-bpffs.service",
    ]));
    assert!(verify.code == 0 && verify.stderr.is_empty(), "{verify:?}");
    let man = run(std::process::Command::new("man").args(["-w", "swarm-daemon"]));
    assert_eq!(
        man.stdout.trim(),
        "/usr/share/man/man1/swarm-daemon.1.gz",
        "{man:?}"
    );

    dpkg(&["--purge", "swarm"]).ok();
    assert_ne!(dpkg(&["-s", "swarm"]).code, 0, "still known to dpkg");
    for f in FILES {
        assert!(!std::path::Path::new(f).exists(), "{f} left behind");
    }
    let _ = std::fs::remove_dir_all(&out);
}
