//! The pinned maps and what is written to them: a service's entry and its
//! Maglev table, frontends, endpoints. What to write for a change is
//! worked out in `delta.rs`.

use super::delta::{Delta, Programmed};
use super::{bpf, ip_be};
use crate::dataplane::{
    Backend, BackendState, Dataplane, DataplaneError, Dump, LbService, LocalEndpoint,
};
use crate::{bpffs, maglev};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use swarm_ebpf::abi::{self, maps as names};

/// A service whose map entry must be (re)written.
pub(super) struct Planned {
    pub id: u32,
    pub value: abi::Service,
    old: Option<abi::Service>,
    /// A backend the service had before is gone.
    pub dropped: bool,
    /// Maglev table index → index into `value.backends` (active ones only).
    active: Vec<u16>,
    /// Maglev keys of the active backends, in `active`'s order.
    keys: Vec<String>,
}

/// How long a node's neighbour entry is trusted to stay known after it
/// was last prompted (the kernel's default reachable time is 30 s).
const REPROBE: Duration = Duration::from_secs(30);

/// Maglev tables for the planned services. Filling a table is the bulk of
/// programming many services, and tables are independent, so they are
/// built on every core.
pub(super) fn build_tables(planned: &[Planned]) -> Vec<Vec<u32>> {
    let build = |p: &Planned| {
        if p.value.table_size == 0 {
            Vec::new()
        } else {
            maglev::build(&p.keys, p.value.table_size)
        }
    };
    // (Asked only for many tables: the answer reads cgroup files, which
    // takes longer than one table.)
    if planned.len() < 64 {
        return planned.iter().map(build).collect();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores == 1 {
        return planned.iter().map(build).collect();
    }
    let per_thread = planned.len().div_ceil(cores);
    std::thread::scope(|scope| {
        let workers: Vec<_> = planned
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(build).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("Maglev table builder panicked"))
            .collect()
    })
}

/// A frontend as a map key: (address, port, protocol), network order.
pub(super) type FrontendKey = (u32, u16, u8);

/// The pinned maps, opened by path, so any process can program or dump them.
pub struct XdpDataplane {
    pub(super) dir: PathBuf,
    pub(super) frontends: HashMap<MapData, abi::Frontend, abi::FrontendInfo>,
    pub(super) services: HashMap<MapData, u32, abi::Service>,
    pub(super) maglev: HashMap<MapData, abi::MaglevKey, abi::MaglevChunk>,
    pub(super) flows: HashMap<MapData, abi::Flow, abi::FlowTarget>,
    /// The flow table again, for batched reads (aya's maps do not lend
    /// their descriptor).
    pub(super) flows_raw: MapData,
    rnat_raw: MapData,
    maglev_raw: MapData,
    /// CPUs the per-CPU counters have a value for.
    pub(super) cpus: usize,
    /// The socket that prompts neighbour resolution (made when first used,
    /// in the namespace of the thread that uses it).
    probe: Option<std::net::UdpSocket>,
    /// When each node was last prompted: a change re-prompts only nodes
    /// not prompted for `REPROBE`, since a datagram sent through the lab's
    /// stack costs more than the rest of a change.
    probed: std::collections::HashMap<Ipv4Addr, Instant>,
    pub(super) stats: PerCpuArray<MapData, abi::SvcStats>,
    pub(super) drops: PerCpuArray<MapData, u64>,
    pub(super) nodes: HashMap<MapData, u32, u8>,
    pub(super) endpoints: HashMap<MapData, u32, abi::Endpoint>,
    /// Nodes set by `set_nodes`, besides those that run backends.
    pub(super) peers: BTreeSet<Ipv4Addr>,
    /// Read from the maps at the first sync, then kept in step with them;
    /// dropped after a failed sync, so the next one reads them again.
    programmed: Option<Programmed>,
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

pub(super) fn key_of(fe: &abi::Frontend) -> FrontendKey {
    (fe.addr, fe.port, fe.proto)
}

pub(super) fn frontend_of((addr, port, proto): FrontendKey) -> abi::Frontend {
    abi::Frontend {
        addr,
        port,
        proto,
        pad: 0,
    }
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
            flows_raw: MapData::from_pin(dir.join(names::FLOWS))
                .map_err(|e| bpf("opening the flow table")(e.to_string()))?,
            rnat_raw: MapData::from_pin(dir.join(names::RNAT))
                .map_err(|e| bpf("opening the reply table")(e.to_string()))?,
            maglev_raw: MapData::from_pin(dir.join(names::MAGLEV))
                .map_err(|e| bpf("opening the Maglev tables")(e.to_string()))?,
            cpus: aya::util::nr_cpus().map_err(|(_, e)| bpf("counting CPUs")(e.to_string()))?,
            probe: None,
            probed: Default::default(),
            stats: typed!(dir, names::SVC_STATS, PerCpuArray),
            drops: typed!(dir, names::DROPS, PerCpuArray),
            nodes: typed!(dir, names::NODES, HashMap),
            endpoints: typed!(dir, names::ENDPOINTS, HashMap),
            peers: BTreeSet::new(),
            programmed: None,
        })
    }

    /// What the maps hold, read once when this loader first changes them.
    fn load(&self) -> Programmed {
        let mut p = Programmed::new();
        for (k, v) in self.frontends.iter().filter_map(Result::ok) {
            p.own(key_of(&k), v);
        }
        p.services = self
            .services
            .keys()
            .filter_map(Result::ok)
            .map(|id| (id, None))
            .collect();
        p.nodes = self.nodes.keys().filter_map(Result::ok).collect();
        p
    }

    pub(super) fn frontends_of(svc: &LbService) -> Vec<abi::Frontend> {
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

    /// Work out a service's map entry, or `None` when the maps already hold
    /// exactly this service (a resync then costs no table build or write).
    /// `pinned`: the maps may hold an entry for it.
    pub(super) fn plan(&self, svc: &LbService, pinned: bool) -> Option<Planned> {
        let mut backends: Vec<&Backend> = svc.backends.iter().collect();
        backends.sort_by_key(|b| (u32::from(*b.addr.ip()), b.addr.port()));
        let active: Vec<u16> = (0..backends.len())
            .filter(|&i| backends[i].state == BackendState::Active)
            .map(|i| i as u16)
            .collect();
        let size = maglev::table_size_for(svc.declared_backends.unwrap_or(backends.len()));
        let old = if pinned {
            self.services.get(&svc.id, 0).ok()
        } else {
            None
        };
        let mut value = abi::Service {
            table_size: if active.is_empty() { 0 } else { size },
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
        if let Some(o) = old {
            let same = o.table_size == value.table_size
                && o.backend_count == value.backend_count
                && o.backends[..backends.len()] == *new;
            if same {
                return None;
            }
        }
        let dropped = old.is_some_and(|o| {
            o.backends[..usize::from(o.backend_count).min(abi::MAX_BACKENDS)]
                .iter()
                .any(|ob| {
                    !new.iter()
                        .any(|nb| nb.addr == ob.addr && nb.port == ob.port)
                })
        });
        let keys = active
            .iter()
            .map(|&i| backends[usize::from(i)].addr.to_string())
            .collect();
        Some(Planned {
            id: svc.id,
            value,
            old,
            dropped,
            active,
            keys,
        })
    }

    /// Write one planned service: Maglev chunks under a new generation
    /// first, then the service entry that switches to them, then drop the
    /// old chunks.
    pub(super) fn write(&mut self, p: &Planned, table: &[u32]) -> Result<(), DataplaneError> {
        let write_err = |what: &str| bpf(format!("writing {what} of service {}", p.id));
        let (keys, chunks): (Vec<abi::MaglevKey>, Vec<abi::MaglevChunk>) = table
            .chunks(abi::MAGLEV_CHUNK)
            .enumerate()
            .map(|(c, part)| {
                let mut entries = [0u16; abi::MAGLEV_CHUNK];
                for (e, &i) in entries.iter_mut().zip(part) {
                    *e = p.active[i as usize];
                }
                let key = abi::MaglevKey {
                    svc_id: p.id,
                    chunk: c as u16,
                    generation: p.value.generation,
                };
                (key, abi::MaglevChunk { entries })
            })
            .unzip();
        super::batch::update(self.maglev_raw.fd().as_fd(), &keys, &chunks)
            .map_err(|e| write_err("the Maglev table")(e.to_string()))?;
        self.services
            .insert(p.id, p.value, 0)
            .map_err(|e| write_err("the entry")(e.to_string()))?;
        if let Some(o) = &p.old {
            self.remove_chunks(p.id, o);
        }
        Ok(())
    }

    pub(super) fn remove_chunks(&mut self, svc_id: u32, svc: &abi::Service) {
        let chunks = (svc.table_size as usize).div_ceil(abi::MAGLEV_CHUNK);
        let keys: Vec<abi::MaglevKey> = (0..chunks)
            .map(|c| abi::MaglevKey {
                svc_id,
                chunk: c as u16,
                generation: svc.generation,
            })
            .collect();
        let _ = super::batch::delete(self.maglev_raw.fd().as_fd(), &keys);
    }

    /// Make the kernel resolve the link-layer address of every node that
    /// runs a backend of `services`: the XDP program forwards tunnelled
    /// packets itself and can only use neighbours the kernel already knows.
    /// One empty datagram to the discard port of each node is enough to
    /// start resolution. (Sent to our own address it is harmless.) Nodes
    /// prompted within `REPROBE` are skipped.
    pub(super) fn resolve_neighbours<'a>(&mut self, services: impl Iterator<Item = &'a LbService>) {
        let now = Instant::now();
        let nodes: HashSet<Ipv4Addr> = services
            .flat_map(|s| s.backends.iter().map(|b| b.node))
            .filter(|n| {
                self.probed
                    .get(n)
                    .is_none_or(|t| now.duration_since(*t) >= REPROBE)
            })
            .collect();
        if nodes.is_empty() {
            return;
        }
        if self.probe.is_none() {
            self.probe = std::net::UdpSocket::bind("0.0.0.0:0").ok();
        }
        if let Some(sock) = &self.probe {
            for node in nodes {
                let _ = sock.send_to(&[], (node, 9));
                self.probed.insert(node, now);
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Forget every tracked flow and reply translation (as `conntrack -F`
    /// does for the kernel's): established connections are balanced again
    /// by their next packet. Returns how many flows there were.
    pub fn forget_flows(&mut self) -> Result<usize, DataplaneError> {
        let mut flows: Vec<abi::Flow> = Vec::new();
        let mut replies: Vec<abi::Reply> = Vec::new();
        let read = |what: &'static str| move |e: std::io::Error| bpf(what)(e.to_string());
        super::batch::for_each(
            self.flows_raw.fd().as_fd(),
            4096,
            |k, _: &[abi::FlowTarget]| flows.extend_from_slice(k),
        )
        .map_err(read("reading the flow table"))?;
        super::batch::for_each(
            self.rnat_raw.fd().as_fd(),
            4096,
            |k, _: &[abi::ReplyNat]| replies.extend_from_slice(k),
        )
        .map_err(read("reading the reply table"))?;
        super::batch::delete(self.flows_raw.fd().as_fd(), &flows)
            .map_err(read("emptying the flow table"))?;
        super::batch::delete(self.rnat_raw.fd().as_fd(), &replies)
            .map_err(read("emptying the reply table"))?;
        Ok(flows.len())
    }
}

impl Dataplane for XdpDataplane {
    fn sync(&mut self, services: &[LbService]) -> Result<(), DataplaneError> {
        let mut prog = self.programmed.take().unwrap_or_else(|| self.load());
        let mut ids = HashSet::new();
        for svc in services {
            if !ids.insert(svc.id) {
                return Err(DataplaneError::InvalidService {
                    id: svc.id,
                    reason: "listed twice".into(),
                });
            }
        }
        let delta = Delta {
            upserts: services
                .iter()
                .filter(|s| !matches!(prog.services.get(&s.id), Some(Some(old)) if old == *s))
                .collect(),
            removals: prog
                .services
                .keys()
                .filter(|id| !ids.contains(id))
                .copied()
                .collect(),
        };
        self.apply_delta(&mut prog, &delta)?;
        self.write_nodes(&mut prog, services.iter(), true)?;
        self.programmed = Some(prog);
        Ok(())
    }

    fn update(&mut self, upserts: &[LbService], removals: &[u32]) -> Result<(), DataplaneError> {
        let mut prog = self.programmed.take().unwrap_or_else(|| self.load());
        let delta = Delta {
            upserts: upserts.iter().collect(),
            removals: removals
                .iter()
                .filter(|id| prog.services.contains_key(id))
                .copied()
                .collect(),
        };
        self.apply_delta(&mut prog, &delta)?;
        self.write_nodes(&mut prog, upserts.iter(), false)?;
        self.programmed = Some(prog);
        Ok(())
    }

    fn dump(&mut self) -> Result<Dump, DataplaneError> {
        self.read_back()
    }

    fn set_nodes(&mut self, nodes: &[Ipv4Addr]) -> Result<(), DataplaneError> {
        self.peers = nodes.iter().copied().collect();
        Ok(())
    }

    fn add_endpoint(&mut self, ep: &LocalEndpoint) -> Result<(), DataplaneError> {
        let value = abi::Endpoint {
            ifindex: ep.ifindex,
            mac: ep.mac,
            port_mac: ep.port_mac,
            mtu: ep.mtu,
            pad: 0,
        };
        self.endpoints
            .insert(ip_be(ep.addr), value, 0)
            .map_err(|e| bpf(format!("writing the endpoint of {}", ep.addr))(e.to_string()))
    }

    fn remove_endpoint(&mut self, addr: Ipv4Addr) -> Result<(), DataplaneError> {
        let _ = self.endpoints.remove(&ip_be(addr));
        Ok(())
    }
}
