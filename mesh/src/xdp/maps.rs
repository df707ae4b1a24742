//! Programming the pinned maps: services, their Maglev tables and
//! frontends, and forgetting flows whose backend went away.

use super::{bpf, frontend_str, ip_be};
use crate::dataplane::{
    Backend, BackendState, Dataplane, DataplaneError, Dump, LbService, LocalEndpoint,
};
use crate::{bpffs, maglev};
use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuValues};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use swarm_ebpf::abi::{self, maps as names};

/// A service whose map entry must be (re)written.
struct Planned {
    id: u32,
    value: abi::Service,
    old: Option<abi::Service>,
    /// A backend the service had before is gone.
    dropped: bool,
    /// Maglev table index → index into `value.backends` (active ones only).
    active: Vec<u16>,
    /// Maglev keys of the active backends, in `active`'s order.
    keys: Vec<String>,
}

/// Maglev tables for the planned services. Filling a table is the bulk of
/// programming many services, and tables are independent, so they are
/// built on every core.
fn build_tables(planned: &[Planned]) -> Vec<Vec<u32>> {
    let build = |p: &Planned| {
        if p.value.table_size == 0 {
            Vec::new()
        } else {
            maglev::build(&p.keys, p.value.table_size)
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores == 1 || planned.len() < 64 {
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

/// What this loader has programmed, kept so that a sync writes only what
/// changed: with 10,000 services, reading every entry back from the kernel
/// would cost more than the change itself.
#[derive(Default)]
struct Programmed {
    /// Services in the maps, as this loader wrote them; `None` for one it
    /// found pinned by an earlier run (read from the map when it changes).
    services: std::collections::HashMap<u32, Option<LbService>>,
    frontends: BTreeMap<FrontendKey, abi::FrontendInfo>,
    /// Each service's slot in the per-CPU counters.
    slots: std::collections::HashMap<u32, u32>,
    /// Where the next slot search starts. Slots are handed out round the
    /// ring, so a removed service's slot (which its flows still name) comes
    /// back only after every other slot has been used.
    next_slot: u32,
    nodes: HashSet<u32>,
}

type FrontendKey = (u32, u16, u8);

/// The pinned maps, opened by path, so any process can program or dump them.
pub struct XdpDataplane {
    pub(super) dir: PathBuf,
    pub(super) frontends: HashMap<MapData, abi::Frontend, abi::FrontendInfo>,
    pub(super) services: HashMap<MapData, u32, abi::Service>,
    pub(super) maglev: HashMap<MapData, abi::MaglevKey, abi::MaglevChunk>,
    pub(super) flows: HashMap<MapData, abi::Flow, abi::FlowTarget>,
    pub(super) stats: PerCpuArray<MapData, abi::SvcStats>,
    pub(super) drops: PerCpuArray<MapData, u64>,
    pub(super) nodes: HashMap<MapData, u32, u8>,
    pub(super) endpoints: HashMap<MapData, u32, abi::Endpoint>,
    /// Nodes set by `set_nodes`, besides those that run backends.
    peers: BTreeSet<Ipv4Addr>,
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

fn key_of(fe: &abi::Frontend) -> FrontendKey {
    (fe.addr, fe.port, fe.proto)
}

fn frontend_of((addr, port, proto): FrontendKey) -> abi::Frontend {
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
            stats: typed!(dir, names::SVC_STATS, PerCpuArray),
            drops: typed!(dir, names::DROPS, PerCpuArray),
            nodes: typed!(dir, names::NODES, HashMap),
            endpoints: typed!(dir, names::ENDPOINTS, HashMap),
            peers: BTreeSet::new(),
            programmed: None,
        })
    }

    /// What the maps hold, read once when this loader first syncs.
    fn load(&self) -> Programmed {
        let mut p = Programmed::default();
        for (k, v) in self.frontends.iter().filter_map(Result::ok) {
            p.frontends.insert(key_of(&k), v);
            p.slots.insert(v.svc_id, v.slot);
            p.next_slot = p.next_slot.max(v.slot + 1);
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

    /// Work out a service's map entry, or `None` when the maps already hold
    /// exactly this service (a resync then costs no table build or write).
    /// `pinned`: the maps may hold an entry for it.
    fn plan(&self, svc: &LbService, pinned: bool) -> Option<Planned> {
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
    fn write(&mut self, p: &Planned, table: &[u32]) -> Result<(), DataplaneError> {
        let write_err = |what: &str| bpf(format!("writing {what} of service {}", p.id));
        for (c, chunk) in table.chunks(abi::MAGLEV_CHUNK).enumerate() {
            let mut entries = [0u16; abi::MAGLEV_CHUNK];
            for (e, &i) in entries.iter_mut().zip(chunk) {
                *e = p.active[i as usize];
            }
            let key = abi::MaglevKey {
                svc_id: p.id,
                chunk: c as u16,
                generation: p.value.generation,
            };
            self.maglev
                .insert(key, abi::MaglevChunk { entries }, 0)
                .map_err(|e| write_err("the Maglev table")(e.to_string()))?;
        }
        self.services
            .insert(p.id, p.value, 0)
            .map_err(|e| write_err("the entry")(e.to_string()))?;
        if let Some(o) = &p.old {
            self.remove_chunks(p.id, o);
        }
        Ok(())
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

    /// Give every service without a slot one, zeroing its counters (the
    /// slot may have counted for a service removed long ago). Returns
    /// whether the search went round the ring, which makes slots of removed
    /// services current again.
    fn assign_slots(
        &mut self,
        prog: &mut Programmed,
        services: &[LbService],
    ) -> Result<bool, DataplaneError> {
        let max = abi::MAX_SERVICES;
        let mut used = vec![false; max as usize];
        for &s in prog.slots.values() {
            if let Some(u) = used.get_mut(s as usize) {
                *u = true;
            }
        }
        let mut wrapped = false;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| bpf("counting CPUs")(e.to_string()))?;
        let zero = || {
            PerCpuValues::try_from(vec![abi::SvcStats::default(); cpus])
                .map_err(|e| bpf("per-CPU counters")(e.to_string()))
        };
        for svc in services {
            if prog.slots.contains_key(&svc.id) {
                continue;
            }
            let mut tries = 0;
            while used[(prog.next_slot % max) as usize] {
                prog.next_slot += 1;
                tries += 1;
                if tries >= max {
                    return Err(DataplaneError::InvalidService {
                        id: svc.id,
                        reason: format!("more than {max} services on one node"),
                    });
                }
            }
            if prog.next_slot >= max {
                prog.next_slot %= max;
                wrapped = true;
            }
            let slot = prog.next_slot;
            used[slot as usize] = true;
            prog.next_slot += 1;
            self.stats.set(slot, zero()?, 0).map_err(|e| {
                bpf(format!("zeroing the counters of service {}", svc.id))(e.to_string())
            })?;
            prog.slots.insert(svc.id, slot);
        }
        Ok(wrapped)
    }

    /// The body of `sync`, against what `prog` says the maps hold; `prog`
    /// is left describing the maps only when it returns Ok.
    fn apply(
        &mut self,
        prog: &mut Programmed,
        services: &[LbService],
    ) -> Result<(), DataplaneError> {
        let changed: Vec<&LbService> = services
            .iter()
            .filter(|s| !matches!(prog.services.get(&s.id), Some(Some(old)) if old == *s))
            .collect();
        for svc in &changed {
            svc.validate(abi::MAX_BACKENDS)?;
        }
        let mut wanted: BTreeMap<FrontendKey, u32> = BTreeMap::new();
        for svc in services {
            for fe in Self::frontends_of(svc) {
                if let Some(other) = wanted.insert(key_of(&fe), svc.id) {
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
        let wrapped = self.assign_slots(prog, services)?;
        let planned: Vec<Planned> = changed
            .iter()
            .filter_map(|s| self.plan(s, prog.services.contains_key(&s.id)))
            .collect();
        let tables = build_tables(&planned);
        let mut dropped = wrapped;
        for (p, table) in planned.iter().zip(&tables) {
            self.write(p, table)?;
            dropped |= p.dropped;
        }
        for svc in &changed {
            prog.services.insert(svc.id, Some((*svc).clone()));
        }
        resolve_neighbours(changed.iter().copied());
        self.write_nodes(prog, services)?;
        for (&key, &svc_id) in &wanted {
            let info = abi::FrontendInfo {
                svc_id,
                slot: prog.slots[&svc_id],
            };
            if prog.frontends.get(&key) != Some(&info) {
                self.frontends
                    .insert(frontend_of(key), info, 0)
                    .map_err(|e| {
                        bpf(format!(
                            "writing frontend {}",
                            frontend_str(&frontend_of(key))
                        ))(e.to_string())
                    })?;
                prog.frontends.insert(key, info);
            }
        }
        let stale: Vec<FrontendKey> = prog
            .frontends
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for k in stale {
            let _ = self.frontends.remove(&frontend_of(k));
            prog.frontends.remove(&k);
        }
        // A removed service's flows are left to age out: its slot is not
        // handed out again soon, so they match nothing.
        let keep: HashSet<u32> = services.iter().map(|s| s.id).collect();
        let gone: Vec<u32> = prog
            .services
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Ok(svc) = self.services.get(&id, 0) {
                self.remove_chunks(id, &svc);
            }
            let _ = self.services.remove(&id);
            prog.services.remove(&id);
            prog.slots.remove(&id);
        }
        // Scanning the flow table costs a syscall per flow: only when needed.
        if dropped {
            self.forget_flows_to_removed_backends(services);
        }
        Ok(())
    }
}

impl Dataplane for XdpDataplane {
    fn sync(&mut self, services: &[LbService]) -> Result<(), DataplaneError> {
        let mut prog = match self.programmed.take() {
            Some(p) => p,
            None => self.load(),
        };
        self.apply(&mut prog, services)?;
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

impl XdpDataplane {
    /// Make `swarm_v4_nodes` hold the nodes that may tunnel to this one:
    /// those `set_nodes` named and those running backends.
    fn write_nodes(
        &mut self,
        prog: &mut Programmed,
        services: &[LbService],
    ) -> Result<(), DataplaneError> {
        let want: HashSet<u32> = self
            .peers
            .iter()
            .copied()
            .chain(
                services
                    .iter()
                    .flat_map(|s| s.backends.iter().map(|b| b.node)),
            )
            .map(ip_be)
            .collect();
        for k in prog.nodes.difference(&want) {
            let _ = self.nodes.remove(k);
        }
        for k in want.difference(&prog.nodes) {
            self.nodes
                .insert(k, 1, 0)
                .map_err(|e| bpf("writing the node table")(e.to_string()))?;
        }
        prog.nodes = want;
        Ok(())
    }
}

/// Make the kernel resolve the link-layer address of every node that runs
/// a backend: the XDP program forwards tunnelled packets itself and can only
/// use neighbours the kernel already knows. One empty datagram to the discard
/// port of each node is enough to start resolution. (Sent to our own address
/// it is harmless.)
fn resolve_neighbours<'a>(services: impl Iterator<Item = &'a LbService>) {
    let nodes: HashSet<Ipv4Addr> = services
        .flat_map(|s| s.backends.iter().map(|b| b.node))
        .collect();
    if let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0") {
        for node in nodes {
            let _ = sock.send_to(&[], (node, 9));
        }
    }
}
