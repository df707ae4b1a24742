//! The benchmark's namespaces and the servers in its backends.
//!
//! Every namespace is the benchmark's own, so the host's settings are never
//! touched: the underlay bridge lives in a namespace of its own (`swb-u`),
//! and in it and in the nodes bridged frames skip netfilter
//! (`bridge-nf-call-*=0`; `--bridge-netfilter` turns it on to measure it). The host keeps its own setting, which Docker
//! relies on.
//!
//! ```text
//!   swb-c (client) ─┐                 ┌─ swb-a (node A) ─ gw ─ swb-a1, swb-a2
//!                   └─ swb-u: br0 ────┤
//!                                     └─ swb-b (node B) ─ gw ─ swb-b1, swb-b2
//! ```

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use swarm_tests::netns::{add_gateway, add_task, in_netns, mac_str, must, sh};
use swarm_tests::{run, swarm_bin};

/// The underlay's own namespace, holding the bridge.
pub const UNDERLAY: &str = "swb-u";
const BRIDGE: &str = "br0";
pub const CLIENT: &str = "swb-c";
/// The client's port on the underlay bridge: its receive queue is where
/// the forwarding path is steered to its own core (RPS).
pub const CLIENT_PORT: &str = "swb-c";
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
/// Where the peer-pass programs of the underlay's ports are pinned.
const LAB_PIN_DIR: &str = "/sys/fs/bpf/swb-lab";

pub fn pin_dir(node: &str) -> String {
    format!("/sys/fs/bpf/{node}")
}

/// (namespace, node index, address, node-end port) of the four backends.
pub fn backends() -> Vec<(String, usize, Ipv4Addr, String)> {
    let mut out = Vec::new();
    for (i, (node, _, net)) in NODES.iter().enumerate() {
        for j in 1..=2u8 {
            out.push((
                format!("{node}{j}"),
                i,
                Ipv4Addr::new(198, 19, *net, 10 + j),
                format!("p{j}"),
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
    for (ns, _, _, _) in backends() {
        let _ = sh(&["ip", "netns", "del", &ns]);
    }
    for (node, _, _) in NODES {
        let _ = sh(&["ip", "netns", "del", node]);
    }
    let _ = sh(&["ip", "netns", "del", CLIENT]);
    let _ = sh(&["ip", "netns", "del", UNDERLAY]);
    let _ = std::fs::remove_dir_all(LAB_PIN_DIR);
}

/// Whether bridged frames in namespace `ns` go through iptables, ip6tables
/// and arptables. Returns the settings as they are afterwards, for the
/// report (none when br_netfilter is not loaded, and so not in the path).
fn bridge_netfilter(ns: &str, on: bool) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["iptables", "ip6tables", "arptables"] {
        let name = format!("net.bridge.bridge-nf-call-{key}");
        let set = format!("{name}={}", u8::from(on));
        if sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", &set]).code == 0 {
            let v = sh(&["ip", "netns", "exec", ns, "sysctl", "-n", &name]).stdout;
            out.push(format!("{ns}: {name}={}", v.trim()));
        }
    }
    out
}

/// A namespace `ns` whose eth0 (`addr`/24) is plugged into the underlay
/// bridge through the veth `port` in the underlay's namespace.
fn add_underlay_host(ns: &str, port: &str, addr: Ipv4Addr) {
    must(&["ip", "netns", "add", ns]);
    must(&[
        "ip", "-n", UNDERLAY, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
        ns,
    ]);
    must(&[
        "ip", "-n", UNDERLAY, "link", "set", port, "master", BRIDGE, "up",
    ]);
    let cidr = format!("{addr}/24");
    must(&["ip", "-n", ns, "addr", "add", &cidr, "dev", "eth0"]);
    must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
}

/// Build the lab. Returns what the report should say about it. With
/// `with_bridge_netfilter`, bridged frames go through netfilter, as on a
/// host where Docker turned br_netfilter on (to measure what that costs).
pub fn topology(forwarding_cpu: usize, with_bridge_netfilter: bool) -> Vec<String> {
    teardown();
    let mut notes = Vec::new();
    must(&["ip", "netns", "add", UNDERLAY]);
    must(&[
        "ip", "-n", UNDERLAY, "link", "add", BRIDGE, "type", "bridge",
    ]);
    must(&["ip", "-n", UNDERLAY, "link", "set", BRIDGE, "up"]);
    notes.extend(bridge_netfilter(UNDERLAY, with_bridge_netfilter));
    add_underlay_host(CLIENT, CLIENT_PORT, CLIENT_ADDR);
    // The generator writes whole frames: no checksum offload to leave undone.
    must(&[
        "ip", "netns", "exec", CLIENT, "ethtool", "-K", "eth0", "tx", "off",
    ]);
    // Receive Packet Steering: frames from the client are processed, all
    // the way through the nodes to the backends, on the forwarding core.
    let mask = format!("{:x}", 1u64 << forwarding_cpu);
    let rps = format!("/sys/class/net/{CLIENT_PORT}/queues/rx-0/rps_cpus");
    must(&[
        "ip",
        "netns",
        "exec",
        UNDERLAY,
        "sh",
        "-c",
        &format!("echo {mask} > {rps}"),
    ]);
    notes.push(format!(
        "RPS: {UNDERLAY}/{CLIENT_PORT} rx-0 -> CPU{forwarding_cpu} (mask {mask})"
    ));
    for (i, (node, addr, net)) in NODES.iter().enumerate() {
        add_underlay_host(node, node, *addr);
        add_gateway(node, "gw", Ipv4Addr::new(198, 19, *net, 1));
        notes.extend(bridge_netfilter(node, with_bridge_netfilter));
        let (_, other_addr, other_net) = NODES[1 - i];
        let other = format!("198.19.{other_net}.0/24");
        must(&[
            "ip",
            "-n",
            node,
            "route",
            "add",
            &other,
            "via",
            &other_addr.to_string(),
        ]);
        // Replies to the benchmark's synthetic client addresses go to the client.
        let client = CLIENT_ADDR.to_string();
        must(&[
            "ip",
            "-n",
            node,
            "route",
            "add",
            "198.18.128.0/17",
            "via",
            &client,
        ]);
        // The direct path: the client reaches backends through their node.
        let mine = format!("198.19.{net}.0/24");
        must(&[
            "ip",
            "-n",
            CLIENT,
            "route",
            "add",
            &mine,
            "via",
            &addr.to_string(),
        ]);
        // Frames a node's XDP program sends back out are taken by its
        // underlay port only if that port runs an XDP program too.
        let r = run(Command::new("ip").args([
            "netns",
            "exec",
            UNDERLAY,
            swarm_bin().to_str().expect("utf-8 path"),
            "mesh",
            "attach-peer-pass",
            "--iface",
            node,
            "--pin-dir",
            LAB_PIN_DIR,
        ]));
        assert_eq!(r.code, 0, "peer pass: {r:?}");
    }
    for (ns, i, addr, port) in backends() {
        let (node, _, net) = NODES[i];
        add_task(node, "gw", &ns, &port, addr, Ipv4Addr::new(198, 19, net, 1));
        // As the agent does for a task: its end receives in NAPI, which is
        // what lets XDP redirect frames to it.
        must(&[
            "ip", "netns", "exec", &ns, "ethtool", "-K", "eth0", "gro", "on",
        ]);
    }
    notes
}

/// Give node `node`'s XDP fast path its two backends' ports.
pub fn register_endpoints(node: &str) {
    for (ns, i, addr, port) in backends() {
        if NODES[i].0 != node {
            continue;
        }
        let mac = mac_str(&ns, "eth0");
        let r = run(Command::new("ip").args([
            "netns",
            "exec",
            node,
            swarm_bin().to_str().expect("utf-8 path"),
            "mesh",
            "endpoint",
            "--addr",
            &addr.to_string(),
            "--iface",
            &port,
            "--mac",
            &mac,
            "--pin-dir",
            &pin_dir(node),
        ]));
        assert_eq!(r.code, 0, "endpoint {addr} on {node}: {r:?}");
    }
}

/// Servers in every backend namespace: a UDP sink that never reads (its
/// packets are counted at the interface; a socket that read them would be
/// the limit), an accept-and-close listener and a 1-byte echo. Server
/// threads run on `cpu`, the generator's core, so the forwarding core does
/// only forwarding and the kernel's receive work.
pub fn start_servers(cpu: usize) {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    static SINKS: std::sync::Mutex<Vec<UdpSocket>> = std::sync::Mutex::new(Vec::new());
    for (ns, _, _, _) in backends() {
        let (udp, acc, echo) = in_netns(&ns, || {
            (
                UdpSocket::bind(("0.0.0.0", UDP_SINK)).unwrap(),
                TcpListener::bind(("0.0.0.0", TCP_ACCEPT)).unwrap(),
                TcpListener::bind(("0.0.0.0", TCP_ECHO)).unwrap(),
            )
        });
        // Bound, so datagrams are not answered with ICMP errors; never read.
        SINKS.lock().unwrap().push(udp);
        std::thread::spawn(move || {
            crate::load::pin_to(cpu);
            for c in acc.incoming().flatten() {
                drop(c)
            }
        });
        std::thread::spawn(move || {
            crate::load::pin_to(cpu);
            for c in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    crate::load::pin_to(cpu);
                    let mut c = c;
                    let mut b = [0u8; 1];
                    while c.read_exact(&mut b).is_ok() && c.write_all(&b).is_ok() {}
                });
            }
        });
    }
}
