//! A small `swarm bench hollow` run: three managers in one process and 50
//! simulated agents that join with the real token, hold mutual-TLS
//! dispatcher sessions, beat and report their tasks, with no Docker. The
//! bench itself fails when a phase does not complete (every task RUNNING,
//! the lost nodes' tasks elsewhere, every view updated, a write after the
//! leader is killed); this checks that no task ran twice and that it
//! measured each phase.

use serde_json::Value;
use swarm_tests::*;

#[test]
fn fifty_hollow_nodes_run_two_thousand_tasks_once_each_and_survive_a_lost_node_and_leader() {
    let r = run(std::process::Command::new(swarm_bin()).args([
        "bench",
        "hollow",
        "--nodes",
        "50",
        "--services",
        "10",
        "--tasks",
        "2000",
        "--managers",
        "3",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(v["bench"], "hollow");
    assert_eq!(v["nodes"], 50);
    assert_eq!(v["tasks"], 2000);
    assert_eq!(v["duplicates"], 0, "no slot runs twice: {v}");
    for phase in [
        "converged_ms",
        "replace_ms",
        "view_update_ms",
        "manager_rss_mb",
    ] {
        assert!(v[phase].as_u64().is_some_and(|ms| ms > 0), "{phase}: {v}");
    }
}
