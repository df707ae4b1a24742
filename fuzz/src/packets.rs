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

fn service(
    id: u32,
    proto: Proto,
    port: Option<u16>,
    vip: Option<Ipv4Addr>,
    (backend, node): (Ipv4Addr, Ipv4Addr),
) -> LbService {
    LbService {
        id,
        name: format!("s{id}"),
        proto,
        vip: vip.map(|a| SocketAddrV4::new(a, 80)),
        published_port: port,
        backends: vec![Backend {
            addr: SocketAddrV4::new(backend, 8080),
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
        let (local, remote) = ((LOCAL_BACKEND, NODE), (REMOTE_BACKEND, OTHER_NODE));
        let services = [
            service(1, Proto::Tcp, Some(8000), None, local),
            service(2, Proto::Udp, Some(9000), None, local),
            service(3, Proto::Tcp, Some(8001), None, remote),
            service(4, Proto::Tcp, None, Some(VIP), local),
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

/// The length of the IPv4 header at the start of `ip`, if it is whole and
/// its checksum right.
fn good_header(ip: &[u8]) -> Option<usize> {
    let hlen = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || hlen < 20 || ip.len() < hlen {
        return None;
    }
    (testrun::checksum(&ip[..hlen], 0) == 0).then_some(hlen)
}

/// A rewritten IPv4 header is whole, and right if the one it came from
/// was: the programs update checksums incrementally, so a wrong one stays
/// wrong (and the stack drops it), but a right one must stay right.
fn check_rewrite(before: &[u8], after: &[u8]) {
    assert!(
        after.len() >= 20 && after[0] >> 4 == 4,
        "a rewritten packet without an IPv4 header"
    );
    if good_header(before).is_some() {
        assert!(
            good_header(after).is_some(),
            "a right IPv4 header rewritten into a wrong one"
        );
    }
}

type Program = fn(&Programs, &[u8]) -> std::io::Result<(u32, Vec<u8>)>;

/// Run `data` through a program: (verdict, the packet after), or `None`
/// for what the kernel's test run refuses to build a packet from.
fn run(what: &str, data: &[u8], program: Program, skb: bool) -> Option<(u32, Vec<u8>)> {
    if !(testrun::MIN_PACKET..=testrun::MAX_PACKET).contains(&data.len()) {
        return None;
    }
    // For a socket buffer, the kernel wants the whole network header of
    // an IPv4 or IPv6 frame (EINVAL otherwise).
    let ethertype = u16::from_be_bytes([data[12], data[13]]);
    let short = match ethertype {
        0x0800 => data.len() < 14 + 20,
        0x86dd => data.len() < 14 + 40,
        _ => false,
    };
    if skb && short {
        return None;
    }
    let out =
        program(programs(), data).unwrap_or_else(|e| panic!("{what}: BPF_PROG_TEST_RUN: {e}"));
    Some(out)
}

/// The XDP program on the underlay.
pub fn xdp(data: &[u8]) {
    let Some((verdict, out)) = run("xdp", data, Programs::xdp, false) else {
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
    let ip = &out[14..];
    if out.len() + 20 == data.len() && data[14 + 9] == 4 {
        // Unwrapped: the tunnel must come from a node, and what it carried
        // goes on as it was.
        // This node counts: it serves its own backends.
        let from = addr_at(data, 14 + 12);
        assert!(
            [NODE, OTHER_NODE].contains(&from),
            "IPIP unwrapped from {from}, which is no node"
        );
        assert_eq!(ip, &data[34..], "an unwrapped packet changed");
    } else if out.len() == data.len() + 20 {
        // Wrapped for the backend's node: the outer header is new, so it
        // must be right whatever came in.
        let hlen = good_header(ip).expect("a wrong IPIP header");
        assert_eq!(ip[9], 4, "a grown packet that is not IPIP");
        assert_eq!(addr_at(ip, 12), NODE, "IPIP from another address");
        assert_eq!(
            addr_at(ip, 16),
            OTHER_NODE,
            "IPIP to a node the maps do not name"
        );
        let inner = &ip[hlen..];
        check_rewrite(&data[14..], inner);
        assert_eq!(
            addr_at(inner, 16),
            REMOTE_BACKEND,
            "IPIP to a backend of another node"
        );
    } else {
        check_rewrite(&data[14..], ip);
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
    let Some((verdict, out)) = run("tc_task", data, Programs::tc_task, true) else {
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
    check_rewrite(&data[14..], ip);
    let (src, dst) = (addr_at(ip, 12), addr_at(ip, 16));
    assert!(
        [LOCAL_BACKEND, REMOTE_BACKEND].contains(&dst) || src == VIP,
        "a task's packet rewritten from {src} to {dst}"
    );
}

/// The underlay's egress program: a rewrite restores a frontend as the
/// source of a backend's reply.
pub fn tc_egress(data: &[u8]) {
    let Some((verdict, out)) = run("tc_egress", data, Programs::tc_egress, true) else {
        return;
    };
    assert_eq!(verdict, testrun::TC_ACT_OK, "tc verdict");
    if out == data {
        return;
    }
    let ip = &out[14..];
    check_rewrite(&data[14..], ip);
    assert_eq!(
        addr_at(ip, 12),
        NODE,
        "a reply rewritten to a source other than the node"
    );
}
