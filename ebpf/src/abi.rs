//! Rust mirror of `include/swarm_abi.h`. Field comments live in the header;
//! a test checks every size and offset here against the header as compiled.
//! Addresses and ports hold network byte order, as in the header.

use aya::Pod;

pub const MAGLEV_CHUNK: usize = 1024;
pub const MAGLEV_MAX: u32 = 131_071;
pub const MAX_BACKENDS: usize = 256;
pub const MAX_SERVICES: u32 = 65_536;

pub const BACKEND_ACTIVE: u8 = 0;
pub const BACKEND_DRAINING: u8 = 1;

/// Drop reasons, indexed as in `swarm_v4_drops` (SWARM_DROP_*).
pub const DROP_REASONS: [&str; 7] = [
    "no_backend",
    "fragment",
    "bad_header",
    "encap_failed",
    "decap_failed",
    "foreign_tunnel",
    "too_big",
];

/// Map names, as pinned under the bpffs directory.
pub mod maps {
    pub const CONFIG: &str = "swarm_v4_config";
    pub const FRONTENDS: &str = "swarm_v4_frontends";
    pub const SERVICES: &str = "swarm_v4_services";
    pub const MAGLEV: &str = "swarm_v4_maglev";
    pub const FLOWS: &str = "swarm_v4_flows";
    pub const RNAT: &str = "swarm_v4_rnat";
    pub const SVC_STATS: &str = "swarm_v4_svc_stats";
    pub const DROPS: &str = "swarm_v4_drops";
    pub const NODES: &str = "swarm_v4_nodes";
    pub const ENDPOINTS: &str = "swarm_v4_endpoints";
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frontend {
    pub addr: u32,
    pub port: u16,
    pub proto: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontendInfo {
    pub svc_id: u32,
    pub slot: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    pub addr: u32,
    pub node: u32,
    pub port: u16,
    pub state: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Service {
    pub table_size: u32,
    pub backend_count: u16,
    pub generation: u16,
    pub backends: [Backend; MAX_BACKENDS],
}

impl Default for Service {
    fn default() -> Self {
        Service {
            table_size: 0,
            backend_count: 0,
            generation: 0,
            backends: [Backend::default(); MAX_BACKENDS],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MaglevKey {
    pub svc_id: u32,
    pub chunk: u16,
    pub generation: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MaglevChunk {
    pub entries: [u16; MAGLEV_CHUNK],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flow {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowTarget {
    pub created_ns: u64,
    pub seen_ns: u64,
    pub backend: Backend,
    pub svc_id: u32,
    pub slot: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reply {
    pub backend_addr: u32,
    pub client_addr: u32,
    pub backend_port: u16,
    pub client_port: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplyNat {
    pub frontend_addr: u32,
    pub frontend_port: u16,
    pub scope: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SvcStats {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub port_mac: [u8; 6],
    pub mtu: u16,
    pub pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    pub node_addr: u32,
    pub flags: u32,
}

// SAFETY: each type is repr(C), made only of integers and arrays of them,
// with explicit padding fields, so every bit pattern is valid and there are
// no uninitialised padding bytes.
unsafe impl Pod for Frontend {}
unsafe impl Pod for FrontendInfo {}
unsafe impl Pod for Backend {}
unsafe impl Pod for Service {}
unsafe impl Pod for MaglevKey {}
unsafe impl Pod for MaglevChunk {}
unsafe impl Pod for Flow {}
unsafe impl Pod for FlowTarget {}
unsafe impl Pod for Reply {}
unsafe impl Pod for ReplyNat {}
unsafe impl Pod for SvcStats {}
unsafe impl Pod for Endpoint {}
unsafe impl Pod for Config {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::mem::{offset_of, size_of};

    include!(concat!(env!("OUT_DIR"), "/layout.rs"));

    /// Size of a field, without needing a value of the struct.
    fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
        size_of::<F>()
    }

    macro_rules! rust_layout {
        ($($c:literal => $t:ident { $($f:ident),* })*) => {{
            let mut v: Vec<(String, String, usize, usize)> = Vec::new();
            $(
                v.push(($c.into(), String::new(), 0, size_of::<$t>()));
                $(
                    v.push(($c.into(), stringify!($f).into(), offset_of!($t, $f),
                            field_size::<$t, _>(|s| &s.$f)));
                )*
            )*
            v
        }};
    }

    #[test]
    fn rust_mirror_matches_the_c_header() {
        let rust: BTreeSet<_> = rust_layout! {
            "swarm_frontend" => Frontend { addr, port, proto, pad }
            "swarm_frontend_info" => FrontendInfo { svc_id, slot }
            "swarm_backend" => Backend { addr, node, port, state, pad }
            "swarm_service" => Service { table_size, backend_count, generation, backends }
            "swarm_maglev_key" => MaglevKey { svc_id, chunk, generation }
            "swarm_maglev_chunk" => MaglevChunk { entries }
            "swarm_flow" => Flow { saddr, daddr, sport, dport, proto, pad }
            "swarm_flow_target" => FlowTarget { created_ns, seen_ns, backend, svc_id, slot, pad }
            "swarm_reply" => Reply { backend_addr, client_addr, backend_port, client_port, proto, pad }
            "swarm_reply_nat" => ReplyNat { frontend_addr, frontend_port, scope, pad }
            "swarm_svc_stats" => SvcStats { packets, bytes, new_flows }
            "swarm_endpoint" => Endpoint { ifindex, mac, port_mac, mtu, pad }
            "swarm_config" => Config { node_addr, flags }
        }
        .into_iter()
        .collect();
        let c: BTreeSet<_> = LAYOUT
            .iter()
            .map(|(s, f, o, z)| (s.to_string(), f.to_string(), *o, *z))
            .collect();
        let only_c: Vec<_> = c.difference(&rust).collect();
        let only_rust: Vec<_> = rust.difference(&c).collect();
        assert!(
            only_c.is_empty() && only_rust.is_empty(),
            "ABI mismatch\n  C header says: {only_c:?}\n  Rust says:     {only_rust:?}"
        );
    }

    #[test]
    fn the_programs_are_embedded() {
        // ELF magic: build.rs really produced objects.
        assert_eq!(&crate::XDP_MESH[..4], b"\x7fELF");
        assert_eq!(&crate::TC_EGRESS[..4], b"\x7fELF");
    }
}
