//! Packets through the data plane's programs in the kernel, by
//! BPF_PROG_TEST_RUN (`swarm_mesh::testrun`), against a node with a
//! published TCP and UDP port (a local backend), one with a remote backend
//! and a VIP service. The verifier already keeps the kernel safe; what is
//! checked here is routing:
//! - every verdict is one the program means (never XDP_ABORTED);
//! - a packet the program changes is a well-formed IPv4 packet (header
//!   checksum right) that goes only where the maps say: to a backend, to a
//!   node in IPIP, or back to a client from a frontend.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;
use swarm_mesh::dataplane::{Backend, BackendState, LbService, Proto};
use swarm_mesh::testrun::{self, Programs};

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const OTHER_NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
const LOCAL_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 19, 101, 11);
const REMOTE_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 19, 102, 11);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn service(id: u32, proto: Proto, port: Option<u16>, vip: Option<Ipv4Addr>) -> LbService {
    let (addr, node) = if id == 3 {
        (REMOTE_BACKEND, OTHER_NODE)
    } else {
        (LOCAL_BACKEND, NODE)
    };
    LbService {
        id,
        name: format!("s{id}"),
        proto,
        vip: vip.map(|a| SocketAddrV4::new(a, 80)),
        published_port: port,
        backends: vec![Backend {
            addr: SocketAddrV4::new(addr, 8080),
            node,
            state: BackendState::Active,
        }],
        declared_backends: None,
        snat: None,
    }
}

fn programs() -> &'static Programs {
    static PROGRAMS: OnceLock<Programs> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let services = [
            service(1, Proto::Tcp, Some(8000), None),
            service(2, Proto::Udp, Some(9000), None),
            service(3, Proto::Tcp, Some(8001), None),
            service(4, Proto::Tcp, None, Some(VIP)),
        ];
        let mut p = Programs::load(NODE, &services)
            .expect("loading the data plane (run as root, with BPF)");
        swarm_mesh::dataplane::Dataplane::set_nodes(&mut p.dataplane, &[OTHER_NODE])
            .expect("the node list");
        p
    })
}

fn addr_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// The IPv4 header at the start of `ip` is whole and its checksum right;
/// its length.
fn valid_header(ip: &[u8]) -> usize {
    assert!(ip.len() >= 20, "a rewritten packet without an IPv4 header");
    assert_eq!(ip[0] >> 4, 4, "a rewritten packet that is not IPv4");
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    assert!(
        hlen >= 20 && ip.len() >= hlen,
        "a rewritten header cut short"
    );
    let mut sum: u32 = ip[..hlen]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff, "a rewritten IPv4 header with a wrong checksum");
    hlen
}

fn run(
    what: &str,
    data: &[u8],
    f: impl Fn(&Programs, &[u8]) -> std::io::Result<(u32, Vec<u8>)>,
) -> Option<(u32, Vec<u8>)> {
    if !(testrun::MIN_PACKET..=testrun::MAX_PACKET).contains(&data.len()) {
        return None;
    }
    let out = f(programs(), data).unwrap_or_else(|e| panic!("{what}: BPF_PROG_TEST_RUN: {e}"));
    Some(out)
}

/// The XDP program on the underlay.
pub fn xdp(data: &[u8]) {
    let Some((verdict, out)) = run("xdp", data, Programs::xdp) else {
        return;
    };
    assert!(
        matches!(
            verdict,
            testrun::XDP_DROP | testrun::XDP_PASS | testrun::XDP_TX | testrun::XDP_REDIRECT
        ),
        "XDP verdict {verdict}"
    );
    if verdict == testrun::XDP_DROP || out == data {
        return;
    }
    if out.len() + 20 == data.len() && data.get(14 + 9) == Some(&4) {
        // Unwrapped: the tunnel must come from a node, and what it carried
        // goes on as it was.
        assert_eq!(
            addr_at(data, 14 + 12),
            OTHER_NODE,
            "IPIP unwrapped from a host that is no node"
        );
        assert_eq!(out[14..], data[34..], "an unwrapped packet changed");
        return;
    }
    let ip = &out[14..];
    let hlen = valid_header(ip);
    if ip[9] == 4 {
        // Encapsulated for the backend's node.
        assert_eq!(addr_at(ip, 12), NODE, "IPIP from another address");
        assert_eq!(
            addr_at(ip, 16),
            OTHER_NODE,
            "IPIP to a node the maps do not name"
        );
        let inner = &ip[hlen..];
        valid_header(inner);
        assert_eq!(
            addr_at(inner, 16),
            REMOTE_BACKEND,
            "IPIP to a backend of another node"
        );
    } else {
        assert_eq!(
            addr_at(ip, 16),
            LOCAL_BACKEND,
            "a rewrite to no local backend"
        );
    }
}

/// The east-west program on a task's port: rewrites go to a backend
/// (a VIP's connection) or come from the VIP (its reply).
pub fn tc_task(data: &[u8]) {
    let Some((verdict, out)) = run("tc_task", data, Programs::tc_task) else {
        return;
    };
    assert!(
        matches!(verdict, testrun::TC_ACT_OK | testrun::TC_ACT_SHOT),
        "tc verdict {verdict}"
    );
    if verdict == testrun::TC_ACT_SHOT || out == data {
        return;
    }
    let ip = &out[14..];
    valid_header(ip);
    let (src, dst) = (addr_at(ip, 12), addr_at(ip, 16));
    assert!(
        [LOCAL_BACKEND, REMOTE_BACKEND].contains(&dst) || src == VIP,
        "a task's packet rewritten from {src} to {dst}"
    );
}

/// The underlay's egress program: a rewrite restores a frontend as the
/// source of a backend's reply.
pub fn tc_egress(data: &[u8]) {
    let Some((verdict, out)) = run("tc_egress", data, Programs::tc_egress) else {
        return;
    };
    assert_eq!(verdict, testrun::TC_ACT_OK, "tc verdict");
    if out == data {
        return;
    }
    let ip = &out[14..];
    valid_header(ip);
    assert_eq!(
        addr_at(ip, 12),
        NODE,
        "a reply rewritten to a source other than the node"
    );
}
