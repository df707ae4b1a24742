//! The Debian package: built by scripts/package.sh, installed with dpkg on
//! this machine, run from where it installs, its units verified by
//! systemd-analyze, and removed without a trace.

use serde_json::Value;
use std::time::Duration;
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

/// The capabilities the unit's `CapabilityBoundingSet=` leaves the daemon,
/// as setpriv and the kernel name them (`bpf`, `net_admin`, ...).
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(repo_root().join("packaging/swarm.service"))
        .expect("packaging/swarm.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds the daemon's capabilities");
    let mut caps: Vec<String> = line
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    caps.sort();
    caps
}

/// The capabilities in a `/proc/PID/status` line, by name.
fn capabilities(status: &str, key: &str) -> Vec<String> {
    let status = std::fs::read_to_string(status).expect("a process status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .expect("a capability line")
        .trim()
        .to_string();
    let r = run(std::process::Command::new("capsh").arg(format!("--decode={hex}")));
    let (_, names) = r.stdout.trim().split_once('=').expect("capsh's 0x...=caps");
    let mut names: Vec<String> = names
        .split(',')
        .map(|c| c.trim_start_matches("cap_").to_string())
        .collect();
    names.sort();
    names
}

/// n1's daemon run again the way it normally runs, also when the test fails.
struct PlainDaemon;

impl Drop for PlainDaemon {
    fn drop(&mut self) {
        lab(&["kill", "n1"]);
        lab(&["start", "n1"]);
    }
}

/// What systemd does with the unit's bounding set, done with setpriv: root
/// gets at exec only the capabilities in the bounding set. With exactly
/// those the daemon attaches its data plane, runs a task and serves a
/// published port, so the set in the unit is enough (no systemd runs here
/// to start the unit itself).
#[test]
fn the_daemon_serves_a_published_port_with_only_the_units_capabilities() {
    let _lab = single_node_swarm();
    let caps = unit_capabilities();
    let bounding: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let _restore = PlainDaemon;
    lab(&["kill", "n1"]).ok();
    let start = run(
        std::process::Command::new(repo_root().join("scripts/lab.sh"))
            .args(["start", "n1"])
            .env("SWARM_BIN", swarm_bin())
            .env(
                "SWARM_DAEMON_WRAP",
                format!("setpriv --bounding-set=-all{bounding} --"),
            ),
    );
    assert_eq!(start.code, 0, "{start:?}");

    // The running daemon holds exactly the unit's set, less what this
    // machine withholds from every process (a container here has no
    // CAP_SYS_RESOURCE).
    let pid = std::fs::read_to_string("/run/swarm-lab/n1.pid").expect("n1's pid file");
    let daemon = format!("/proc/{}/status", pid.trim());
    let ours = capabilities("/proc/self/status", "CapBnd:");
    let want: Vec<String> = caps.into_iter().filter(|c| ours.contains(c)).collect();
    assert_eq!(capabilities(&daemon, "CapBnd:"), want);
    assert_eq!(capabilities(&daemon, "CapEff:"), want);

    let name = unique("capped");
    swarm(&[
        "service",
        "create",
        "--name",
        &name,
        "--publish",
        "8097:80",
        "swarm/whoami",
    ])
    .ok();
    let page = wait_for(
        "the published port to answer from the client",
        Duration::from_secs(30),
        || swarm_tests::cluster::http_get_from("client", "198.18.0.11", 8097),
    );
    assert!(page.contains(&format!("hostname: {name}-1-")), "{page}");
    swarm(&["service", "rm", &name]).ok();
}
