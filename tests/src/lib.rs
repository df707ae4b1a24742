//! Harness for scenario tests: a lab shared by every test in a binary, the
//! `swarm` CLI run inside a lab node, and polling with deadlines.
//!
//! Prerequisites (root, Docker, the lab, the images) are checked loudly: a
//! missing one fails the test with the reason, it never skips it.

pub mod cluster;
pub mod history;
pub mod linearizable;
pub mod meshlab;
pub mod netns;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// One `#[test]` per data-plane mode for each scenario `fn name(mode)`:
/// `xdp::name` and `iptables::name`.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod xdp { $( #[test] fn $name() { super::$name("xdp") } )* }
        mod iptables { $( #[test] fn $name() { super::$name("iptables") } )* }
    };
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn swarm_bin() -> PathBuf {
    std::env::var_os("SWARM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/swarm"))
}

/// The result of one command, with both streams as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panic with the whole output unless the command succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }

    /// Each stdout line parsed as JSON (for `--format json`).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run::from(out)
}

/// `scripts/lab.sh ARGS...`
pub fn lab(args: &[&str]) -> Run {
    run(Command::new(repo_root().join("scripts/lab.sh"))
        .args(args)
        .env("SWARM_BIN", swarm_bin()))
}

/// `swarm ARGS...` run inside lab node `node`, against that node's daemon.
pub fn swarm_on(node: &str, args: &[&str]) -> Run {
    let bin = swarm_bin();
    let mut full = vec!["exec", node, bin.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    lab(&full)
}

/// `swarm ARGS...` on n1.
pub fn swarm(args: &[&str]) -> Run {
    swarm_on("n1", args)
}

pub fn docker(args: &[&str]) -> Run {
    run(Command::new("docker").args(args))
}

/// Parse whoami's "hostname: X\npeer: Y" answer.
pub fn who(text: &str) -> Option<(String, String)> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    Some((field("hostname:")?, field("peer:")?))
}

/// Poll `f` until it returns Some, or panic after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn require(what: &str, ok: bool, fix: &str) {
    assert!(ok, "prerequisite missing: {what}. {fix}");
}

/// Fail (never skip) when what the lab scenarios need is missing.
pub fn require_lab_prerequisites() {
    require(
        "root",
        run(Command::new("id").arg("-u")).stdout.trim() == "0",
        "run the tests as root (scripts/test.sh does)",
    );
    require(
        "Docker Engine",
        docker(&["info"]).code == 0,
        "start dockerd; scripts/setup.sh checks it",
    );
    require(
        "swarm binary",
        swarm_bin().exists(),
        "build it: cargo build -p swarm-orchestrator",
    );
    // Not the pause image: the daemon imports the one it carries.
    require(
        "swarm/whoami:latest",
        docker(&["image", "inspect", "swarm/whoami:latest"]).code == 0,
        "build the images: scripts/images.sh",
    );
}

static LAB: OnceLock<()> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// A one-node lab with an initialised swarm, shared by the tests of this
/// binary. Tests hold the returned guard, so they run one at a time: some
/// restart the daemon, which would disturb a concurrent test.
pub fn single_node_swarm() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    LAB.get_or_init(|| {
        require_lab_prerequisites();
        // Another test binary may have left a bigger lab: start clean.
        lab(&["down"]).ok();
        lab(&["up", "1"]).ok();
        let info = swarm(&["info", "--format", "json"]).ok();
        if info.json_lines()[0]["Swarm"] != "active" {
            swarm(&["init"]).ok();
        }
    });
    guard
}

/// A service name unique to this test run.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros()
        % 1_000_000_000;
    format!("{prefix}-{n}")
}

/// Task rows of `swarm service ps SERVICE --format json`.
pub fn tasks(service: &str) -> Vec<Value> {
    swarm(&["service", "ps", service, "--format", "json"])
        .ok()
        .json_lines()
}

/// Tasks of a service that are meant to run and do.
pub fn running_tasks(service: &str) -> Vec<Value> {
    tasks(service)
        .into_iter()
        .filter(|t| {
            t["DesiredState"] == "Running"
                && t["CurrentState"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Running")
        })
        .collect()
}

/// IDs of Docker containers with all the given labels (`key=value`).
pub fn containers(labels: &[&str], running_only: bool) -> Vec<String> {
    let mut args = vec!["ps", "-q", "--no-trunc"];
    if !running_only {
        args.push("-a");
    }
    let filters: Vec<String> = labels.iter().map(|l| format!("label={l}")).collect();
    for f in &filters {
        args.push("--filter");
        args.push(f);
    }
    docker(&args)
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect()
}

/// Check repeatedly for `window` that `f` keeps holding: for asserting that
/// something does NOT happen (a duplicate, an early restart), where there is
/// no event to wait for.
pub fn holds_for(what: &str, window: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(f(), "{what} stopped holding");
        std::thread::sleep(Duration::from_millis(250));
    }
}
