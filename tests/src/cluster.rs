//! Helpers for the lab's swarms: the five-node one (managers n1-n3,
//! workers n4-n5, spare n6) of the cluster tests and benchmark, and the
//! three-node one of the networking and stack tests.

use crate::{docker, lab, require_lab_prerequisites, swarm, swarm_on, wait_for, Run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub const MANAGERS: [&str; 3] = ["n1", "n2", "n3"];
pub const WORKERS: [&str; 2] = ["n4", "n5"];
/// Services that never get a node, so the writes cost no containers.
pub const NOWHERE: &str = "node.labels.nowhere==true";

pub fn nodes_on(node: &str) -> Vec<Value> {
    let r = swarm_on(node, &["node", "ls", "--format", "json"]);
    if r.code != 0 {
        return Vec::new();
    }
    r.json_lines()
}

/// The lab name (n<i>) of the current leader, as `from` sees it.
pub fn leader(from: &str) -> Option<String> {
    nodes_on(from)
        .into_iter()
        .find(|n| n["ManagerStatus"] == "Leader")
        .and_then(|n| n["Hostname"].as_str().map(str::to_string))
}

pub fn tasks_on(node: &str, service: &str) -> Vec<Value> {
    let r = swarm_on(node, &["service", "ps", service, "--format", "json"]);
    if r.code != 0 {
        return Vec::new();
    }
    r.json_lines()
}

pub fn is_running(t: &Value) -> bool {
    t["DesiredState"] == "Running"
        && t["CurrentState"]
            .as_str()
            .unwrap_or("")
            .starts_with("Running")
}

/// Running tasks per node.
pub fn spread(tasks: &[Value]) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for t in tasks.iter().filter(|t| is_running(t)) {
        *per.entry(t["Node"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    per
}

/// Slots that have more than one task meant to run and not yet ended.
pub fn doubled_slots(tasks: &[Value]) -> Vec<String> {
    let mut live: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        let state = t["CurrentState"].as_str().unwrap_or("");
        let ended = ["Shutdown", "Complete", "Failed", "Rejected"]
            .iter()
            .any(|s| state.starts_with(s));
        if t["DesiredState"] == "Running" && !ended {
            *live
                .entry(t["Name"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
    }
    live.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(s, _)| s)
        .collect()
}

/// `service create --detach --name NAME [EXTRA...] swarm/whoami` on `node`.
pub fn try_create(node: &str, name: &str, extra: &[&str]) -> Run {
    let mut args = vec!["service", "create", "--detach", "--name", name];
    args.extend_from_slice(extra);
    args.push("swarm/whoami");
    swarm_on(node, &args)
}

/// Whether `from` sees all five nodes Ready.
pub fn all_ready(from: &str) -> bool {
    let nodes = nodes_on(from);
    nodes.len() == 5 && nodes.iter().all(|n| n["Status"] == "Ready")
}

pub fn raft_term(node: &str) -> u64 {
    swarm_on(node, &["info", "--format", "json"])
        .ok()
        .json_lines()[0]["RaftTerm"]
        .as_u64()
        .expect("info shows RaftTerm")
}

/// A bash script that sends one HTTP GET to `addr:port` over /dev/tcp and
/// prints the answer (no client tool needed wherever bash is).
pub fn http_get_script(addr: &str, port: u16) -> String {
    format!(
        "exec 3<>/dev/tcp/{addr}/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 3 cat <&3"
    )
}

/// One HTTP GET from inside lab node `from` (bash's /dev/tcp: no client
/// tool needed); the whoami answer, or None when nothing answers.
pub fn http_get_from(from: &str, addr: &str, port: u16) -> Option<String> {
    let r = lab(&["exec", from, "bash", "-c", &http_get_script(addr, port)]);
    (r.code == 0 && r.stdout.contains("hostname:")).then_some(r.stdout)
}

static LAB: Mutex<Option<&'static str>> = Mutex::new(None);

/// A three-node swarm (manager n1, workers n2 and n3) in the lab, in data
/// plane `mode`: built if the lab runs in the other mode, or not at all.
/// Scenarios of one binary share it and run one at a time.
pub fn three_node_swarm(mode: &'static str) -> MutexGuard<'static, Option<&'static str>> {
    let mut guard = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if *guard != Some(mode) {
        require_lab_prerequisites();
        assert_eq!(
            docker(&["image", "inspect", "redis:latest"]).code,
            0,
            "prerequisite missing: redis:latest. build the images: scripts/images.sh"
        );
        lab(&["down"]).ok();
        lab(&["up", "3", "--dataplane", mode]).ok();
        swarm(&["init"]).ok();
        let token = swarm(&["join-token", "-q", "worker"]).ok().stdout;
        for n in ["n2", "n3"] {
            swarm_on(n, &["join", "--token", token.trim(), "198.18.0.11"]).ok();
        }
        wait_for("three Ready nodes", Duration::from_secs(30), || {
            let nodes = swarm(&["node", "ls", "--format", "json"]).ok().json_lines();
            (nodes.len() == 3 && nodes.iter().all(|n| n["Status"] == "Ready")).then_some(())
        });
        let info = swarm(&["info", "--format", "json"]).ok().json_lines();
        assert_eq!(
            info[0]["Dataplane"], mode,
            "the daemons run the mode asked for"
        );
        *guard = Some(mode);
    }
    for n in ["n2", "n3"] {
        lab(&["heal", n]).ok();
    }
    guard
}
