//! Applying a change to the maps: which services to write and remove,
//! their slots, frontends and node entries, and the flows a change makes
//! stale. A sync works out the change from the whole list; an update is
//! handed it. Either way the maps see only what changed.

use super::maps::{build_tables, FrontendKey, XdpDataplane};
use super::{bpf, frontend_str, ip_be};
use crate::dataplane::{DataplaneError, LbService};
use aya::maps::PerCpuValues;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::AsFd;
use swarm_ebpf::abi;

/// What this loader has programmed, kept so that a change writes only what
/// changed: with 10,000 services, reading every entry back from the kernel
/// would cost more than the change itself.
pub(super) struct Programmed {
    /// Services in the maps, as this loader wrote them; `None` for one it
    /// found pinned by an earlier run (read from the map when it changes).
    pub services: HashMap<u32, Option<LbService>>,
    pub frontends: BTreeMap<FrontendKey, abi::FrontendInfo>,
    /// Each service's frontends, the index of `frontends` by owner.
    pub owned: HashMap<u32, Vec<FrontendKey>>,
    /// Each service's slot in the per-CPU counters, and which are taken.
    pub slots: HashMap<u32, u32>,
    pub taken: Vec<bool>,
    /// Where the next slot search starts. Slots are handed out round the
    /// ring, so a removed service's slot (which its flows still name) comes
    /// back only after every other slot has been used.
    pub next_slot: u32,
    pub nodes: HashSet<u32>,
}

impl Programmed {
    pub fn new() -> Programmed {
        Programmed {
            services: HashMap::new(),
            frontends: BTreeMap::new(),
            owned: HashMap::new(),
            slots: HashMap::new(),
            taken: vec![false; abi::MAX_SERVICES as usize],
            next_slot: 0,
            nodes: HashSet::new(),
        }
    }

    /// Record that frontend `key` leads to `info` (written, or found).
    pub fn own(&mut self, key: FrontendKey, info: abi::FrontendInfo) {
        self.frontends.insert(key, info);
        let v = self.owned.entry(info.svc_id).or_default();
        if !v.contains(&key) {
            v.push(key);
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.slots.entry(info.svc_id) {
            e.insert(info.slot);
            if let Some(t) = self.taken.get_mut(info.slot as usize) {
                *t = true;
            }
        }
        self.next_slot = self.next_slot.max(info.slot + 1);
    }
}

/// A change: services to write (added or different) and ids to remove.
pub(super) struct Delta<'a> {
    pub upserts: Vec<&'a LbService>,
    pub removals: Vec<u32>,
}

impl XdpDataplane {
    /// Give every upserted service without a slot one, zeroing its
    /// counters (the slot may have counted for a service removed long ago).
    /// Returns whether the search went round the ring, which makes slots of
    /// removed services current again.
    fn assign_slots(
        &mut self,
        prog: &mut Programmed,
        upserts: &[&LbService],
    ) -> Result<bool, DataplaneError> {
        let max = abi::MAX_SERVICES;
        let mut wrapped = false;
        for svc in upserts {
            if prog.slots.contains_key(&svc.id) {
                continue;
            }
            let mut tries = 0;
            while prog.taken[(prog.next_slot % max) as usize] {
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
            prog.next_slot += 1;
            let zero = PerCpuValues::try_from(vec![abi::SvcStats::default(); self.cpus])
                .map_err(|e| bpf("per-CPU counters")(e.to_string()))?;
            self.stats.set(slot, zero, 0).map_err(|e| {
                bpf(format!("zeroing the counters of service {}", svc.id))(e.to_string())
            })?;
            prog.taken[slot as usize] = true;
            prog.slots.insert(svc.id, slot);
        }
        Ok(wrapped)
    }

    /// Refuse a change that would give a frontend two services.
    fn check_frontends(prog: &Programmed, delta: &Delta) -> Result<(), DataplaneError> {
        let moving: HashSet<u32> = delta
            .upserts
            .iter()
            .map(|s| s.id)
            .chain(delta.removals.iter().copied())
            .collect();
        let mut claimed: HashMap<FrontendKey, u32> = HashMap::new();
        for svc in &delta.upserts {
            for fe in Self::frontends_of(svc) {
                let key = super::maps::key_of(&fe);
                let other = claimed.insert(key, svc.id).or_else(|| {
                    prog.frontends
                        .get(&key)
                        .map(|i| i.svc_id)
                        .filter(|o| !moving.contains(o))
                });
                if let Some(other) = other.filter(|o| *o != svc.id) {
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
        Ok(())
    }

    /// Write the change to the maps, in an order no packet can trip on:
    /// service entries (with their tables) before the frontends that lead
    /// to them, and frontends removed before their services. `prog` is
    /// left describing the maps only when this returns Ok.
    pub(super) fn apply_delta(
        &mut self,
        prog: &mut Programmed,
        delta: &Delta,
    ) -> Result<(), DataplaneError> {
        for svc in &delta.upserts {
            svc.validate(abi::MAX_BACKENDS)?;
        }
        Self::check_frontends(prog, delta)?;
        let wrapped = self.assign_slots(prog, &delta.upserts)?;
        let planned: Vec<_> = delta
            .upserts
            .iter()
            .filter_map(|s| self.plan(s, prog.services.contains_key(&s.id)))
            .collect();
        let tables = build_tables(&planned);
        // Services that lost a backend: their flows to it are forgotten.
        let mut dropped: HashMap<u32, HashSet<(u32, u16)>> = HashMap::new();
        for (p, table) in planned.iter().zip(&tables) {
            self.write(p, table)?;
            if p.dropped {
                let live = p.value.backends[..usize::from(p.value.backend_count)]
                    .iter()
                    .map(|b| (b.addr, b.port))
                    .collect();
                dropped.insert(p.id, live);
            }
        }
        for svc in &delta.upserts {
            prog.services.insert(svc.id, Some((*svc).clone()));
        }
        self.resolve_neighbours(delta.upserts.iter().copied());

        // Frontends: each upserted service's, then stale ones.
        for svc in &delta.upserts {
            let slot = prog.slots[&svc.id];
            let info = abi::FrontendInfo {
                svc_id: svc.id,
                slot,
            };
            let keys: Vec<FrontendKey> = Self::frontends_of(svc)
                .iter()
                .map(super::maps::key_of)
                .collect();
            for &key in &keys {
                if prog.frontends.get(&key) != Some(&info) {
                    let fe = super::maps::frontend_of(key);
                    self.frontends.insert(fe, info, 0).map_err(|e| {
                        bpf(format!("writing frontend {}", frontend_str(&fe)))(e.to_string())
                    })?;
                    prog.own(key, info);
                }
            }
            let old = prog.owned.get(&svc.id).cloned().unwrap_or_default();
            for key in old.into_iter().filter(|k| !keys.contains(k)) {
                self.drop_frontend(prog, key, svc.id);
            }
        }
        for &id in &delta.removals {
            for key in prog.owned.get(&id).cloned().unwrap_or_default() {
                self.drop_frontend(prog, key, id);
            }
            // A removed service's flows are left to age out: its slot is
            // not handed out again soon, so they match nothing.
            if let Ok(svc) = self.services.get(&id, 0) {
                self.remove_chunks(id, &svc);
            }
            let _ = self.services.remove(&id);
            prog.services.remove(&id);
            prog.owned.remove(&id);
            if let Some(slot) = prog.slots.remove(&id) {
                prog.taken[slot as usize] = false;
            }
        }
        // Scanning the flow table is the one cost that grows with traffic:
        // only when a backend went, or slots came round again.
        if !dropped.is_empty() || wrapped {
            self.forget_stale_flows(prog, &dropped);
        }
        Ok(())
    }

    /// Remove frontend `key` if `owner` still holds it.
    fn drop_frontend(&mut self, prog: &mut Programmed, key: FrontendKey, owner: u32) {
        if prog.frontends.get(&key).map(|i| i.svc_id) == Some(owner) {
            let _ = self.frontends.remove(&super::maps::frontend_of(key));
            prog.frontends.remove(&key);
        }
        if let Some(v) = prog.owned.get_mut(&owner) {
            v.retain(|k| *k != key);
        }
    }

    /// Forget flows that lead nowhere: to a backend that left its service
    /// (`dropped`: each such service's remaining backends), or of a
    /// service incarnation that is gone. (Draining backends stay listed,
    /// so their flows are kept.) Read in batches: a syscall per flow would
    /// take seconds on a full table.
    fn forget_stale_flows(
        &mut self,
        prog: &Programmed,
        dropped: &HashMap<u32, HashSet<(u32, u16)>>,
    ) {
        let mut stale: Vec<abi::Flow> = Vec::new();
        let walk = super::batch::for_each(
            self.flows_raw.fd().as_fd(),
            4096,
            |keys: &[abi::Flow], targets: &[abi::FlowTarget]| {
                for (k, t) in keys.iter().zip(targets) {
                    let current = prog.slots.get(&t.svc_id) == Some(&t.slot);
                    let gone = dropped
                        .get(&t.svc_id)
                        .is_some_and(|live| !live.contains(&(t.backend.addr, t.backend.port)));
                    if !current || gone {
                        stale.push(*k);
                    }
                }
            },
        );
        let deleted = walk.and_then(|()| super::batch::delete(self.flows_raw.fd().as_fd(), &stale));
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "forgetting stale flows failed; they age out instead");
        }
    }

    /// Make `swarm_v4_nodes` hold the nodes that may tunnel to this one:
    /// those `set_nodes` named and those running backends of `services`
    /// (every service, on a sync; an update only adds the nodes its
    /// services name, and the next sync removes any left unused).
    pub(super) fn write_nodes<'a>(
        &mut self,
        prog: &mut Programmed,
        services: impl Iterator<Item = &'a LbService>,
        complete: bool,
    ) -> Result<(), DataplaneError> {
        let want: HashSet<u32> = self
            .peers
            .iter()
            .copied()
            .chain(services.flat_map(|s| s.backends.iter().map(|b| b.node)))
            .map(ip_be)
            .collect();
        if complete {
            for k in prog.nodes.difference(&want) {
                let _ = self.nodes.remove(k);
            }
        }
        for k in want.difference(&prog.nodes) {
            self.nodes
                .insert(k, 1, 0)
                .map_err(|e| bpf("writing the node table")(e.to_string()))?;
        }
        if complete {
            prog.nodes = want;
        } else {
            prog.nodes.extend(want);
        }
        Ok(())
    }
}
