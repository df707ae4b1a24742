//! Cluster benchmarks in the lab (a benchmark, not a test: it asserts
//! nothing about the numbers). Five real daemons (managers n1-n3, workers
//! n4-n5) in network namespaces:
//!
//!   failover_ms   kill -9 the raft leader, then time until a write sent to
//!                 another manager succeeds (polled every 10 ms), N times;
//!   replace_ms    cut a worker's link, then time until all replicas of a
//!                 service run on the other nodes, M times.
//!
//! Usage: swarm-bench-cluster [--kills N] [--deaths M]

use std::time::{Duration, Instant};
use swarm_tests::cluster::{
    all_ready, is_running, leader, tasks_on, try_create, MANAGERS, NOWHERE,
};
use swarm_tests::*;

fn stats(name: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let p50 = v[v.len() / 2];
    let max = v[v.len() - 1];
    format!(
        "{{\"metric\":\"{name}\",\"runs\":{},\"p50\":{p50:.0},\"max\":{max:.0},\"all\":{:?}}}",
        v.len(),
        v.iter().map(|x| x.round() as u64).collect::<Vec<_>>()
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut kills, mut deaths) = (20usize, 5usize);
    while let Some(a) = args.next() {
        let mut n = || -> usize { args.next().and_then(|v| v.parse().ok()).expect("a number") };
        match a.as_str() {
            "--kills" => kills = n(),
            "--deaths" => deaths = n(),
            other => panic!(
                "unknown argument {other}; usage: swarm-bench-cluster [--kills N] [--deaths M]"
            ),
        }
    }
    require_lab_prerequisites();
    lab(&["down"]).ok();
    lab(&["up", "5"]).ok();
    swarm_on("n1", &["init"]).ok();
    let manager = swarm_on("n1", &["join-token", "-q", "manager"]).ok().stdout;
    let worker = swarm_on("n1", &["join-token", "-q", "worker"]).ok().stdout;
    for n in ["n2", "n3"] {
        swarm_on(n, &["join", "--token", manager.trim(), "198.18.0.11"]).ok();
    }
    for n in ["n4", "n5"] {
        swarm_on(n, &["join", "--token", worker.trim(), "198.18.0.11"]).ok();
    }
    wait_for("five Ready nodes", Duration::from_secs(30), || {
        all_ready("n1").then_some(())
    });

    let mut failover = Vec::new();
    for i in 0..kills {
        let old = wait_for("a leader", Duration::from_secs(20), || {
            MANAGERS.iter().find_map(|m| leader(m))
        });
        let other = *MANAGERS.iter().find(|m| **m != old).unwrap();
        let name = format!("fo{i}");
        lab(&["kill", &old]).ok();
        let killed = Instant::now();
        loop {
            let r = try_create(other, &name, &["--constraint", NOWHERE]);
            if r.code == 0 {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "no write for 30 s: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        failover.push(killed.elapsed().as_secs_f64() * 1000.0);
        eprintln!("bench: failover {i}: {:.0} ms", failover[i]);
        lab(&["start", &old]).ok();
        wait_for("five Ready nodes", Duration::from_secs(30), || {
            all_ready(other).then_some(())
        });
    }

    let mut replace = Vec::new();
    for i in 0..deaths {
        let name = format!("rep{i}");
        try_create("n1", &name, &["--replicas", "10"]).ok();
        let running = |exclude: &str| -> usize {
            tasks_on("n1", &name)
                .iter()
                .filter(|t| is_running(t) && t["Node"] != exclude)
                .count()
        };
        wait_for("10 running", Duration::from_secs(60), || {
            (running("") == 10).then_some(())
        });
        lab(&["cut", "n5"]).ok();
        let cut = Instant::now();
        wait_for("replacements", Duration::from_secs(60), || {
            (running("n5") == 10).then_some(())
        });
        replace.push(cut.elapsed().as_secs_f64() * 1000.0);
        eprintln!("bench: replacement {i}: {:.0} ms", replace[i]);
        lab(&["heal", "n5"]).ok();
        wait_for("five Ready nodes", Duration::from_secs(30), || {
            all_ready("n1").then_some(())
        });
        swarm_on("n1", &["service", "rm", &name]).ok();
    }
    println!("{}", stats("failover_ms", failover));
    println!("{}", stats("replace_ms", replace));
    lab(&["down"]).ok();
}
