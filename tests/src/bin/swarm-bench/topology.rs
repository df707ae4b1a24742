//! The benchmark's namespaces, the servers in its backends, and the services
//! it programs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use swarm_tests::netns::{
    accept_bridge, add_gateway, add_host, add_task, in_netns, must, sh, unaccept_bridge,
};
use swarm_tests::{run, swarm_bin};

pub const BRIDGE: &str = "swb-br0";
pub const CLIENT: &str = "swb-c";
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const NODES: [(&str, Ipv4Addr, u8); 2] = [
    ("swb-a", Ipv4Addr::new(198, 18, 2, 11), 201),
    ("swb-b", Ipv4Addr::new(198, 18, 2, 12), 202),
];
pub const UDP_SINK: u16 = 7000;
pub const TCP_ACCEPT: u16 = 7001;
pub const TCP_ECHO: u16 = 7002;
/// Published ports of the three measured services; filler services use 20000+.
pub const PUB_UDP: u16 = 30000;
pub const PUB_CPS: u16 = 30001;
pub const PUB_RR: u16 = 30002;

fn pin_dir(node: &str) -> String {
    format!("/sys/fs/bpf/{node}")
}

/// (namespace, node index, address) of the four backends.
pub fn backends() -> Vec<(String, usize, Ipv4Addr)> {
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

pub fn teardown() {
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

pub fn topology() {
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
        add_gateway(node, "gw", Ipv4Addr::new(198, 19, *net, 1));
        let (_, other_addr, other_net) = NODES[1 - i];
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
        add_task(node, "gw", &ns, &port, addr, Ipv4Addr::new(198, 19, net, 1));
    }
}

/// Servers in every backend namespace: a UDP sink, an accept-and-close
/// listener and a 1-byte echo.
pub fn start_servers() {
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
pub fn services(n: usize) -> serde_json::Value {
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

pub fn mesh(node: &str, mode: &str, args: &[&str]) -> Duration {
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
pub fn targets(mode: &str, published: u16, backend_port: u16) -> Vec<SocketAddrV4> {
    if mode == "direct" {
        backends()
            .iter()
            .map(|(_, _, a)| SocketAddrV4::new(*a, backend_port))
            .collect()
    } else {
        vec![SocketAddrV4::new(NODES[0].1, published)]
    }
}
