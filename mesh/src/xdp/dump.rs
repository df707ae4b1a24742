//! Reading the pinned maps back for `swarm mesh dump`.

use super::{backend_str, frontend_str, ip_from_be, proto_name, XdpDataplane};
use crate::dataplane::{BackendDump, DataplaneError, Dump, FlowDump, ServiceDump};
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use swarm_ebpf::abi;

impl XdpDataplane {
    /// Everything `swarm mesh dump` shows, read from the maps.
    pub(super) fn read_back(&mut self) -> Result<Dump, DataplaneError> {
        let mut frontends: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut slots: BTreeMap<u32, u32> = BTreeMap::new();
        for (fe, info) in self.frontends.iter().filter_map(Result::ok) {
            frontends
                .entry(info.svc_id)
                .or_default()
                .push(frontend_str(&fe));
            slots.insert(info.svc_id, info.slot);
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
            let stats = slots
                .get(&id)
                .and_then(|slot| self.stats.get(slot, 0).ok())
                .map(|per_cpu| {
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
                name: String::new(),
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

/// The clock bpf_ktime_get_ns() reads.
fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}
