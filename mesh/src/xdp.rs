//! XDP mode: the BPF programs from `swarm-ebpf`, attached to a node's
//! underlay interface, and the maps that program them.
//!
//! Maps and program links are pinned under `/sys/fs/bpf/<prefix>/`. A loader
//! that starts again finds the pinned links and atomically swaps its freshly
//! loaded programs into them, so traffic never sees a moment without the
//! data plane, and the pinned flow table keeps established connections on
//! their backends.

mod attach;
mod batch;
mod delta;
mod dump;
mod maps;

pub use attach::{attach, attach_peer_pass, attach_task, detach, forget_task, probe_native};
pub use maps::XdpDataplane;

use crate::dataplane::DataplaneError;
use std::net::{Ipv4Addr, SocketAddrV4};
use swarm_ebpf::abi;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/swarm";

fn bpf(what: impl std::fmt::Display) -> impl FnOnce(String) -> DataplaneError {
    move |e| DataplaneError::Bpf(format!("{what}: {e}"))
}

/// Network-order u32 of an address, as the ABI stores it.
fn ip_be(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

fn ip_from_be(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v.to_ne_bytes())
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        _ => "other",
    }
}

fn frontend_str(f: &abi::Frontend) -> String {
    let addr = if f.addr == 0 {
        "*".to_string()
    } else {
        ip_from_be(f.addr).to_string()
    };
    format!("{addr}:{}/{}", u16::from_be(f.port), proto_name(f.proto))
}

fn backend_str(b: &abi::Backend) -> String {
    SocketAddrV4::new(ip_from_be(b.addr), u16::from_be(b.port)).to_string()
}
