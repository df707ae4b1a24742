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

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_tests::netns::{accept_bridge, add_host, in_netns, must, sh, unaccept_bridge};
use swarm_tests::{run, swarm_bin};

const BRIDGE: &str = "swb-br0";
const CLIENT: &str = "swb-c";
const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const NODES: [(&str, Ipv4Addr, u8); 2] = [
    ("swb-a", Ipv4Addr::new(198, 18, 2, 11), 201),
    ("swb-b", Ipv4Addr::new(198, 18, 2, 12), 202),
];
const UDP_SINK: u16 = 7000;
const TCP_ACCEPT: u16 = 7001;
const TCP_ECHO: u16 = 7002;
/// Published ports of the three measured services; filler services use 20000+.
const PUB_UDP: u16 = 30000;
const PUB_CPS: u16 = 30001;
const PUB_RR: u16 = 30002;

fn pin_dir(node: &str) -> String {
    format!("/sys/fs/bpf/{node}")
}

/// (namespace, node index, address) of the four backends.
fn backends() -> Vec<(String, usize, Ipv4Addr)> {
    let mut out = Vec::new();
    for (i, (node, _, net)) in NODES.iter().enumerate() {
        for j in 1..=2u8 {
            out.push((
                format!("{node}{j}"),
                i,
                Ipv4Addr::new(198, 19, *net, 10 + j),
            ));
        }
    }
    out
}

fn teardown() {
    for (node, _, _) in NODES {
        let _ =
            run(Command::new(swarm_bin()).args(["mesh", "detach", "--pin-dir", &pin_dir(node)]));
    }
    for (ns, _, _) in backends() {
        let _ = sh(&["ip", "netns", "del", &ns]);
    }
    for (node, _, _) in NODES {
        let _ = sh(&["ip", "netns", "del", node]);
        let _ = sh(&["ip", "link", "del", node]);
    }
    let _ = sh(&["ip", "netns", "del", CLIENT]);
    let _ = sh(&["ip", "link", "del", CLIENT]);
    let _ = sh(&["ip", "link", "del", BRIDGE]);
    unaccept_bridge(BRIDGE);
    let _ = std::fs::remove_dir_all("/sys/fs/bpf/swb-lab");
}

fn topology() {
    teardown();
    must(&["ip", "link", "add", BRIDGE, "type", "bridge"]);
    must(&["ip", "link", "set", BRIDGE, "up"]);
    accept_bridge(BRIDGE);
    add_host(BRIDGE, CLIENT, CLIENT, CLIENT_ADDR);
    must(&[
        "ip", "netns", "exec", CLIENT, "ethtool", "-K", "eth0", "tx", "off",
    ]);
    for (i, (node, addr, net)) in NODES.iter().enumerate() {
        add_host(BRIDGE, node, node, *addr);
        must(&[
            "ip",
            "netns",
            "exec",
            node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        must(&["ip", "-n", node, "link", "add", "gw", "type", "bridge"]);
        must(&[
            "ip",
            "-n",
            node,
            "addr",
            "add",
            &format!("198.19.{net}.1/24"),
            "dev",
            "gw",
        ]);
        must(&["ip", "-n", node, "link", "set", "gw", "up"]);
        let (other, other_addr, other_net) = NODES[1 - i];
        let _ = other;
        must(&[
            "ip",
            "-n",
            node,
            "route",
            "add",
            &format!("198.19.{other_net}.0/24"),
            "via",
            &other_addr.to_string(),
        ]);
        // Replies to the benchmark's synthetic client addresses go to the client.
        must(&[
            "ip",
            "-n",
            node,
            "route",
            "add",
            "198.18.128.0/17",
            "via",
            &CLIENT_ADDR.to_string(),
        ]);
        // The direct path: the client reaches backends through their node.
        must(&[
            "ip",
            "-n",
            CLIENT,
            "route",
            "add",
            &format!("198.19.{net}.0/24"),
            "via",
            &addr.to_string(),
        ]);
        let r = run(Command::new(swarm_bin()).args([
            "mesh",
            "attach-peer-pass",
            "--iface",
            node,
            "--pin-dir",
            "/sys/fs/bpf/swb-lab",
        ]));
        assert_eq!(r.code, 0, "peer pass: {r:?}");
    }
    for (ns, i, addr) in backends() {
        let (node, _, net) = NODES[i];
        let port = format!("p{}", &ns[ns.len() - 1..]);
        must(&["ip", "netns", "add", &ns]);
        must(&[
            "ip", "-n", node, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        must(&["ip", "-n", node, "link", "set", &port, "master", "gw", "up"]);
        must(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        must(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &format!("198.19.{net}.1"),
        ]);
    }
}

/// Servers in every backend namespace: a UDP sink, an accept-and-close
/// listener and a 1-byte echo.
fn start_servers() {
    for (ns, _, _) in backends() {
        let (udp, acc, echo) = in_netns(&ns, || {
            (
                UdpSocket::bind(("0.0.0.0", UDP_SINK)).unwrap(),
                TcpListener::bind(("0.0.0.0", TCP_ACCEPT)).unwrap(),
                TcpListener::bind(("0.0.0.0", TCP_ECHO)).unwrap(),
            )
        });
        // A listening socket, so datagrams are not answered with ICMP errors.
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while udp.recv(&mut buf).is_ok() {}
        });
        std::thread::spawn(move || {
            for c in acc.incoming().flatten() {
                drop(c)
            }
        });
        std::thread::spawn(move || {
            for c in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut b = [0u8; 1];
                    while c.read_exact(&mut b).is_ok() && c.write_all(&b).is_ok() {}
                });
            }
        });
    }
}

/// The services for one run: `n` UDP services, the measured one in the
/// middle, followed by the two measured TCP services.
fn services(n: usize) -> serde_json::Value {
    let bk = |port: u16| -> Vec<serde_json::Value> {
        backends()
            .iter()
            .map(|(_, i, a)| serde_json::json!({"addr": format!("{a}:{port}"), "node": NODES[*i].1.to_string()}))
            .collect()
    };
    let mut out = Vec::new();
    for k in 0..n {
        let port = if k == n / 2 {
            PUB_UDP
        } else {
            20000 + k as u16
        };
        out.push(serde_json::json!({"id": k + 1, "proto": "udp", "published_port": port, "backends": bk(UDP_SINK)}));
        if k == n / 2 {
            out.push(serde_json::json!({"id": 100_001, "proto": "tcp", "published_port": PUB_CPS, "backends": bk(TCP_ACCEPT)}));
            out.push(serde_json::json!({"id": 100_002, "proto": "tcp", "published_port": PUB_RR, "backends": bk(TCP_ECHO)}));
        }
    }
    serde_json::Value::Array(out)
}

fn mesh(node: &str, mode: &str, args: &[&str]) -> Duration {
    let bin = swarm_bin();
    let dir = pin_dir(node);
    let mut full = vec!["netns", "exec", node, bin.to_str().unwrap(), "mesh"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--mode", mode, "--pin-dir", &dir]);
    let start = Instant::now();
    let r = run(Command::new("ip").args(&full));
    let took = start.elapsed();
    assert_eq!(r.code, 0, "swarm mesh {args:?} on {node} ({mode}): {r:?}");
    took
}

/// The addresses traffic goes to: node A's published port, or (direct) the
/// backends themselves, round-robin.
fn targets(mode: &str, published: u16, backend_port: u16) -> Vec<SocketAddrV4> {
    if mode == "direct" {
        backends()
            .iter()
            .map(|(_, _, a)| SocketAddrV4::new(*a, backend_port))
            .collect()
    } else {
        vec![SocketAddrV4::new(NODES[0].1, published)]
    }
}

/// The MAC address of `dev` in namespace `ns`.
fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let out = sh(&["ip", "-n", ns, "link", "show", dev]).stdout;
    let hex = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("an Ethernet address");
    let b: Vec<u8> = hex
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    b.try_into().unwrap()
}

/// 64-byte UDP frames from the client, one per flow: 16 source addresses
/// (lab range, routed back to the client) times 4096 source ports, so the
/// load looks like many clients and spreads over every backend.
fn frames(mode: &str) -> Vec<Vec<u8>> {
    let src_mac = mac(CLIENT, "eth0");
    let to = targets(mode, PUB_UDP, UDP_SINK);
    let node_macs: Vec<[u8; 6]> = NODES.iter().map(|(ns, _, _)| mac(ns, "eth0")).collect();
    let mut out = Vec::new();
    for k in 0..(16 * 4096usize) {
        let dst = to[k % to.len()];
        // The router for a direct backend is its node; for the mesh, node A.
        let via = NODES
            .iter()
            .position(|(_, a, net)| *a == *dst.ip() || dst.ip().octets()[2] == *net)
            .unwrap_or(0);
        let dst_mac = node_macs[via];
        let src = Ipv4Addr::new(198, 18, 128 + (k / 4096) as u8, 2);
        let sport = 10_000 + (k % 4096) as u16;
        let mut f = Vec::with_capacity(64);
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&50u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let mut sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        f.extend_from_slice(&30u16.to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
        f.extend_from_slice(&[0u8; 22]);
        out.push(f);
    }
    out
}

/// Packets the backends' interfaces have received, summed. Counting at the
/// interface measures what the mesh delivers, not how fast a backend's
/// socket can read (on this 2-core machine the sockets give out first).
fn backend_rx_packets() -> u64 {
    backends()
        .iter()
        .map(|(ns, _, _)| {
            let out = sh(&["ip", "-n", ns, "-s", "-j", "link", "show", "eth0"]).stdout;
            let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
            v[0]["stats64"]["rx"]["packets"]
                .as_u64()
                .expect("rx packets")
        })
        .sum()
}

/// UDP packets per second delivered to the backends, sent as fast as one
/// core can with AF_PACKET (pktgen-style: the client's own UDP stack is not
/// the limit).
fn udp_pps(mode: &str, window: Duration) -> f64 {
    let frames = frames(mode);
    let fd = in_netns(CLIENT, || {
        // SAFETY: plain socket calls; the results are checked.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = libc::if_nametoindex(c"eth0".as_ptr()) as i32;
            let rc = libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
            fd
        }
    });
    let send_for = |d: Duration| {
        let end = Instant::now() + d;
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut _,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid; each points at one iovec that lives as long as `iov`.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut at = 0;
        while Instant::now() < end {
            let batch = 64.min(msgs.len() - at);
            // SAFETY: msgs[at..at+batch] are valid mmsghdrs.
            unsafe { libc::sendmmsg(fd, msgs[at..].as_mut_ptr(), batch as u32, 0) };
            at = (at + batch) % msgs.len();
        }
    };
    send_for(Duration::from_millis(300)); // create the flows, warm caches
    std::thread::sleep(Duration::from_millis(100));
    let before = backend_rx_packets();
    send_for(window);
    std::thread::sleep(Duration::from_millis(100)); // let queued packets land
                                                    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    (backend_rx_packets() - before) as f64 / window.as_secs_f64()
}

fn tcp_cps(mode: &str, window: Duration) -> f64 {
    let to = targets(mode, PUB_CPS, TCP_ACCEPT);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (to, stop, done) = (to.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                in_netns(CLIENT, move || {
                    let mut k = t;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(s) = TcpStream::connect_timeout(
                            &to[k % to.len()].into(),
                            Duration::from_secs(1),
                        ) {
                            // Close with a reset so client ports never pile up in TIME_WAIT.
                            let linger = libc::linger {
                                l_onoff: 1,
                                l_linger: 0,
                            };
                            // SAFETY: a valid socket and a correctly sized option value.
                            unsafe {
                                libc::setsockopt(
                                    s.as_raw_fd(),
                                    libc::SOL_SOCKET,
                                    libc::SO_LINGER,
                                    &linger as *const _ as *const libc::c_void,
                                    std::mem::size_of::<libc::linger>() as u32,
                                );
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        k += 1;
                    }
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let before = done.load(Ordering::Relaxed);
    std::thread::sleep(window);
    let n = done.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    n as f64 / window.as_secs_f64()
}

/// (exchanges per second, p50 µs, p99 µs) over 4 persistent connections.
fn rr(mode: &str, window: Duration) -> (f64, f64, f64) {
    let to = targets(mode, PUB_RR, TCP_ECHO);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let to = to[t % to.len()];
            std::thread::spawn(move || {
                let mut c = in_netns(CLIENT, move || {
                    TcpStream::connect_timeout(&to.into(), Duration::from_secs(2)).unwrap()
                });
                c.set_nodelay(true).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut lat = Vec::new();
                let mut b = [7u8; 1];
                let warm = Instant::now() + Duration::from_millis(200);
                while Instant::now() < warm {
                    c.write_all(&b).unwrap();
                    c.read_exact(&mut b).unwrap();
                }
                let end = Instant::now() + window;
                while Instant::now() < end {
                    let t0 = Instant::now();
                    c.write_all(&b).unwrap();
                    c.read_exact(&mut b).unwrap();
                    lat.push(t0.elapsed().as_secs_f64() * 1e6);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("rr thread"))
        .collect();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize];
    (
        all.len() as f64 / window.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    )
}

struct Record {
    mode: &'static str,
    services: usize,
    metric: &'static str,
    value: f64,
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

    topology();
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

fn write_results(out: &std::path::Path, records: &[Record], counts: &[usize]) {
    let json: Vec<_> = records
        .iter()
        .map(|r| serde_json::json!({"mode": r.mode, "services": r.services, "metric": r.metric, "value": (r.value * 100.0).round() / 100.0}))
        .collect();
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();

    let get = |mode: &str, n: usize, metric: &str| {
        let n = if mode == "direct" { counts[0] } else { n };
        records
            .iter()
            .find(|r| r.mode == mode && r.services == n && r.metric == metric)
            .map(|r| r.value)
    };
    let mut md = String::from("| metric | services | xdp | iptables | direct | xdp / iptables |\n|---|---:|---:|---:|---:|---:|\n");
    for metric in [
        "udp_pps",
        "tcp_cps",
        "rr_rps",
        "rr_p50_us",
        "rr_p99_us",
        "program_ms",
    ] {
        for &n in counts {
            let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
            let (x, i, d) = (
                get("xdp", n, metric),
                get("iptables", n, metric),
                get("direct", n, metric),
            );
            let ratio = match (x, i) {
                (Some(x), Some(i)) if i > 0.0 => format!("{:.2}×", x / i),
                _ => "–".into(),
            };
            let d = if metric == "program_ms" { None } else { d };
            let _ = writeln!(
                md,
                "| {metric} | {n} | {} | {} | {} | {ratio} |",
                cell(x),
                cell(i),
                cell(d)
            );
        }
    }
    std::fs::write(out.join("results.md"), &md).unwrap();
    std::fs::write(out.join("udp_pps.svg"), chart(records, counts)).unwrap();
    print!("{md}");
}

/// A small line chart of udp_pps against the service count (log scale).
fn chart(records: &[Record], counts: &[usize]) -> String {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max = records
        .iter()
        .filter(|r| r.metric == "udp_pps")
        .map(|r| r.value)
        .fold(1.0, f64::max);
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (counts.len() - 1).max(1) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / max;
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    let _ = writeln!(svg, "<text x=\"{pad}\" y=\"20\">UDP 64-byte packets/s through node A, by number of services</text>");
    let _ = writeln!(
        svg,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        h - pad,
        w - pad,
        h - pad
    );
    for (i, n) in counts.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
            x(i),
            h - pad + 18.0
        );
    }
    for (mode, color) in [
        ("xdp", "#1f77b4"),
        ("iptables", "#d62728"),
        ("direct", "#2ca02c"),
    ] {
        let pts: Vec<String> = counts
            .iter()
            .enumerate()
            .filter_map(|(i, &n)| {
                let n = if mode == "direct" { counts[0] } else { n };
                records
                    .iter()
                    .find(|r| r.mode == mode && r.services == n && r.metric == "udp_pps")
                    .map(|r| format!("{:.1},{:.1}", x(i), y(r.value)))
            })
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        if let Some(last) = pts.last() {
            let (lx, ly) = last.split_once(',').unwrap();
            let _ = writeln!(
                svg,
                "<text x=\"{lx}\" y=\"{ly}\" dx=\"4\" fill=\"{color}\">{mode}</text>"
            );
        }
    }
    let _ = writeln!(svg, "<text x=\"10\" y=\"{}\">{max:.0}</text>", y(max) + 4.0);
    svg.push_str("</svg>\n");
    svg
}
