//! The ingress benchmark behind scripts/bench-ingress.sh. It builds its own
//! namespaces (a client, node A with two backends, node B with two backends)
//! and measures, in one run, the XDP mode, the iptables mode and the direct
//! path (client to backend, no mesh) as the ceiling, at several service
//! counts:
//!   udp_pps    64-byte UDP frames per second delivered to backends
//!   tcp_cps    new TCP connections per second
//!   rr_rps     1-byte request/response exchanges per second, with
//!   rr_p50_us / rr_p99_us latency
//!   program_ms time to program all services on a node
//! Traffic enters at node A's published ports; Maglev spreads it over all
//! four backends, so half of it crosses to node B.
//!
//! Usage: swarm-bench [--quick] [--out DIR]

mod load;
mod report;
mod topology;

use load::{rr, tcp_cps, udp_pps};
use report::write_results;
use std::path::PathBuf;
use std::time::Duration;
use topology::{mesh, services, start_servers, teardown, NODES};

pub struct Record {
    pub mode: &'static str,
    pub services: usize,
    pub metric: &'static str,
    pub value: f64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut quick, mut out) = (false, PathBuf::from("bench-results"));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = PathBuf::from(args.next().expect("--out needs a directory")),
            other => panic!("unknown argument {other}; usage: swarm-bench [--quick] [--out DIR]"),
        }
    }
    std::fs::create_dir_all(&out).expect("creating the output directory");
    let window = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(4)
    };
    let counts = [1usize, 100, 1000, 10_000];

    topology::topology();
    start_servers();
    let mut records = Vec::new();
    for mode in ["direct", "xdp", "iptables"] {
        if mode != "direct" {
            for (node, addr, _) in NODES {
                mesh(
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
            }
        }
        for &n in &counts {
            if mode == "direct" && n != counts[0] {
                // The direct path has no services: one measurement is the ceiling.
                continue;
            }
            if mode != "direct" {
                // Traffic enters at node A, so only A needs the services: B
                // receives tunnelled (xdp) or already-NATed (iptables) packets.
                let file = out.join("services.json");
                std::fs::write(&file, services(n).to_string()).unwrap();
                let took = mesh(NODES[0].0, mode, &["sync", file.to_str().unwrap()]);
                records.push(Record {
                    mode,
                    services: n,
                    metric: "program_ms",
                    value: took.as_secs_f64() * 1000.0,
                });
            }
            eprintln!("bench: {mode} with {n} services");
            records.push(Record {
                mode,
                services: n,
                metric: "udp_pps",
                value: udp_pps(mode, window),
            });
            records.push(Record {
                mode,
                services: n,
                metric: "tcp_cps",
                value: tcp_cps(mode, window),
            });
            let (rps, p50, p99) = rr(mode, window);
            records.push(Record {
                mode,
                services: n,
                metric: "rr_rps",
                value: rps,
            });
            records.push(Record {
                mode,
                services: n,
                metric: "rr_p50_us",
                value: p50,
            });
            records.push(Record {
                mode,
                services: n,
                metric: "rr_p99_us",
                value: p99,
            });
        }
        if mode == "xdp" {
            for (node, _, _) in NODES {
                mesh(node, mode, &["detach"]);
            }
        }
        // (iptables rules go with the namespaces at teardown.)
    }
    teardown();
    write_results(&out, &records, &counts);
}
