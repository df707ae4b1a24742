//! A five-node swarm in the lab (managers n1-n3, workers n4-n5) with real
//! daemons, real raft on disk, mutual TLS and the real Docker Engine: spread,
//! leader failover, node loss, quorum, join refusals and certificate renewal.
//! Scenarios share the cluster and run one at a time; each leaves it whole.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use swarm_tests::cluster::*;
use swarm_tests::history::{check_history, writer};
use swarm_tests::*;

/// Short enough that renewal happens during the test run.
const CERT_EXPIRY: &str = "90s";

static CLUSTER: OnceLock<()> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

fn cluster() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    CLUSTER.get_or_init(|| {
        require_lab_prerequisites();
        lab(&["down"]).ok();
        lab(&["up", "6"]).ok();
        swarm_on("n1", &["init", "--cert-expiry", CERT_EXPIRY]).ok();
        let worker = swarm_on("n1", &["join-token", "-q", "worker"]).ok().stdout;
        let manager = swarm_on("n1", &["join-token", "-q", "manager"]).ok().stdout;
        for n in &MANAGERS[1..] {
            let out = swarm_on(n, &["join", "--token", manager.trim(), "198.18.0.11:2377"]).ok();
            assert!(out.stdout.contains("as a manager"), "{}", out.stdout);
        }
        for n in WORKERS {
            let out = swarm_on(n, &["join", "--token", worker.trim(), "198.18.0.11"]).ok();
            assert!(out.stdout.contains("as a worker"), "{}", out.stdout);
        }
    });
    // Every scenario starts from a whole cluster, whatever the last one did
    // (even if it failed half-way): links up, daemons running, nodes active.
    for n in MANAGERS.iter().chain(&WORKERS) {
        lab(&["heal", n]).ok();
    }
    lab(&["up", "6"]).ok();
    for n in nodes_on(MANAGERS[0]) {
        if n["Availability"] != "Active" {
            let id = n["ID"].as_str().unwrap_or_default();
            swarm_on(
                MANAGERS[0],
                &["node", "update", "--availability", "active", id],
            )
            .ok();
        }
    }
    wait_for("all five nodes Ready", Duration::from_secs(30), || {
        let nodes = nodes_on(MANAGERS[0]);
        (nodes.len() == 5 && nodes.iter().all(|n| n["Status"] == "Ready")).then_some(())
    });
    guard
}

fn create(node: &str, name: &str, replicas: usize) {
    try_create(node, name, &["--replicas", &replicas.to_string()]).ok();
}

fn converged(node: &str, name: &str, replicas: usize) {
    wait_for(
        &format!("{replicas} running tasks of {name}"),
        Duration::from_secs(60),
        || {
            (tasks_on(node, name)
                .iter()
                .filter(|t| is_running(t))
                .count()
                == replicas)
                .then_some(())
        },
    );
}

#[test]
fn five_nodes_are_ready_and_ten_replicas_spread_two_per_node() {
    let _c = cluster();
    let nodes = nodes_on("n2");
    assert_eq!(nodes.len(), 5, "{nodes:?}");
    assert!(nodes.iter().all(|n| n["Status"] == "Ready"), "{nodes:?}");
    let managers = nodes.iter().filter(|n| n["ManagerStatus"] != "").count();
    assert_eq!(managers, 3, "{nodes:?}");
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["ManagerStatus"] == "Leader")
            .count(),
        1
    );

    let name = unique("spread");
    create("n2", &name, 10); // on a follower: forwarded to the leader
    converged("n2", &name, 10);
    let per = spread(&tasks_on("n1", &name));
    assert_eq!(per.len(), 5, "{per:?}");
    assert!(per.values().all(|&n| n == 2), "{per:?}");
    swarm_on("n1", &["service", "rm", &name]).ok();
}

#[test]
fn killing_the_leader_elects_another_that_takes_writes_within_two_seconds() {
    let _c = cluster();
    let old = wait_for("a leader", Duration::from_secs(10), || leader("n1"));
    let other = MANAGERS.iter().find(|m| **m != old).unwrap().to_string();
    let name = unique("failover");
    lab(&["kill", &old]).ok();
    let killed = Instant::now();
    // The first write that succeeds after the kill: it needs a new leader.
    wait_for(
        "a write after the leader died",
        Duration::from_secs(10),
        || (try_create(&other, &name, &[]).code == 0).then_some(()),
    );
    let took = killed.elapsed();
    let new = leader(&other).expect("a new leader");
    assert_ne!(new, old);
    assert!(
        took < Duration::from_secs(2),
        "write took {took:?} after the leader died"
    );
    wait_for(
        "the dead leader shown Unreachable",
        Duration::from_secs(15),
        || {
            nodes_on(&other)
                .iter()
                .any(|n| n["Hostname"] == old.as_str() && n["ManagerStatus"] == "Unreachable")
                .then_some(())
        },
    );
    lab(&["start", &old]).ok();
    wait_for(
        "the old leader back and Ready",
        Duration::from_secs(20),
        || {
            let nodes = nodes_on(&other);
            (nodes.iter().filter(|n| n["Status"] == "Ready").count() == 5).then_some(())
        },
    );
    swarm_on(&other, &["service", "rm", &name]).ok();
}

#[test]
fn a_cut_worker_has_its_tasks_replaced_and_no_slot_runs_twice_after_healing() {
    let _c = cluster();
    let name = unique("loss");
    create("n1", &name, 5);
    converged("n1", &name, 5);
    let victim = "n5";
    let had = spread(&tasks_on("n1", &name))
        .get(victim)
        .copied()
        .unwrap_or(0);
    assert!(had > 0, "spread put nothing on {victim}");

    lab(&["cut", victim]).ok();
    let cut = Instant::now();
    wait_for("replacements elsewhere", Duration::from_secs(10), || {
        let tasks = tasks_on("n1", &name);
        let per = spread(&tasks);
        let elsewhere: usize = per
            .iter()
            .filter(|(n, _)| *n != victim)
            .map(|(_, c)| c)
            .sum();
        (elsewhere == 5).then_some(())
    });
    eprintln!("tasks of a cut node replaced in {:?}", cut.elapsed());
    let down = nodes_on("n1");
    assert!(
        down.iter()
            .any(|n| n["Hostname"] == victim && n["Status"] == "Down"),
        "{down:?}"
    );

    lab(&["heal", victim]).ok();
    wait_for("the healed node Ready", Duration::from_secs(20), || {
        nodes_on("n1")
            .iter()
            .any(|n| n["Hostname"] == victim && n["Status"] == "Ready")
            .then_some(())
    });
    // Its old tasks are shut down: never two live tasks in one slot, and
    // exactly five app containers keep running.
    wait_for(
        "the stale containers stopped",
        Duration::from_secs(20),
        || {
            let running = containers(
                &[&format!("swarm.service.name={name}"), "swarm.role=task"],
                true,
            );
            (running.len() == 5).then_some(())
        },
    );
    holds_for("one live task per slot", Duration::from_secs(3), || {
        doubled_slots(&tasks_on("n1", &name)).is_empty()
    });
    swarm_on("n1", &["service", "rm", &name]).ok();
}

#[test]
fn a_minority_cannot_write_and_says_why_while_the_majority_goes_on() {
    let _c = cluster();
    let minority = wait_for("a leader", Duration::from_secs(10), || leader("n1"));
    let majority = MANAGERS
        .iter()
        .find(|m| **m != minority)
        .unwrap()
        .to_string();
    lab(&["cut", &minority]).ok();
    let name = unique("quorum");
    let refused = try_create(&minority, &name, &[]);
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("no quorum: 1 of 3 managers reachable"),
        "{}",
        refused.stderr
    );
    // Reads still answer on the minority side.
    assert_eq!(swarm_on(&minority, &["service", "ls"]).code, 0);
    wait_for(
        "a write on the majority side",
        Duration::from_secs(10),
        || (try_create(&majority, &name, &[]).code == 0).then_some(()),
    );
    lab(&["heal", &minority]).ok();
    wait_for("the minority catches up", Duration::from_secs(20), || {
        (swarm_on(&minority, &["service", "inspect", &name]).code == 0).then_some(())
    });
    swarm_on(&majority, &["service", "rm", &name]).ok();
}

/// Pre-vote: a manager cut off from the others must not campaign alone,
/// or its raised term would unseat the leader when the link comes back.
#[test]
fn a_cut_follower_does_not_unseat_the_leader_when_it_returns() {
    let _c = cluster();
    let leader_was = wait_for("a leader", Duration::from_secs(10), || leader("n1"));
    let follower = *MANAGERS.iter().find(|m| **m != leader_was).unwrap();
    let term = raft_term(&leader_was);
    lab(&["cut", follower]).ok();
    // Each write waits out many election timeouts before it gives up. The
    // first may have left on the link before the cut and apply after the
    // heal; the second starts when the follower knows it lost the leader,
    // so it must never apply.
    let (first, second) = (unique("prevote"), unique("prevote"));
    for name in [&first, &second] {
        assert_ne!(
            try_create(follower, name, &["--constraint", NOWHERE]).code,
            0
        );
    }
    assert_eq!(raft_term(follower), term, "the cut follower campaigned");
    lab(&["heal", follower]).ok();
    let third = unique("prevote");
    wait_for(
        "a write through the healed follower",
        Duration::from_secs(20),
        || (try_create(follower, &third, &["--constraint", NOWHERE]).code == 0).then_some(()),
    );
    // Read your writes: the follower that forwarded the create shows it at once.
    assert_eq!(swarm_on(follower, &["service", "inspect", &third]).code, 0);
    assert_ne!(
        swarm_on(&leader_was, &["service", "inspect", &second]).code,
        0
    );
    assert_eq!(leader("n1").as_deref(), Some(leader_was.as_str()));
    assert_eq!(raft_term(&leader_was), term);
    for name in [&first, &third] {
        swarm_on(&leader_was, &["service", "rm", name]);
    }
}

#[test]
fn joins_with_a_wrong_secret_digest_or_shape_are_refused_with_the_reason() {
    let _c = cluster();
    let good = swarm_on("n1", &["join-token", "-q", "worker"]).ok().stdout;
    let good = good.trim();
    let (prefix, _secret) = good.rsplit_once('-').unwrap();
    let wrong_secret = format!("{prefix}-{}", "z".repeat(25));
    let digest = &prefix["SWMTKN-1-".len()..];
    let wrong_digest = good.replace(digest, &"0".repeat(64));
    for (token, reason) in [
        (wrong_secret.as_str(), "the secret does not match"),
        (wrong_digest.as_str(), "does not match the token"),
        ("SWMTKN-1-nonsense", "invalid join token"),
    ] {
        let r = swarm_on("n6", &["join", "--token", token, "198.18.0.11"]);
        assert_ne!(r.code, 0, "join with {token} succeeded");
        assert!(r.stderr.contains(reason), "{token}: {}", r.stderr);
    }
    // None of the refused joins left a trace: n6 is still outside.
    let info = swarm_on("n6", &["info", "--format", "json"])
        .ok()
        .json_lines();
    assert_eq!(info[0]["Swarm"], "inactive");
    assert_eq!(nodes_on("n1").len(), 5);
}

#[test]
fn node_certificates_renew_before_they_expire() {
    let _c = cluster();
    let path = "/var/lib/swarm-lab/n4/certs/node.pem";
    let first = std::fs::read_to_string(path).expect("worker certificate");
    // A 90 s certificate renews between 45 s and 72 s after it was issued.
    wait_for("a renewed certificate", Duration::from_secs(80), || {
        let now = std::fs::read_to_string(path).ok()?;
        (now != first).then_some(())
    });
    // And the renewed node keeps its session: still Ready.
    wait_for("n4 Ready after renewal", Duration::from_secs(10), || {
        nodes_on("n1")
            .iter()
            .any(|n| n["Hostname"] == "n4" && n["Status"] == "Ready")
            .then_some(())
    });
}

fn update(node: &str, args: &[&str]) {
    let mut full = vec!["node", "update"];
    full.extend_from_slice(args);
    full.push(node);
    swarm_on("n1", &full).ok();
}

fn hostnames_running(name: &str) -> BTreeMap<String, usize> {
    spread(&tasks_on("n1", name))
}

#[test]
fn constraints_drain_and_pause_steer_placement_and_pending_tasks_say_why() {
    let _c = cluster();
    // Constraint on a label: only n4 carries it.
    update("n4", &["--label-add", "zone=east"]);
    let pinned = unique("east");
    try_create(
        "n1",
        &pinned,
        &["--replicas", "2", "--constraint", "node.labels.zone==east"],
    )
    .ok();
    converged("n1", &pinned, 2);
    assert_eq!(
        hostnames_running(&pinned),
        BTreeMap::from([("n4".to_string(), 2)])
    );

    // Pause: n5 keeps what it runs but gets nothing new.
    update("n5", &["--availability", "pause"]);
    let fresh = unique("paused");
    create("n1", &fresh, 4);
    converged("n1", &fresh, 4);
    assert!(
        !hostnames_running(&fresh).contains_key("n5"),
        "{:?}",
        hostnames_running(&fresh)
    );

    // Drain: n4's tasks move elsewhere; the constrained ones have nowhere
    // to go and say why.
    update("n5", &["--availability", "active"]);
    update("n4", &["--availability", "drain"]);
    wait_for("n4 emptied", Duration::from_secs(30), || {
        (!hostnames_running(&fresh).contains_key("n4") && hostnames_running(&pinned).is_empty())
            .then_some(())
    });
    converged("n1", &fresh, 4);
    let why = wait_for("a pending reason", Duration::from_secs(10), || {
        tasks_on("n1", &pinned)
            .into_iter()
            .find(|t| t["DesiredState"] == "Running" && t["Error"] != "")
            .map(|t| t["Error"].as_str().unwrap_or("").to_string())
    });
    assert_eq!(
        why,
        "no suitable node (1 node not available for new tasks; scheduling constraints not satisfied on 4 nodes)"
    );

    // A reservation beyond the largest node is refused, naming the limit.
    let r = try_create("n1", &unique("huge"), &["--reserve-memory", "100T"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("more than the largest node has"),
        "{}",
        r.stderr
    );
    // Reservations that fill the four active nodes: the fifth task waits.
    let node: serde_json::Value =
        serde_json::from_str(&swarm_on("n1", &["node", "inspect", "n1"]).ok().stdout).unwrap();
    let memory = node[0]["Description"]["Resources"]["MemoryBytes"]
        .as_i64()
        .unwrap();
    let most = format!("{}M", memory / 1024 / 1024 * 6 / 10);
    let huge = unique("huge");
    try_create("n1", &huge, &["--replicas", "5", "--reserve-memory", &most]).ok();
    let why = wait_for("a pending reason", Duration::from_secs(10), || {
        tasks_on("n1", &huge)
            .into_iter()
            .find(|t| t["Error"] != "")
            .map(|t| t["Error"].as_str().unwrap_or("").to_string())
    });
    assert_eq!(
        why,
        "no suitable node (1 node not available for new tasks; 4 nodes with insufficient memory)"
    );

    update("n4", &["--availability", "active", "--label-rm", "zone"]);
    for s in [&pinned, &fresh, &huge] {
        swarm_on("n1", &["service", "rm", s]).ok();
    }
}

fn cert_subject(node: &str) -> String {
    let path = format!("/var/lib/swarm-lab/{node}/certs/node.pem");
    let r =
        run(std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in", &path]));
    assert_eq!(r.code, 0, "{r:?}");
    r.stdout
}

/// The swarm's secrets key as `node` keeps it (None: it has none), after
/// checking that only its owner can read it.
fn secrets_key(node: &str) -> Option<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let path = format!("/var/lib/swarm-lab/{node}/secrets.key");
    let meta = std::fs::metadata(&path).ok()?;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path}");
    std::fs::read(&path).ok()
}

#[test]
fn promotion_and_demotion_reissue_the_certificate_and_change_raft_membership() {
    let _c = cluster();
    // Managers that joined with the manager token got the data key (each
    // keeps it sealed by a key of its own); workers not.
    assert!(secrets_key("n1").is_some(), "init made the data key");
    assert!(secrets_key("n2").is_some(), "a joined manager holds it");
    assert_eq!(secrets_key("n4"), None, "a worker holds no data key");
    swarm_on("n1", &["node", "promote", "n4"]).ok();
    wait_for("n4 a manager that answers", Duration::from_secs(20), || {
        (cert_subject("n4").contains("OU = swarm-manager")
            && swarm_on("n4", &["service", "ls"]).code == 0)
            .then_some(())
    });
    assert!(
        secrets_key("n4").is_some(),
        "a promoted manager fetched the key"
    );
    // It opens what the key sealed: the join secrets in the state.
    assert_eq!(
        swarm_on("n4", &["join-token", "-q", "worker"]).ok().stdout,
        swarm_on("n1", &["join-token", "-q", "worker"]).ok().stdout
    );
    let info = swarm_on("n1", &["info", "--format", "json"])
        .ok()
        .json_lines();
    let cluster_id = info[0]["ClusterID"].as_str().unwrap().to_string();
    wait_for("n4's copy of the state", Duration::from_secs(20), || {
        data_dir_holds("n4", &cluster_id).then_some(())
    });
    swarm_on("n1", &["node", "demote", "n4"]).ok();
    wait_for(
        "n4 back to a worker certificate",
        Duration::from_secs(20),
        || {
            cert_subject("n4")
                .contains("OU = swarm-worker")
                .then_some(())
        },
    );
    let refused = swarm_on("n4", &["service", "ls"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("not a swarm manager"),
        "{}",
        refused.stderr
    );
    wait_for(
        "n4 to drop the secrets key",
        Duration::from_secs(10),
        || secrets_key("n4").is_none().then_some(()),
    );
    // Nor does it keep the manager's copy of the state, which holds the
    // join secrets and the CA key (sealed): its raft store starts again
    // empty.
    wait_for(
        "n4's raft store to forget the state",
        Duration::from_secs(20),
        || (!data_dir_holds("n4", &cluster_id)).then_some(()),
    );
    assert_eq!(swarm_on("n4", &["info"]).code, 0, "n4 still runs");
    // Three voters again: losing one manager still leaves a quorum.
    let nodes = nodes_on("n1");
    assert_eq!(nodes.iter().filter(|n| n["ManagerStatus"] != "").count(), 3);
}

/// Whether any file in `node`'s data directory holds `needle`, raw bytes.
fn data_dir_holds(node: &str, needle: &str) -> bool {
    let dir = format!("/var/lib/swarm-lab/{node}");
    let r = run(std::process::Command::new("grep").args(["-rqaF", needle, &dir]));
    r.code == 0
}

/// Join `node`, retrying while the managers recover a quorum (a failed
/// join leaves nothing behind, so retrying is safe).
fn join(node: &str, role: &str) {
    let token = swarm_on("n1", &["join-token", "-q", role]).ok().stdout;
    wait_for(&format!("{node} joined"), Duration::from_secs(20), || {
        (swarm_on(node, &["join", "--token", token.trim(), "198.18.0.11"]).code == 0).then_some(())
    });
}

fn running_count(name: &str) -> usize {
    tasks_on("n1", name)
        .iter()
        .filter(|t| is_running(t))
        .count()
}

#[test]
fn nodes_leave_and_rejoin_and_global_services_follow_them() {
    let _c = cluster();
    let global = unique("everywhere");
    try_create("n1", &global, &["--mode", "global"]).ok();
    wait_for("a global task per node", Duration::from_secs(60), || {
        (running_count(&global) == 5).then_some(())
    });

    // A worker leaves: it is Down until removed; its global task goes with it.
    swarm_on("n5", &["leave"]).ok();
    let info = swarm_on("n5", &["info", "--format", "json"])
        .ok()
        .json_lines();
    assert_eq!(info[0]["Swarm"], "inactive");
    let old = wait_for("n5 Down", Duration::from_secs(15), || {
        nodes_on("n1")
            .into_iter()
            .find(|n| n["Hostname"] == "n5" && n["Status"] == "Down")
            .map(|n| n["ID"].as_str().unwrap_or("").to_string())
    });
    swarm_on("n1", &["node", "rm", &old]).ok();
    wait_for("four global tasks", Duration::from_secs(20), || {
        (running_count(&global) == 4).then_some(())
    });

    // A manager leaves while the others keep a quorum.
    swarm_on("n3", &["leave"]).ok();
    assert_eq!(
        nodes_on("n1")
            .iter()
            .filter(|n| n["ManagerStatus"] != "")
            .count(),
        2
    );
    // With two managers left, one of them cannot leave while the other is cut off.
    lab(&["cut", "n2"]).ok();
    let refused = swarm_on("n1", &["leave"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("leaving would break quorum")
            || refused.stderr.contains("leaving now could break quorum"),
        "{}",
        refused.stderr
    );
    lab(&["heal", "n2"]).ok();

    // Both come back as new nodes; the global service follows.
    join("n3", "manager");
    join("n5", "worker");
    wait_for("five global tasks again", Duration::from_secs(60), || {
        (running_count(&global) == 5).then_some(())
    });
    // The refused leave left nothing behind to commit once n2 came back.
    let n1 = nodes_on("n1")
        .into_iter()
        .find(|n| n["Hostname"] == "n1")
        .expect("n1 is still a node after its refused leave");
    assert_ne!(n1["ManagerStatus"], "", "{n1}");
    swarm_on("n1", &["service", "rm", &global]).ok();
}

#[test]
fn acknowledged_writes_survive_ten_leader_kills() {
    let _c = cluster();
    let run = unique("hist");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let log = std::thread::scope(|s| {
        let w = s.spawn(|| writer(&stop, &run));
        for _ in 0..10 {
            let old = wait_for("a leader", Duration::from_secs(20), || {
                MANAGERS.iter().find_map(|m| leader(m))
            });
            lab(&["kill", &old]).ok();
            let other = MANAGERS.iter().find(|m| **m != old).unwrap();
            wait_for("a new leader", Duration::from_secs(20), || {
                leader(other).filter(|l| *l != old)
            });
            lab(&["start", &old]).ok();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        w.join().unwrap()
    });
    let acked = log.iter().filter(|a| a.acked).count();
    assert!(
        acked >= 20,
        "only {acked} of {} writes acknowledged",
        log.len()
    );
    // Every manager converges on a state that holds the whole history (a
    // restarted one may still be catching up: give it time, not a pass).
    for m in MANAGERS {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = swarm_on(m, &["service", "ls", "--format", "json"]);
            let rows = if r.code == 0 {
                r.json_lines()
            } else {
                Vec::new()
            };
            let replicas: BTreeMap<String, u64> = rows
                .iter()
                .filter(|s| s["Name"].as_str().unwrap_or("").starts_with(&run))
                .map(|s| {
                    let r = s["Replicas"].as_str().unwrap_or("");
                    let want = r.split('/').nth(1).unwrap_or("0").parse().unwrap_or(0);
                    (s["Name"].as_str().unwrap_or("").to_string(), want)
                })
                .collect();
            let problems = check_history(&log, &replicas);
            if problems.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "on {m}: {problems:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    eprintln!(
        "{acked} of {} writes acknowledged across 10 leader kills",
        log.len()
    );
    for name in log.iter().filter(|a| a.scale.is_none()).map(|a| &a.service) {
        let _ = swarm_on("n1", &["service", "rm", name]);
    }
}

#[test]
fn host_mode_ports_take_one_task_per_node_and_keep_the_client_address() {
    let _c = cluster();
    let name = unique("hostport");
    try_create(
        "n1",
        &name,
        &[
            "--replicas",
            "6",
            "--publish",
            "mode=host,published=8080,target=80",
        ],
    )
    .ok();
    // Six replicas, five nodes: the port fits once per node.
    wait_for(
        "five running and one pending",
        Duration::from_secs(60),
        || {
            let tasks = tasks_on("n1", &name);
            let running = tasks.iter().filter(|t| is_running(t)).count();
            let pending = tasks.iter().any(|t| {
                t["Error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("host-mode port already in use on 5 nodes")
            });
            (running == 5 && pending).then_some(())
        },
    );
    let running = tasks_on("n1", &name);
    let shown = running.iter().find(|t| is_running(t)).unwrap();
    assert_eq!(shown["Ports"], "*:8080->80/tcp");
    // From n6, outside the swarm, every node answers on 8080 with its own
    // task, which sees n6's address: nothing is masqueraded.
    for i in 1..=5 {
        let addr = format!("198.18.0.1{i}");
        let reply = wait_for(
            &format!("an answer on {addr}:8080"),
            Duration::from_secs(15),
            || http_get_from("n6", &addr, 8080),
        );
        assert!(reply.contains("peer: 198.18.0.16:"), "{addr}: {reply}");
    }
    // Removing the service unpublishes the port.
    swarm_on("n1", &["service", "rm", &name]).ok();
    wait_for("8080 closed on n4", Duration::from_secs(30), || {
        http_get_from("n6", "198.18.0.14", 8080)
            .is_none()
            .then_some(())
    });
}

/// `lab.sh start NODE` with the daemon set to abort at crash point `at`.
fn start_crashing_at(node: &str, at: &str) {
    let r = run(
        std::process::Command::new(repo_root().join("scripts/lab.sh"))
            .args(["start", node])
            .env("SWARM_BIN", swarm_bin())
            .env("SWARM_CRASH_AT", at),
    );
    assert_eq!(r.code, 0, "{r:?}");
}

/// Whether `node` says it is in a swarm.
fn active(node: &str) -> bool {
    let info = swarm_on(node, &["info", "--format", "json"])
        .ok()
        .json_lines();
    info[0]["Swarm"] == "active"
}

/// Kill n6's daemon, start it again to crash at `at`, run `action` (which
/// the crash cuts short), and start it once more, unharmed.
fn crash_during(at: &str, action: &[&str]) {
    let aborts = || {
        let log = std::fs::read_to_string("/var/log/swarm-lab/n6.log").unwrap_or_default();
        log.matches(&format!("SWARM_CRASH_AT={at}: aborting"))
            .count()
    };
    let before = aborts();
    lab(&["kill", "n6"]).ok();
    start_crashing_at("n6", at);
    let cut = swarm_on("n6", action);
    assert_ne!(cut.code, 0, "{action:?} survived crash point {at}");
    assert_eq!(aborts(), before + 1, "the daemon did not abort at {at}");
    wait_for(
        &format!("n6's daemon to abort at {at}"),
        Duration::from_secs(20),
        || (swarm_on("n6", &["info"]).code != 0).then_some(()),
    );
    lab(&["kill", "n6"]).ok();
    lab(&["start", "n6"]).ok();
}

#[test]
fn init_and_join_cut_short_by_a_crash_at_any_step_end_in_a_node_that_works() {
    let _c = cluster();
    for at in ["init-bootstrapped", "init-recorded", "init-keyed"] {
        crash_during(at, &["init"]);
        // Either the restart finished the init, or running it again does.
        if !active("n6") {
            swarm_on("n6", &["init"]).ok();
        }
        wait_for(
            &format!("n6 leading its own swarm after {at}"),
            Duration::from_secs(20),
            || {
                let nodes = nodes_on("n6");
                (nodes.len() == 1 && nodes[0]["Status"] == "Ready").then_some(())
            },
        );
        swarm_on("n6", &["service", "ls"]).ok();
        swarm_on("n6", &["leave", "--force"]).ok();
        wait_for("n6 outside again", Duration::from_secs(20), || {
            (!active("n6")).then_some(())
        });
    }

    let token = swarm_on("n1", &["join-token", "-q", "worker"]).ok().stdout;
    let join = ["join", "--token", token.trim(), "198.18.0.11"];
    for at in ["join-answered", "join-identified", "join-certified"] {
        crash_during(at, &join);
        if !active("n6") {
            swarm_on("n6", &join).ok();
        }
        let me = wait_for(
            &format!("n6 a Ready worker after {at}"),
            Duration::from_secs(30),
            || {
                let info = swarm_on("n6", &["info", "--format", "json"])
                    .ok()
                    .json_lines();
                let id = info[0]["NodeID"].as_str()?.to_string();
                nodes_on("n1")
                    .iter()
                    .any(|n| n["ID"] == id.as_str() && n["Status"] == "Ready")
                    .then_some(id)
            },
        );
        // It takes tasks like any worker.
        let svc = unique("after-crash");
        try_create("n1", &svc, &["--constraint", &format!("node.id=={me}")]).ok();
        wait_for("a task on n6", Duration::from_secs(30), || {
            (running_count(&svc) == 1).then_some(())
        });
        swarm_on("n1", &["service", "rm", &svc]).ok();
        swarm_on("n6", &["leave"]).ok();
        // A join the crash cut short after the CA answered left a record
        // of a node that never came: it is Down, and removed like one.
        for n in nodes_on("n1") {
            if n["Hostname"] == "n6" {
                let id = n["ID"].as_str().unwrap_or_default();
                swarm_on("n1", &["node", "rm", "--force", id]).ok();
            }
        }
    }
}

/// Every lab node's data directory.
fn data_dirs() -> Vec<String> {
    (1..=6)
        .map(|i| format!("/var/lib/swarm-lab/n{i}"))
        .collect()
}

/// The files under `dir` whose raw bytes hold `needle`.
fn files_holding(dir: &str, needle: &str) -> Vec<String> {
    let r = run(std::process::Command::new("grep").args(["-rlaF", needle, dir]));
    r.stdout.lines().map(str::to_string).collect()
}

#[test]
fn key_material_is_sealed_at_rest_and_autolock_seals_a_restarted_manager() {
    let _c = cluster();
    // The join secrets and the CA key are nowhere in the clear: not in any
    // raft store, log or snapshot, nor any other file.
    let secret = |role| {
        let t = swarm_on("n1", &["join-token", "-q", role]).ok().stdout;
        t.trim().rsplit('-').next().unwrap().to_string()
    };
    for needle in [secret("worker"), secret("manager")] {
        for dir in data_dirs() {
            assert_eq!(
                files_holding(&dir, &needle),
                Vec::<String>::new(),
                "a join secret"
            );
        }
    }
    for m in MANAGERS {
        let redb = format!("/var/lib/swarm-lab/{m}/raft.redb");
        assert_eq!(
            files_holding(&redb, "PRIVATE KEY"),
            Vec::<String>::new(),
            "a key in {redb}"
        );
    }

    // Autolock on: every manager's keys get sealed by the unlock key.
    let out = swarm_on("n1", &["update", "--autolock=true"]).ok().stdout;
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key in {out}"))
        .to_string();
    assert_eq!(
        swarm_on("n2", &["unlock-key", "-q"]).ok().stdout.trim(),
        key
    );
    for m in MANAGERS {
        let dir = format!("/var/lib/swarm-lab/{m}");
        wait_for(
            &format!("{m}'s keys sealed"),
            Duration::from_secs(20),
            || files_holding(&dir, "PRIVATE KEY").is_empty().then_some(()),
        );
    }

    // A restarted manager is locked, says so, and opens only with the key.
    lab(&["kill", "n3"]).ok();
    lab(&["start", "n3"]).ok();
    let locked = swarm_on("n3", &["node", "ls"]);
    assert_ne!(locked.code, 0);
    assert!(
        locked
            .stderr
            .contains("Swarm is encrypted and needs to be unlocked before it can be used"),
        "{}",
        locked.stderr
    );
    let info = swarm_on("n3", &["info", "--format", "json"])
        .ok()
        .json_lines();
    assert_eq!(info[0]["Swarm"], "locked");
    let unlock = |key: &str| {
        let bin = swarm_bin();
        run(std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo {key} | {} exec n3 {} unlock",
                repo_root().join("scripts/lab.sh").display(),
                bin.display()
            ))
            .env("SWARM_BIN", &bin))
    };
    let wrong = unlock(&format!("SWMKEY-1-{}", "A".repeat(43)));
    assert_ne!(wrong.code, 0);
    assert!(
        wrong.stderr.contains("invalid unlock key"),
        "{}",
        wrong.stderr
    );
    assert_eq!(unlock(&key).code, 0, "the right key unlocks");
    wait_for("n3 a manager again", Duration::from_secs(30), || {
        (swarm_on("n3", &["node", "ls"]).code == 0 && all_ready("n1")).then_some(())
    });

    // A rotated key is the one that unlocks from then on; autolock off
    // leaves the keys sealed by local keys only, and restarts unlocked.
    let rotated = swarm_on("n1", &["unlock-key", "-q", "--rotate"])
        .ok()
        .stdout;
    assert_ne!(rotated.trim(), key);
    swarm_on("n1", &["update", "--autolock=false"]).ok();
    wait_for(
        "n3's keys written unsealed",
        Duration::from_secs(20),
        || (!files_holding("/var/lib/swarm-lab/n3/certs", "PRIVATE KEY").is_empty()).then_some(()),
    );
    lab(&["kill", "n3"]).ok();
    lab(&["start", "n3"]).ok();
    wait_for("n3 up without a key", Duration::from_secs(30), || {
        (swarm_on("n3", &["node", "ls"]).code == 0).then_some(())
    });
    let off = swarm_on("n1", &["unlock-key"]);
    assert!(
        off.stderr.contains("no unlock key is set"),
        "{}",
        off.stderr
    );
}

/// One client of the linearizability run: on manager `via`, until `stop`,
/// writes a unique value to one of the registers (labels of `svc`) or
/// reads them all with `--consistent`; every operation with its times.
fn lin_client(
    via: &'static str,
    svc: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<swarm_tests::linearizable::Event> {
    use swarm_tests::linearizable::{Event, Op};
    let mut events = Vec::new();
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        i += 1;
        let key = LIN_KEYS[(i as usize * 7 + via.len()) % LIN_KEYS.len()];
        let invoked = Instant::now();
        if i.is_multiple_of(2) {
            let value = format!("{via}-{i}");
            let label = format!("{key}={value}");
            let r = swarm_on(
                via,
                &[
                    "service",
                    "update",
                    "--detach",
                    "-q",
                    "--label-add",
                    &label,
                    svc,
                ],
            );
            events.push(Event {
                key: key.into(),
                op: Op::Write(value),
                invoked,
                returned: (r.code == 0).then(Instant::now),
            });
        } else {
            let r = swarm_on(via, &["service", "inspect", "--consistent", svc]);
            let returned = Instant::now();
            if r.code != 0 {
                continue; // a read with no answer tells nothing
            }
            let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("inspect JSON");
            for key in LIN_KEYS {
                let seen = v[0]["Spec"]["Labels"][key]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                events.push(Event {
                    key: key.into(),
                    op: Op::Read(seen),
                    invoked,
                    returned: Some(returned),
                });
            }
        }
    }
    events
}

const LIN_KEYS: [&str; 3] = ["lin.a", "lin.b", "lin.c"];

#[test]
fn consistent_reads_and_writes_stay_linearizable_through_kills_cuts_and_restarts() {
    let _c = cluster();
    let svc = unique("register");
    try_create("n1", &svc, &["--replicas", "0"]).ok();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let history = std::thread::scope(|s| {
        let clients: Vec<_> = MANAGERS
            .iter()
            .map(|m| s.spawn(|| lin_client(m, &svc, &stop)))
            .collect();
        // The faults, one after another, each while the clients run. The
        // pauses are the schedule (how long each fault lasts), not waits
        // for a condition.
        let hold = || std::thread::sleep(Duration::from_secs(6));
        let leader_now = || {
            wait_for("a leader", Duration::from_secs(30), || {
                MANAGERS.iter().find_map(|m| leader(m))
            })
        };
        for _round in 0..2 {
            hold();
            let old = leader_now();
            lab(&["kill", &old]).ok();
            hold();
            lab(&["start", &old]).ok();
            hold();
            let follower = MANAGERS.iter().find(|m| **m != leader_now()).unwrap();
            lab(&["cut", follower]).ok();
            hold();
            lab(&["heal", follower]).ok();
            hold();
            let isolated = leader_now();
            lab(&["cut", &isolated]).ok();
            hold();
            lab(&["heal", &isolated]).ok();
            hold();
            let follower = MANAGERS.iter().find(|m| **m != leader_now()).unwrap();
            lab(&["kill", follower]).ok();
            lab(&["start", follower]).ok();
        }
        hold();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    let writes = history
        .iter()
        .filter(|e| matches!(e.op, swarm_tests::linearizable::Op::Write(_)) && e.returned.is_some())
        .count();
    let reads = history
        .iter()
        .filter(|e| matches!(e.op, swarm_tests::linearizable::Op::Read(_)))
        .count();
    assert!(
        writes >= 30 && reads >= 30,
        "too little history: {writes} acknowledged writes, {reads} reads"
    );
    assert_eq!(
        swarm_tests::linearizable::check(&history),
        Vec::<String>::new(),
        "{writes} acknowledged writes, {reads} reads"
    );

    // At the end, every manager holds the same state.
    wait_for(
        "the managers' states to agree",
        Duration::from_secs(30),
        || {
            let view = |m: &str| {
                let s = swarm_on(m, &["service", "inspect", &svc]).stdout;
                let l = swarm_on(m, &["service", "ls", "--format", "json"]).stdout;
                let n = swarm_on(m, &["node", "ls", "--format", "json"]).stdout;
                (s, l, n.len())
            };
            let first = view(MANAGERS[0]);
            MANAGERS[1..].iter().all(|m| view(m) == first).then_some(())
        },
    );
    swarm_on("n1", &["service", "rm", &svc]).ok();
}

/// The issuer of a node's certificate, and how many certificates its set
/// holds (its own, then the CA certificates it trusts).
fn cert_issuer(node: &str) -> (String, usize) {
    let path = format!("/var/lib/swarm-lab/{node}/certs/node.pem");
    let r = run(
        std::process::Command::new("openssl").args(["x509", "-noout", "-issuer", "-in", &path])
    );
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(&path).expect("the certificate set");
    (
        r.stdout.trim().to_string(),
        text.matches("BEGIN CERTIFICATE").count(),
    )
}

#[test]
fn rotating_the_ca_reissues_every_certificate_from_a_new_root_and_the_swarm_keeps_working() {
    let _c = cluster();
    let nodes: Vec<&str> = MANAGERS.iter().chain(&WORKERS).copied().collect();
    let old_token = swarm_on("n1", &["join-token", "-q", "worker"]).ok().stdout;
    let old_issuer = cert_issuer("n1").0;
    for n in &nodes {
        assert_eq!(
            cert_issuer(n),
            (old_issuer.clone(), 2),
            "{n} before the rotation"
        );
    }

    // From a follower: the CLI waits until every node has a certificate
    // from the new root, and prints that root.
    let out = swarm_on("n2", &["ca", "--rotate"]).ok();
    assert!(
        out.stderr.contains("Progress: ") && out.stderr.contains("out of 5 nodes (waiting for n"),
        "{}",
        out.stderr
    );
    let root = std::env::temp_dir().join("swarm-rotated-root.pem");
    std::fs::write(&root, &out.stdout).unwrap();
    let r = run(std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(&root));
    assert_eq!(r.code, 0, "{}", out.stdout);
    let new_issuer = r.stdout.trim().replace("subject=", "issuer=");
    assert_ne!(new_issuer, old_issuer, "a new root");
    for n in &nodes {
        // Renewed, and trusting the new root alone once the rotation ended.
        wait_for(
            &format!("{n} on the new root alone"),
            Duration::from_secs(30),
            || (cert_issuer(n) == (new_issuer.clone(), 2)).then_some(()),
        );
    }
    assert_eq!(
        swarm_on("n1", &["ca"]).ok().stdout,
        out.stdout,
        "every manager names the new root"
    );

    // Tokens pin the new root; the secret stays.
    let new_token = swarm_on("n1", &["join-token", "-q", "worker"]).ok().stdout;
    assert_ne!(new_token, old_token);
    assert_eq!(
        new_token.trim().rsplit('-').next(),
        old_token.trim().rsplit('-').next()
    );
    let r = swarm_on("n6", &["join", "--token", old_token.trim(), "198.18.0.11"]);
    assert_ne!(r.code, 0, "a token of the old root still joins");
    assert!(
        r.stderr.contains("does not match the token"),
        "{}",
        r.stderr
    );

    // And the swarm works as before: every node Ready, tasks everywhere.
    wait_for("five Ready nodes", Duration::from_secs(30), || {
        let n = nodes_on("n3");
        (n.len() == 5 && n.iter().all(|n| n["Status"] == "Ready")).then_some(())
    });
    create("n3", "after-rotation", 5);
    converged("n1", "after-rotation", 5);
    swarm_on("n1", &["service", "rm", "after-rotation"]).ok();
}
