//! The ingress benchmark behind scripts/bench-ingress.sh. It builds its own
//! namespaces (a client, node A with two backends, node B with two
//! backends, and the underlay bridge in a namespace of its own) and
//! measures, in one run, the XDP mode, the iptables mode and the direct
//! path (client to backend, no mesh) as the ceiling, at several service
//! counts. Traffic enters at node A's published ports; Maglev spreads it
//! over all four backends, so half of it crosses to node B.
//!
//! Method: the generator runs on CPU0 and the forwarding path, steered by
//! RPS, on the last CPU; `--repeats` rounds go over every point (a fresh
//! data plane, programmed from nothing, then one window of each load), and
//! each metric is reported as the median with min and max. Metrics:
//!   udp_pps / pkt_us        64-byte UDP on 65,536 established flows:
//!                           delivered packets/s, forwarding-core µs/packet
//!   mesh_us                 pkt_us less the direct path's: the mesh's cost
//!   udp_new_pps / _pkt_us   the same with a new flow per packet
//!   tcp_cps                 new TCP connections/s
//!   rr_rps, rr_p50_us, rr_p99_us   1-byte request/response
//!   program_ms              programming every service from nothing
//!   change_ms               one change at that size (median of: add a
//!                           service, remove one, add a backend, drain one)
//!
//! Usage: swarm-bench [--quick] [--out DIR] [--repeats N] [--window SECS]
//!                    [--services 1,100,...] [--modes direct,xdp,iptables]
//!                    [--profile] [--bridge-netfilter]

mod load;
mod program;
mod report;
mod topology;

use load::Cores;
use program::{changes, services, Loader};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use swarm_tests::{run, swarm_bin};
use topology::{pin_dir, NODES};

pub struct Record {
    pub mode: &'static str,
    pub services: usize,
    pub metric: String,
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

/// (median, min, max) of samples.
pub fn summary(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (median, s[0], s[n - 1])
}

struct Args {
    out: PathBuf,
    repeats: usize,
    window: Duration,
    counts: Vec<usize>,
    modes: Vec<&'static str>,
    profile: bool,
    bridge_netfilter: bool,
}

fn args() -> Args {
    let usage = "usage: swarm-bench [--quick] [--out DIR] [--repeats N] [--window SECS] \
                 [--services 1,100,...] [--modes direct,xdp,iptables] [--profile] \
                 [--bridge-netfilter]";
    let mut a = Args {
        out: PathBuf::from("bench-results"),
        repeats: 3,
        window: Duration::from_secs(2),
        counts: vec![1, 100, 1000, 10_000],
        modes: vec!["direct", "xdp", "iptables"],
        profile: false,
        bridge_netfilter: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| panic!("{arg} needs a value; {usage}"))
        };
        match arg.as_str() {
            "--quick" => a.window = Duration::from_secs(1),
            "--out" => a.out = PathBuf::from(value()),
            "--repeats" => a.repeats = value().parse().expect("--repeats N"),
            "--window" => a.window = Duration::from_secs_f64(value().parse().expect("seconds")),
            "--services" => {
                a.counts = value()
                    .split(',')
                    .map(|n| n.parse().expect("--services 1,100,..."))
                    .collect()
            }
            "--modes" => {
                a.modes = value()
                    .split(',')
                    .map(|m| match m {
                        "direct" => "direct",
                        "xdp" => "xdp",
                        "iptables" => "iptables",
                        _ => panic!("unknown mode {m}; {usage}"),
                    })
                    .collect()
            }
            "--profile" => a.profile = true,
            "--bridge-netfilter" => a.bridge_netfilter = true,
            other => panic!("unknown argument {other}; {usage}"),
        }
    }
    assert!(a.repeats >= 1, "--repeats must be at least 1");
    a
}

/// `swarm mesh SUB ARGS --mode MODE --pin-dir DIR` inside `node`; its output.
fn mesh(node: &str, mode: &str, args: &[&str]) -> String {
    let bin = swarm_bin();
    let dir = pin_dir(node);
    let mut full = vec!["netns", "exec", node, bin.to_str().unwrap(), "mesh"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--mode", mode, "--pin-dir", &dir]);
    let r = run(Command::new("ip").args(&full));
    assert_eq!(r.code, 0, "swarm mesh {args:?} on {node} ({mode}): {r:?}");
    r.stdout
}

fn main() {
    let a = args();
    std::fs::create_dir_all(&a.out).expect("creating the output directory");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "the benchmark needs 2 CPUs: one for the generator, one for forwarding"
    );
    let cores = Cores {
        generator: 0,
        forwarding: cpus - 1,
    };
    let kernel = run(Command::new("uname").arg("-r"))
        .stdout
        .trim()
        .to_string();
    let mut notes = vec![
        format!("kernel {kernel}, {cpus} CPUs"),
        format!(
            "generator on CPU{}, forwarding on CPU{}; {} rounds over every point, one window of {:.1} s per round",
            cores.generator,
            cores.forwarding,
            a.repeats,
            a.window.as_secs_f64()
        ),
    ];
    notes.extend(topology::topology(cores.forwarding, a.bridge_netfilter));
    topology::start_servers(cores.generator);
    let mut rec = Recorder::default();
    let mut next_flow = load::FLOWS;
    // sendmmsg calls that failed or sent short, over every window.
    let mut short = 0u64;
    // Repeats are rounds over every point, not windows in a row: the lab's
    // speed drifts by tens of percent over minutes (measured: the direct
    // path alone, 443k and 582k pps a few minutes apart), and rounds
    // spread that drift over every point alike.
    for round in 0..a.repeats {
        for &mode in &a.modes {
            for &n in &a.counts {
                if mode == "direct" && n != a.counts[0] {
                    continue; // no services: one measurement is the ceiling
                }
                eprintln!(
                    "bench: round {} of {}: {mode} with {n} services",
                    round + 1,
                    a.repeats
                );
                let last = round + 1 == a.repeats;
                let p = Point {
                    mode,
                    n,
                    cores,
                    window: a.window,
                    round,
                };
                short += measure(
                    &p,
                    &mut rec,
                    &mut notes,
                    &mut next_flow,
                    a.profile && last,
                    &a,
                );
            }
        }
    }
    topology::teardown();
    notes.push(format!(
        "generator: {short} sendmmsg calls failed or sent short in all the established-flow \
         windows (its socket blocks when the forwarding core falls behind, so offered \
         load follows what the core takes; udp_fwd_busy is that core's load)"
    ));
    let records = rec.finish();
    report::write_results(&a.out, &records, &a.counts, &notes);
}

/// One point of one round.
struct Point {
    mode: &'static str,
    n: usize,
    cores: Cores,
    window: Duration,
    round: usize,
}

/// Measure one point once: program it, then one window of each load, and
/// the single changes. Returns the generator's short sends.
fn measure(
    p: &Point,
    rec: &mut Recorder,
    notes: &mut Vec<String>,
    next_flow: &mut u64,
    profile: bool,
    a: &Args,
) -> u64 {
    let (mode, n, cores, window) = (p.mode, p.n, p.cores, p.window);
    // Each point gets a freshly attached data plane: tables that earlier
    // points filled and emptied hand out scattered memory, which (measured)
    // costs more per packet than any service count.
    let first = p.round == 0 && n == a.counts[0];
    let loaders = (mode != "direct").then(|| attach(mode, notes, first));
    let svcs = services(n);
    if let Some((la, lb)) = &loaders {
        // B holds the services too, as every node of a swarm does (it
        // accepts A's tunnels from the nodes its backends name).
        lb.sync(&svcs);
        la.sync(&[]);
        rec.add(mode, n, "program_ms", ms(la.sync(&svcs)));
        // Every point starts from the same flow tables.
        la.forget_flows();
        lb.forget_flows();
    }
    let w = load::udp_pps(mode, cores, window);
    rec.window(mode, n, "udp", &w);
    // Profiled on the same tables as the window, before the new-flow
    // window fills them.
    let largest = a.counts.iter().max() == Some(&n);
    if profile && (largest || mode == "direct") {
        report::profile(&a.out, mode, n, cores, window);
    }
    let new = load::udp_new_pps(mode, cores, window, next_flow);
    rec.window(mode, n, "udp_new", &new);
    rec.add(mode, n, "tcp_cps", load::tcp_cps(mode, cores, window));
    let (rps, p50, p99) = load::rr(mode, cores, window);
    rec.add(mode, n, "rr_rps", rps);
    rec.add(mode, n, "rr_p50_us", p50);
    rec.add(mode, n, "rr_p99_us", p99);
    let short = w.send_errors;
    if let Some((la, _)) = &loaders {
        for c in changes(&svcs, p.round) {
            let t = ms(la.update(&c.apply));
            la.update(&c.undo);
            rec.add(mode, n, &format!("change_{}_ms", c.name), t);
        }
    }
    drop(loaders);
    if mode != "direct" {
        for (node, _, _) in NODES {
            mesh(node, mode, &["detach"]);
        }
    }
    short
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Attach `mode` on both nodes; their loaders. `note`: say how XDP attached.
fn attach(mode: &'static str, notes: &mut Vec<String>, note: bool) -> (Loader, Loader) {
    for (node, addr, _) in NODES {
        let out = mesh(
            node,
            mode,
            &[
                "attach",
                "--iface",
                "eth0",
                "--node-addr",
                &addr.to_string(),
            ],
        );
        if mode == "xdp" {
            topology::register_endpoints(node);
            if note && node == NODES[0].0 {
                notes.push(format!(
                    "xdp attach on {node}: {}",
                    out.trim().replace('\n', "; ")
                ));
            }
        }
    }
    (
        Loader::start(NODES[0].0, mode),
        Loader::start(NODES[1].0, mode),
    )
}

/// Samples by (mode, services, metric), summarized at the end.
#[derive(Default)]
struct Recorder {
    samples: BTreeMap<(&'static str, usize, String), Vec<f64>>,
}

/// The single changes whose medians make change_ms.
const CHANGES: [&str; 4] = [
    "change_add_service_ms",
    "change_remove_service_ms",
    "change_add_backend_ms",
    "change_drain_backend_ms",
];

impl Recorder {
    fn add(&mut self, mode: &'static str, n: usize, metric: &str, value: f64) {
        self.samples
            .entry((mode, n, metric.to_string()))
            .or_default()
            .push(value);
    }

    /// pps, µs/packet, the forwarding core's load and what was offered.
    fn window(&mut self, mode: &'static str, n: usize, prefix: &str, w: &load::Window) {
        let us = if prefix == "udp" {
            "pkt_us".to_string()
        } else {
            format!("{prefix}_pkt_us")
        };
        self.add(mode, n, &format!("{prefix}_pps"), w.pps);
        self.add(mode, n, &us, w.pkt_us);
        self.add(mode, n, &format!("{prefix}_fwd_busy"), w.busy);
        self.add(mode, n, &format!("{prefix}_offered_pps"), w.offered);
    }

    /// Every metric as (median, min, max), with the derived ones: change_ms
    /// (the median of the four changes' medians; min and max over all of
    /// them) and mesh_us (a mode's µs/packet less the direct path's).
    fn finish(self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .samples
            .iter()
            .map(|((mode, n, metric), s)| {
                let (value, min, max) = summary(s);
                Record {
                    mode,
                    services: *n,
                    metric: metric.clone(),
                    value,
                    min,
                    max,
                }
            })
            .collect();
        let keys: BTreeSet<(&'static str, usize)> =
            self.samples.keys().map(|(m, n, _)| (*m, *n)).collect();
        for (mode, n) in keys {
            let per: Vec<&Vec<f64>> = CHANGES
                .iter()
                .filter_map(|c| self.samples.get(&(mode, n, c.to_string())))
                .collect();
            if per.len() == CHANGES.len() {
                let medians: Vec<f64> = per.iter().map(|s| summary(s).0).collect();
                let all: Vec<f64> = per.iter().flat_map(|s| s.iter().copied()).collect();
                let (_, min, max) = summary(&all);
                let value = summary(&medians).0;
                out.push(Record {
                    mode,
                    services: n,
                    metric: "change_ms".into(),
                    value,
                    min,
                    max,
                });
            }
        }
        let direct = out
            .iter()
            .find(|r| r.mode == "direct" && r.metric == "pkt_us")
            .map(|r| (r.value, r.min, r.max));
        if let Some((dv, dmin, dmax)) = direct {
            let derived: Vec<Record> = out
                .iter()
                .filter(|r| r.mode != "direct" && r.metric == "pkt_us")
                .map(|r| Record {
                    mode: r.mode,
                    services: r.services,
                    metric: "mesh_us".into(),
                    value: r.value - dv,
                    min: r.min - dmax,
                    max: r.max - dmin,
                })
                .collect();
            out.extend(derived);
        }
        out
    }
}
