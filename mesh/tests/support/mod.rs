//! What the packet tests share: the loaded programs, and building and
//! checking packets.
#![allow(dead_code)] // each test binary uses its own part

use std::net::Ipv4Addr;
use swarm_mesh::dataplane::{Backend, BackendState, Dataplane, LbService, Proto};
use swarm_mesh::testrun::{checksum, Programs};

pub const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
pub const OTHER_NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 12);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const LOCAL_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 19, 101, 11);
pub const REMOTE_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 19, 102, 11);

/// The loaded programs with their own maps, in a private directory.
pub struct Harness {
    pub p: Programs,
}

pub fn harness(services: &[LbService]) -> Harness {
    Harness {
        p: Programs::load(NODE, services).expect("loading the data plane (needs root and BPF)"),
    }
}

impl Harness {
    /// Run one packet through the XDP program: (verdict, packet after).
    pub fn run(&self, pkt: &[u8]) -> (u32, Vec<u8>) {
        self.p.xdp(pkt).expect("BPF_PROG_TEST_RUN")
    }

    pub fn drops(&mut self, reason: &str) -> u64 {
        let d = self.p.dataplane.dump().unwrap();
        d.drops
            .iter()
            .find(|(n, _)| n == reason)
            .map(|(_, c)| *c)
            .unwrap()
    }
}

pub fn service(
    id: u32,
    proto: Proto,
    port: u16,
    backends: &[(Ipv4Addr, u16, Ipv4Addr)],
) -> LbService {
    LbService {
        id,
        name: String::new(),
        proto,
        vip: None,
        published_port: Some(port),
        backends: backends
            .iter()
            .map(|&(a, p, node)| Backend {
                addr: std::net::SocketAddrV4::new(a, p),
                node,
                state: BackendState::Active,
            })
            .collect(),
        declared_backends: None,
        snat: None,
    }
}

// ---- packet building and checking ----

pub fn pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for c in [src, dst] {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]))
            + u32::from(u16::from_be_bytes([c[2], c[3]]));
    }
    s + u32::from(proto) + len as u32
}

pub struct Ip {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub options: Vec<u8>,
    pub frag: u16,
}

pub fn ipv4(ip: &Ip, l4: &[u8]) -> Vec<u8> {
    let hlen = 20 + ip.options.len();
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&ip.frag.to_be_bytes());
    h[8] = 64;
    h[9] = ip.proto;
    h[12..16].copy_from_slice(&ip.src.octets());
    h[16..20].copy_from_slice(&ip.dst.octets());
    h[20..].copy_from_slice(&ip.options);
    let c = checksum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    [h, l4.to_vec()].concat()
}

pub fn l4(
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = if proto == 6 {
        vec![0u8; 20]
    } else {
        vec![0u8; 8]
    };
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        h[12] = 5 << 4;
        h[13] = 0x02; // SYN
    } else {
        h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    }
    let mut seg = [h, payload.to_vec()].concat();
    let c = checksum(&seg, pseudo(src.octets(), dst.octets(), proto, seg.len()));
    let at = if proto == 6 { 16 } else { 6 };
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    seg
}

pub fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut e = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    e.extend_from_slice(&ethertype.to_be_bytes());
    [e, rest.to_vec()].concat()
}

/// A frame carrying the UDP segment `seg` from the client to this node.
pub fn udp_packet(seg: &[u8]) -> Vec<u8> {
    let ip = Ip {
        src: CLIENT,
        dst: NODE,
        proto: 17,
        options: vec![],
        frag: 0,
    };
    eth(0x0800, &ipv4(&ip, seg))
}

pub fn tcp_packet(dst: Ipv4Addr, dport: u16, options: Vec<u8>) -> Vec<u8> {
    let seg = l4(6, CLIENT, dst, 40000, dport, b"hello");
    eth(
        0x0800,
        &ipv4(
            &Ip {
                src: CLIENT,
                dst,
                proto: 6,
                options,
                frag: 0,
            },
            &seg,
        ),
    )
}

/// Check an IPv4 packet at `ip` (header and L4 checksums); return its header length.
pub fn assert_valid_ipv4(ip: &[u8]) -> usize {
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    assert_eq!(checksum(&ip[..hlen], 0), 0, "IPv4 header checksum");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let proto = ip[9];
    if proto == 6 || proto == 17 {
        let seg = &ip[hlen..total];
        let zero_udp = proto == 17 && seg[6..8] == [0, 0];
        if !zero_udp {
            let p = pseudo(
                ip[12..16].try_into().unwrap(),
                ip[16..20].try_into().unwrap(),
                proto,
                seg.len(),
            );
            assert_eq!(checksum(seg, p), 0, "L4 checksum");
        }
    }
    hlen
}

pub fn addr_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

pub fn port_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn local_web() -> Vec<LbService> {
    vec![
        service(1, Proto::Tcp, 8000, &[(LOCAL_BACKEND, 8080, NODE)]),
        service(2, Proto::Udp, 9000, &[(LOCAL_BACKEND, 8081, NODE)]),
    ]
}

/// What the other node sends this one for the local backend, port 8080:
/// the client's TCP segment from `sport`, in IPIP whose IP ID carries
/// frontend port 8000 and whose fragment field is `frag` (0x4000: DF).
/// Returns (the frame, the inner packet).
pub fn tunnelled(frag: u16, sport: u16) -> (Vec<u8>, Vec<u8>) {
    let seg = l4(6, CLIENT, LOCAL_BACKEND, sport, 8080, b"x");
    let inner = ipv4(
        &Ip {
            src: CLIENT,
            dst: LOCAL_BACKEND,
            proto: 6,
            options: vec![],
            frag: 0,
        },
        &seg,
    );
    let mut outer = ipv4(
        &Ip {
            src: OTHER_NODE,
            dst: NODE,
            proto: 4,
            options: vec![],
            frag,
        },
        &inner,
    );
    outer[4..6].copy_from_slice(&8000u16.to_be_bytes());
    (eth(0x0800, &outer), inner)
}
