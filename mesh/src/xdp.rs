//! XDP mode: the BPF programs from `swarm-ebpf`, attached to a node's
//! underlay interface, and the maps that program them.
//!
//! Maps and program links are pinned under `/sys/fs/bpf/<prefix>/`. A loader
//! that starts again finds the pinned links and atomically swaps its freshly
//! loaded programs into them, so traffic never sees a moment without the
//! data plane, and the pinned flow table keeps established connections on
//! their backends.

use crate::dataplane::{
    Backend, BackendDump, BackendState, Dataplane, DataplaneError, Dump, FlowDump, LbService,
    ServiceDump,
};
use crate::{bpffs, maglev};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::tc::{self, SchedClassifierLink, TcAttachType};
use aya::programs::{ProgramError, SchedClassifier, Xdp, XdpFlags};
use aya::EbpfLoader;
use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use swarm_ebpf::abi::{self, maps as names};

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

/// Load both programs and attach them to `iface`, replacing the programs in
/// links pinned by an earlier run. Returns the attach points.
pub fn attach(iface: &str, node_addr: Ipv4Addr, dir: &Path) -> Result<Vec<String>, DataplaneError> {
    bpffs::ensure(dir)?;
    let mut xdp_obj = EbpfLoader::new()
        .map_pin_path(dir)
        .load(swarm_ebpf::XDP_MESH)
        .map_err(|e| bpf("loading the XDP program")(e.to_string()))?;
    {
        let map = xdp_obj
            .map_mut(names::CONFIG)
            .ok_or_else(|| DataplaneError::Bpf("config map missing".into()))?;
        let mut config: Array<_, abi::Config> =
            Array::try_from(map).map_err(|e| bpf("config map")(e.to_string()))?;
        let cfg = abi::Config {
            node_addr: ip_be(node_addr),
            flags: 0,
        };
        config
            .set(0, cfg, 0)
            .map_err(|e| bpf("writing config")(e.to_string()))?;
    }
    let prog: &mut Xdp = xdp_obj
        .program_mut("swarm_xdp_ingress")
        .ok_or_else(|| DataplaneError::Bpf("program swarm_xdp_ingress missing".into()))?
        .try_into()
        .map_err(|e: ProgramError| bpf("XDP program")(e.to_string()))?;
    prog.load()
        .map_err(|e| bpf("verifying the XDP program")(format!("{e:#}")))?;
    let xdp_pin = dir.join(format!("link_xdp_{iface}"));
    let mode = if xdp_pin.exists() {
        let link = pinned_link::<aya::programs::xdp::XdpLink>(&xdp_pin)?;
        prog.attach_to_link(link)
            .map_err(|e| bpf("replacing the XDP program")(e.to_string()))?;
        "replaced"
    } else {
        let (id, mode) = match prog.attach(iface, XdpFlags::DRV_MODE) {
            Ok(id) => (id, "native"),
            Err(e) => {
                tracing::warn!(iface, error = %e, "native XDP unavailable; using generic (skb) mode");
                let id = prog
                    .attach(iface, XdpFlags::SKB_MODE)
                    .map_err(|e| bpf(format!("attaching XDP to {iface}"))(e.to_string()))?;
                (id, "generic")
            }
        };
        pin_link(prog.take_link(id), &xdp_pin)?;
        mode
    };

    attach_tc(
        swarm_ebpf::TC_EGRESS,
        "swarm_tc_egress",
        iface,
        TcAttachType::Egress,
        dir,
        "tc_egress",
    )?;
    Ok(vec![
        format!("xdp:{iface} ({mode})"),
        format!("tc-egress:{iface}"),
    ])
}

/// Keep a freshly attached link beyond this process by pinning it at `path`.
fn pin_link<L>(link: Result<L, ProgramError>, path: &Path) -> Result<(), DataplaneError>
where
    L: TryInto<FdLink, Error = LinkError>,
{
    let what = path.display();
    let link: FdLink = link
        .map_err(|e| bpf(format!("link for {what}"))(e.to_string()))?
        .try_into()
        .map_err(|e: LinkError| bpf(format!("link for {what} is not a bpf_link"))(e.to_string()))?;
    link.pin(path)
        .map_err(|e| bpf(format!("pinning {what}"))(e.to_string()))?;
    Ok(())
}

/// The link an earlier run pinned at `path`, to swap a new program into.
fn pinned_link<L>(path: &Path) -> Result<L, DataplaneError>
where
    L: TryFrom<FdLink, Error = LinkError>,
{
    let what = path.display();
    let link: FdLink = PinnedLink::from_pin(path)
        .map_err(|e| bpf(format!("opening {what}"))(e.to_string()))?
        .into();
    L::try_from(link).map_err(|e| bpf(format!("pinned link {what}"))(e.to_string()))
}

/// Load the tc program `name` from `object` (its maps reused from the pins
/// in `dir`) and attach it to `iface`, or swap it into the link pinned as
/// `link_<pin>_<iface>` by an earlier run.
fn attach_tc(
    object: &[u8],
    name: &str,
    iface: &str,
    direction: TcAttachType,
    dir: &Path,
    pin: &str,
) -> Result<(), DataplaneError> {
    let mut obj = EbpfLoader::new()
        .map_pin_path(dir)
        .load(object)
        .map_err(|e| bpf(format!("loading {name}"))(e.to_string()))?;
    let _ = tc::qdisc_add_clsact(iface); // already present is fine
    let prog: &mut SchedClassifier = obj
        .program_mut(name)
        .ok_or_else(|| DataplaneError::Bpf(format!("program {name} missing")))?
        .try_into()
        .map_err(|e: ProgramError| bpf(name)(e.to_string()))?;
    prog.load()
        .map_err(|e| bpf(format!("verifying {name}"))(format!("{e:#}")))?;
    let pin_path = dir.join(format!("link_{pin}_{iface}"));
    if pin_path.exists() {
        let link = pinned_link::<SchedClassifierLink>(&pin_path)?;
        prog.attach_to_link(link)
            .map_err(|e| bpf(format!("replacing {name}"))(e.to_string()))?;
    } else {
        let id = prog
            .attach(iface, direction)
            .map_err(|e| bpf(format!("attaching {name} to {iface}"))(e.to_string()))?;
        pin_link(prog.take_link(id), &pin_path)?;
    }
    Ok(())
}

/// Attach the east-west load balancer to both directions of a task's port
/// (`iface`, the node end of the task's veth).
pub fn attach_task(iface: &str, dir: &Path) -> Result<(), DataplaneError> {
    bpffs::ensure(dir)?;
    attach_tc(
        swarm_ebpf::TC_TASK,
        "swarm_tc_task",
        iface,
        TcAttachType::Ingress,
        dir,
        "tc_task_in",
    )?;
    attach_tc(
        swarm_ebpf::TC_TASK,
        "swarm_tc_task",
        iface,
        TcAttachType::Egress,
        dir,
        "tc_task_out",
    )
}

/// Attach the pass-everything program to `iface` (the host end of a node's
/// veth in a lab) so frames the node's XDP program transmits are accepted.
/// The link is pinned under `dir`, so it stays after this process exits.
pub fn attach_peer_pass(iface: &str, dir: &Path) -> Result<(), DataplaneError> {
    bpffs::ensure(dir)?;
    let pin = dir.join(format!("link_xdp_pass_{iface}"));
    if pin.exists() {
        return Ok(());
    }
    let mut obj = EbpfLoader::new()
        .load(swarm_ebpf::XDP_PASS)
        .map_err(|e| bpf("loading the pass program")(e.to_string()))?;
    let prog: &mut Xdp = obj
        .program_mut("swarm_xdp_pass")
        .ok_or_else(|| DataplaneError::Bpf("program swarm_xdp_pass missing".into()))?
        .try_into()
        .map_err(|e: ProgramError| bpf("pass program")(e.to_string()))?;
    prog.load()
        .map_err(|e| bpf("verifying the pass program")(e.to_string()))?;
    let id = prog
        .attach(iface, XdpFlags::DRV_MODE)
        .map_err(|e| bpf(format!("attaching the pass program to {iface}"))(e.to_string()))?;
    pin_link(prog.take_link(id), &pin)?;
    Ok(())
}

/// Remove the links (detaching the programs) and every pinned map.
pub fn detach(dir: &Path) -> Result<(), DataplaneError> {
    bpffs::ensure(dir)?;
    std::fs::remove_dir_all(dir).map_err(|source| DataplaneError::Io {
        op: format!("removing {}", dir.display()),
        source,
    })
}

/// The pinned maps, opened by path, so any process can program or dump them.
pub struct XdpDataplane {
    dir: PathBuf,
    frontends: HashMap<MapData, abi::Frontend, abi::FrontendInfo>,
    services: HashMap<MapData, u32, abi::Service>,
    maglev: HashMap<MapData, abi::MaglevKey, abi::MaglevChunk>,
    flows: HashMap<MapData, abi::Flow, abi::FlowTarget>,
    stats: PerCpuHashMap<MapData, u32, abi::SvcStats>,
    drops: PerCpuArray<MapData, u64>,
}

fn open(dir: &Path, name: &str, wrap: fn(MapData) -> Map) -> Result<Map, DataplaneError> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).map_err(|e| {
        bpf(format!(
            "opening {} (is the data plane attached?)",
            path.display()
        ))(e.to_string())
    })?;
    Ok(wrap(data))
}

macro_rules! typed {
    ($dir:expr, $name:expr, $variant:ident) => {
        open($dir, $name, Map::$variant)?
            .try_into()
            .map_err(|e: aya::maps::MapError| bpf($name)(e.to_string()))?
    };
}

impl XdpDataplane {
    pub fn open(dir: &Path) -> Result<XdpDataplane, DataplaneError> {
        bpffs::ensure(dir)?;
        Ok(XdpDataplane {
            dir: dir.to_path_buf(),
            frontends: typed!(dir, names::FRONTENDS, HashMap),
            services: typed!(dir, names::SERVICES, HashMap),
            maglev: typed!(dir, names::MAGLEV, HashMap),
            flows: typed!(dir, names::FLOWS, LruHashMap),
            stats: typed!(dir, names::SVC_STATS, PerCpuHashMap),
            drops: typed!(dir, names::DROPS, PerCpuArray),
        })
    }

    fn frontends_of(svc: &LbService) -> Vec<abi::Frontend> {
        let proto = svc.proto.number();
        let mut out = Vec::new();
        if let Some(vip) = svc.vip {
            out.push(abi::Frontend {
                addr: ip_be(*vip.ip()),
                port: vip.port().to_be(),
                proto,
                pad: 0,
            });
        }
        if let Some(port) = svc.published_port {
            out.push(abi::Frontend {
                addr: 0,
                port: port.to_be(),
                proto,
                pad: 0,
            });
        }
        out
    }

    /// Write one service: Maglev chunks under a new generation first, then the
    /// service entry that switches to them, then drop the old chunks.
    /// Returns whether a backend the service had before is gone.
    fn write_service(&mut self, svc: &LbService) -> Result<bool, DataplaneError> {
        let mut backends: Vec<&Backend> = svc.backends.iter().collect();
        backends.sort_by_key(|b| (u32::from(*b.addr.ip()), b.addr.port()));
        let active: Vec<usize> = (0..backends.len())
            .filter(|&i| backends[i].state == BackendState::Active)
            .collect();
        let keys: Vec<String> = active
            .iter()
            .map(|&i| backends[i].addr.to_string())
            .collect();
        let size = maglev::table_size_for(svc.declared_backends.unwrap_or(backends.len()));
        let table = maglev::build(&keys, size);

        let old = self.services.get(&svc.id, 0).ok();
        let mut value = abi::Service {
            table_size: if table.is_empty() { 0 } else { size },
            backend_count: backends.len() as u16,
            generation: old.map_or(0, |o| o.generation ^ 1),
            ..Default::default()
        };
        for (slot, b) in value.backends.iter_mut().zip(&backends) {
            *slot = abi::Backend {
                addr: ip_be(*b.addr.ip()),
                node: ip_be(b.node),
                port: b.addr.port().to_be(),
                state: match b.state {
                    BackendState::Active => abi::BACKEND_ACTIVE,
                    BackendState::Draining => abi::BACKEND_DRAINING,
                },
                pad: 0,
            };
        }
        let new = &value.backends[..backends.len()];
        let dropped = old.is_some_and(|o| {
            o.backends[..usize::from(o.backend_count).min(abi::MAX_BACKENDS)]
                .iter()
                .any(|ob| {
                    !new.iter()
                        .any(|nb| nb.addr == ob.addr && nb.port == ob.port)
                })
        });
        if let Some(o) = old {
            let same = o.table_size == value.table_size
                && o.backend_count == value.backend_count
                && o.backends[..backends.len()] == *new;
            if same {
                return Ok(false);
            }
        }
        for (c, chunk) in table.chunks(abi::MAGLEV_CHUNK).enumerate() {
            let mut entries = [0u16; abi::MAGLEV_CHUNK];
            for (e, &i) in entries.iter_mut().zip(chunk) {
                *e = active[i as usize] as u16;
            }
            let key = abi::MaglevKey {
                svc_id: svc.id,
                chunk: c as u16,
                generation: value.generation,
            };
            self.maglev
                .insert(key, abi::MaglevChunk { entries }, 0)
                .map_err(|e| {
                    bpf(format!("writing Maglev table of service {}", svc.id))(e.to_string())
                })?;
        }
        self.services
            .insert(svc.id, value, 0)
            .map_err(|e| bpf(format!("writing service {}", svc.id))(e.to_string()))?;
        if let Some(o) = old {
            self.remove_chunks(svc.id, &o);
        }
        Ok(dropped)
    }

    fn remove_chunks(&mut self, svc_id: u32, svc: &abi::Service) {
        let chunks = (svc.table_size as usize).div_ceil(abi::MAGLEV_CHUNK);
        for c in 0..chunks {
            let key = abi::MaglevKey {
                svc_id,
                chunk: c as u16,
                generation: svc.generation,
            };
            let _ = self.maglev.remove(&key);
        }
    }

    /// Flows pinned to a backend that is no longer in its service would be
    /// dropped until evicted; forget them so their next packet is balanced
    /// again. (Draining backends stay listed, so their flows are kept.)
    fn forget_flows_to_removed_backends(&mut self, services: &[LbService]) {
        let live: std::collections::HashMap<u32, HashSet<(u32, u16)>> = services
            .iter()
            .map(|s| {
                let set = s
                    .backends
                    .iter()
                    .map(|b| (ip_be(*b.addr.ip()), b.addr.port().to_be()))
                    .collect();
                (s.id, set)
            })
            .collect();
        let stale: Vec<abi::Flow> = self
            .flows
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, t)| {
                !live
                    .get(&t.svc_id)
                    .is_some_and(|b| b.contains(&(t.backend.addr, t.backend.port)))
            })
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let _ = self.flows.remove(&k);
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Dataplane for XdpDataplane {
    fn sync(&mut self, services: &[LbService]) -> Result<(), DataplaneError> {
        let mut wanted: BTreeMap<(u32, u16, u8), u32> = BTreeMap::new();
        for svc in services {
            svc.validate(abi::MAX_BACKENDS)?;
            for fe in Self::frontends_of(svc) {
                if let Some(other) = wanted.insert((fe.addr, fe.port, fe.proto), svc.id) {
                    return Err(DataplaneError::InvalidService {
                        id: svc.id,
                        reason: format!(
                            "frontend {} is also used by service {other}",
                            frontend_str(&fe)
                        ),
                    });
                }
            }
        }
        let mut dropped = false;
        for svc in services {
            dropped |= self.write_service(svc)?;
        }
        resolve_neighbours(services);
        for (&(addr, port, proto), &svc_id) in &wanted {
            let key = abi::Frontend {
                addr,
                port,
                proto,
                pad: 0,
            };
            if self.frontends.get(&key, 0).ok().map(|v| v.svc_id) != Some(svc_id) {
                self.frontends
                    .insert(key, abi::FrontendInfo { svc_id }, 0)
                    .map_err(|e| {
                        bpf(format!("writing frontend {}", frontend_str(&key)))(e.to_string())
                    })?;
            }
        }
        let stale: Vec<abi::Frontend> = self
            .frontends
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains_key(&(k.addr, k.port, k.proto)))
            .collect();
        for k in stale {
            let _ = self.frontends.remove(&k);
        }
        let keep: HashSet<u32> = services.iter().map(|s| s.id).collect();
        let gone: Vec<(u32, abi::Service)> = self
            .services
            .iter()
            .filter_map(Result::ok)
            .filter(|(id, _)| !keep.contains(id))
            .collect();
        dropped |= !gone.is_empty();
        for (id, svc) in gone {
            let _ = self.services.remove(&id);
            let _ = self.stats.remove(&id);
            self.remove_chunks(id, &svc);
        }
        // Scanning the flow table costs a syscall per flow: only when needed.
        if dropped {
            self.forget_flows_to_removed_backends(services);
        }
        Ok(())
    }

    fn dump(&mut self) -> Result<Dump, DataplaneError> {
        let mut frontends: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for item in self.frontends.iter().filter_map(Result::ok) {
            frontends
                .entry(item.1.svc_id)
                .or_default()
                .push(frontend_str(&item.0));
        }
        let mut services = Vec::new();
        for (id, svc) in self.services.iter().filter_map(Result::ok) {
            let count = svc.backend_count as usize;
            let mut owned = vec![0u64; count];
            let chunks = (svc.table_size as usize).div_ceil(abi::MAGLEV_CHUNK);
            for c in 0..chunks {
                let key = abi::MaglevKey {
                    svc_id: id,
                    chunk: c as u16,
                    generation: svc.generation,
                };
                if let Ok(chunk) = self.maglev.get(&key, 0) {
                    let n =
                        (svc.table_size as usize - c * abi::MAGLEV_CHUNK).min(abi::MAGLEV_CHUNK);
                    for &e in &chunk.entries[..n] {
                        if let Some(o) = owned.get_mut(e as usize) {
                            *o += 1;
                        }
                    }
                }
            }
            let stats = self.stats.get(&id, 0).map(|per_cpu| {
                per_cpu
                    .iter()
                    .fold(abi::SvcStats::default(), |a, s| abi::SvcStats {
                        packets: a.packets + s.packets,
                        bytes: a.bytes + s.bytes,
                        new_flows: a.new_flows + s.new_flows,
                    })
            });
            let stats = stats.unwrap_or_default();
            services.push(ServiceDump {
                id,
                frontends: {
                    // Map order is hash order; dumps list frontends sorted.
                    let mut f = frontends.remove(&id).unwrap_or_default();
                    f.sort();
                    f
                },
                table_size: svc.table_size,
                backends: svc.backends[..count]
                    .iter()
                    .zip(&owned)
                    .map(|(b, &o)| BackendDump {
                        addr: backend_str(b),
                        node: ip_from_be(b.node).to_string(),
                        state: if b.state == abi::BACKEND_DRAINING {
                            "draining"
                        } else {
                            "active"
                        }
                        .into(),
                        share: if svc.table_size == 0 {
                            0.0
                        } else {
                            o as f64 / f64::from(svc.table_size)
                        },
                    })
                    .collect(),
                packets: stats.packets,
                bytes: stats.bytes,
                new_flows: stats.new_flows,
            });
        }
        services.sort_by_key(|s| s.id);
        let now = monotonic_ns();
        let flows = self
            .flows
            .iter()
            .filter_map(Result::ok)
            .take(10_000)
            .map(|(k, t)| FlowDump {
                client: SocketAddrV4::new(ip_from_be(k.saddr), u16::from_be(k.sport)).to_string(),
                frontend: SocketAddrV4::new(ip_from_be(k.daddr), u16::from_be(k.dport)).to_string(),
                backend: backend_str(&t.backend),
                proto: proto_name(k.proto).into(),
                age_ms: now.saturating_sub(t.created_ns) / 1_000_000,
            })
            .collect();
        let drops = abi::DROP_REASONS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let n = self
                    .drops
                    .get(&(i as u32), 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0);
                (name.to_string(), n)
            })
            .collect();
        let attach_points = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_prefix("link_")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Dump {
            mode: "xdp".into(),
            attach_points,
            services,
            flows,
            drops,
            rules: Vec::new(),
        })
    }
}

/// Make the kernel resolve the link-layer address of every node that runs
/// a backend: the XDP program forwards tunnelled packets itself and can only
/// use neighbours the kernel already knows. One empty datagram to the discard
/// port of each node is enough to start resolution. (Sent to our own address
/// it is harmless.)
fn resolve_neighbours(services: &[LbService]) {
    let nodes: HashSet<Ipv4Addr> = services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.node))
        .collect();
    if let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0") {
        for node in nodes {
            let _ = sock.send_to(&[], (node, 9));
        }
    }
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

/// The clock bpf_ktime_get_ns() reads.
fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}
