//! Networks and IPAM inside the state machine. Subnets, gateways and VXLAN
//! IDs are settled by `apply` itself (deterministically, from the state), so
//! two concurrent `network create`s can never get the same subnet. Task
//! addresses and VIPs are chosen by the allocator loop; `apply` refuses any
//! address that is taken, outside its subnet, or the gateway.

use super::{bump, not_found, Kind, Rejection, Response, State};
use crate::types::{Attachment, Meta, Millis, Network, NetworkSpec, Task, TaskState, TaskStatus};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// VXLAN IDs start here, as in Swarm (lower ones are left to the host).
const FIRST_VNI: u32 = 4096;

/// The allocator's result for one task: its addresses, or why it has none.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskAllocation {
    pub task_id: String,
    pub result: Result<Vec<Attachment>, String>,
    pub at: Millis,
}

impl State {
    pub fn network_by_name(&self, name: &str) -> Option<&Network> {
        self.networks.values().find(|n| n.spec.name == name)
    }

    /// Resolve a network the way docker does: full ID, name, or unique ID prefix.
    pub fn find_network(&self, key: &str) -> Option<&Network> {
        if let Some(n) = self.networks.get(key).or_else(|| self.network_by_name(key)) {
            return Some(n);
        }
        let mut matches = self.networks.values().filter(|n| n.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(n), None) => Some(n),
            _ => None,
        }
    }

    /// The ingress network, once `init` made it.
    pub fn ingress(&self) -> Option<&Network> {
        self.networks.values().find(|n| n.spec.ingress)
    }

    /// Whether `addr` is held on network `id` (a task's, a VIP, or the gateway).
    pub fn addr_taken(&self, id: &str, addr: Ipv4Addr) -> bool {
        self.ipam.get(id).is_some_and(|s| s.contains(&addr))
            || self.networks.get(id).is_some_and(|n| n.gateway == addr)
    }

    pub(super) fn create_network(&mut self, id: String, spec: NetworkSpec, at: Millis) -> Response {
        if self.network_by_name(&spec.name).is_some() {
            return Response::err(Rejection::NameInUse {
                kind: Kind::Network,
                name: spec.name,
            });
        }
        if self.networks.contains_key(&id) {
            return Response::err(Rejection::IdExists {
                kind: Kind::Network,
                id,
            });
        }
        if spec.ingress && self.ingress().is_some() {
            return Response::err(Rejection::Invalid(
                "the swarm already has an ingress network".into(),
            ));
        }
        let subnet = match spec.subnet {
            Some(s) => {
                if let Err(why) = self.check_subnet(s) {
                    return Response::err(Rejection::Invalid(format!(
                        "subnet {s} of network {:?} {why}",
                        spec.name
                    )));
                }
                s
            }
            None => match self.free_subnet() {
                Some(s) => s,
                None => {
                    return Response::err(Rejection::Invalid(format!(
                        "no free subnet left in the address pool for network {:?}; remove a network or give --subnet",
                        spec.name
                    )))
                }
            },
        };
        let gateway = match spec.gateway {
            Some(g) if !subnet.contains(&g) || g == subnet.network() || g == subnet.broadcast() => {
                return Response::err(Rejection::Invalid(format!(
                    "gateway {g} is not a host address of subnet {subnet}"
                )))
            }
            Some(g) => g,
            None => match subnet.hosts().next() {
                Some(g) => g,
                None => {
                    return Response::err(Rejection::Invalid(format!(
                        "subnet {subnet} has no host addresses"
                    )))
                }
            },
        };
        let vni = (FIRST_VNI..)
            .find(|v| self.networks.values().all(|n| n.vni != *v))
            .expect("fewer networks than VNIs");
        let net = Network {
            id: id.clone(),
            spec,
            subnet,
            gateway,
            vni,
            meta: Meta {
                version: 1,
                ..Meta::new(at)
            },
        };
        self.networks.insert(id.clone(), net);
        self.ipam.insert(id, Default::default());
        Response::ok()
    }

    /// Why `subnet` cannot be used, naming what it overlaps.
    fn check_subnet(&self, subnet: Ipv4Net) -> Result<(), String> {
        let overlaps = |other: &Ipv4Net| subnet.contains(other) || other.contains(&subnet);
        if let Some(n) = self.networks.values().find(|n| overlaps(&n.subnet)) {
            return Err(format!("overlaps network {:?} ({})", n.spec.name, n.subnet));
        }
        for node in self.nodes.values() {
            if let Some(g) = node.gateway_subnet.filter(overlaps) {
                return Err(format!(
                    "overlaps the task gateway subnet {g} of node {}",
                    node.hostname
                ));
            }
            if let Some(a) = node.underlay() {
                if subnet.contains(&a) {
                    return Err(format!(
                        "overlaps the underlay: node {} has address {a}",
                        node.hostname
                    ));
                }
            }
        }
        Ok(())
    }

    /// The first subnet of the pool's size that nothing uses.
    fn free_subnet(&self) -> Option<Ipv4Net> {
        let (pools, len) = match &self.cluster {
            Some(c) => (c.addr_pool.clone(), c.pool_mask_len),
            None => (
                crate::types::default_addr_pool(),
                crate::types::DEFAULT_POOL_MASK_LEN,
            ),
        };
        pools
            .iter()
            .filter_map(|p| p.subnets(len.max(p.prefix_len())).ok())
            .flatten()
            .find(|s| self.check_subnet(*s).is_ok())
    }

    /// Whether a task that has not ended still holds an address on the
    /// network (it cannot be removed until none does).
    pub fn has_task_addresses(&self, id: &str) -> bool {
        self.tasks
            .values()
            .any(|t| holds_addresses(t) && t.networks.iter().flatten().any(|a| a.network_id == id))
    }

    pub(super) fn remove_network(&mut self, id: &str) -> Response {
        let Some(net) = self.networks.get(id) else {
            return not_found(Kind::Network, id);
        };
        let users: Vec<&str> = self
            .services
            .values()
            .filter(|s| self.spec_networks(&s.spec).iter().any(|n| n == id))
            .map(|s| s.spec.name.as_str())
            .collect();
        if !users.is_empty() {
            return Response::err(Rejection::Invalid(format!(
                "network {} is in use by service {}",
                net.spec.name,
                users.join(", ")
            )));
        }
        // A service that left the network keeps its VIP there until the
        // allocator releases it; removing the network first would leave
        // that address behind, held on no network.
        let holders: Vec<&str> = self
            .services
            .values()
            .filter(|s| s.endpoint.vips.iter().any(|a| a.network_id == id))
            .map(|s| s.spec.name.as_str())
            .collect();
        if !holders.is_empty() {
            return Response::err(Rejection::Invalid(format!(
                "network {} still has the address of service {}; wait for it to be released",
                net.spec.name,
                holders.join(", ")
            )));
        }
        if self.has_task_addresses(id) {
            return Response::err(Rejection::Invalid(format!(
                "network {} still has task addresses; wait for its tasks to stop",
                net.spec.name
            )));
        }
        self.networks.remove(id);
        self.ipam.remove(id);
        let nodes: Vec<String> = self.nodes.keys().cloned().collect();
        for n in nodes {
            if let Some(node) = self.nodes.get_mut(&n) {
                node.attachments.retain(|a| a.network_id != id);
            }
        }
        Response::ok()
    }

    /// The IDs of the networks a service's tasks join: its own, and
    /// ingress when it publishes ingress-mode ports.
    pub fn spec_networks(&self, spec: &crate::types::ServiceSpec) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        let publishes = spec
            .ports
            .iter()
            .any(|p| p.mode == crate::types::PublishMode::Ingress);
        if publishes {
            if let Some(ing) = self.ingress() {
                ids.push(ing.id.clone());
            }
        }
        for a in &spec.networks {
            if !ids.contains(&a.target) {
                ids.push(a.target.clone());
            }
        }
        ids
    }

    /// Check that every address is free and on its network, then take them.
    fn take(&mut self, addrs: &[Attachment]) -> Result<(), Rejection> {
        for (i, a) in addrs.iter().enumerate() {
            let Some(net) = self.networks.get(&a.network_id) else {
                return Err(Rejection::NotFound {
                    kind: Kind::Network,
                    id: a.network_id.clone(),
                });
            };
            let twice = addrs[..i].iter().any(|b| b == a);
            if !net.subnet.contains(&a.addr)
                || a.addr == net.subnet.network()
                || a.addr == net.subnet.broadcast()
                || twice
                || self.addr_taken(&a.network_id, a.addr)
            {
                return Err(Rejection::Invalid(format!(
                    "address {} on network {} is taken or outside {}",
                    a.addr, net.spec.name, net.subnet
                )));
            }
        }
        for a in addrs {
            self.ipam
                .entry(a.network_id.clone())
                .or_default()
                .insert(a.addr);
        }
        Ok(())
    }

    pub(super) fn release(&mut self, addrs: &[Attachment]) {
        for a in addrs {
            if let Some(set) = self.ipam.get_mut(&a.network_id) {
                set.remove(&a.addr);
            }
        }
    }

    /// Trade the addresses `old` for `new`, or keep `old` if any of `new`
    /// cannot be taken.
    fn swap(&mut self, old: &[Attachment], new: &[Attachment]) -> Result<(), Rejection> {
        self.release(old);
        self.take(new).inspect_err(|_| {
            let _ = self.take(old);
        })
    }

    pub(super) fn allocate_service(&mut self, id: &str, vips: Vec<Attachment>) -> Response {
        let Some(old) = self.services.get(id).map(|s| s.endpoint.vips.clone()) else {
            return not_found(Kind::Service, id);
        };
        if let Err(r) = self.swap(&old, &vips) {
            return Response::err(r);
        }
        let svc = self.service_mut(id).expect("checked above");
        svc.endpoint.vips = vips;
        bump(&mut svc.meta, None);
        Response::ok()
    }

    pub(super) fn allocate_node(&mut self, id: &str, attachments: Vec<Attachment>) -> Response {
        let Some(old) = self.nodes.get(id).map(|n| n.attachments.clone()) else {
            return not_found(Kind::Node, id);
        };
        if let Err(r) = self.swap(&old, &attachments) {
            return Response::err(r);
        }
        let node = self.nodes.get_mut(id).expect("checked above");
        node.attachments = attachments;
        bump(&mut node.meta, None);
        Response::ok()
    }

    /// The networks node `id` serves: those its tasks hold addresses on,
    /// and ingress (the routing mesh answers on every node).
    pub fn node_networks(&self, id: &str) -> std::collections::BTreeSet<String> {
        let mut nets: std::collections::BTreeSet<String> = self
            .tasks_on(id)
            .filter(|t| holds_addresses(t))
            .flat_map(|t| t.networks.iter().flatten().map(|a| a.network_id.clone()))
            .collect();
        nets.extend(self.ingress().map(|n| n.id.clone()));
        nets
    }

    pub(super) fn allocate_tasks(&mut self, allocations: Vec<TaskAllocation>) -> Response {
        let mut refused = Vec::new();
        for a in allocations {
            let Some(t) = self.tasks.get(&a.task_id) else {
                continue;
            };
            // Only new tasks are allocated, once.
            if t.networks.is_some() || t.status.state > TaskState::Pending {
                continue;
            }
            let name = t.name();
            let status = match a.result {
                Ok(addrs) => match self.take(&addrs) {
                    Ok(()) => {
                        let t = self.task_mut(&a.task_id).expect("checked above");
                        t.networks = Some(addrs);
                        TaskStatus::new(TaskState::Pending, "pending task scheduling")
                    }
                    Err(r) => {
                        refused.push(format!("{name}: {r}"));
                        continue;
                    }
                },
                Err(why) => TaskStatus::new(TaskState::Pending, why.clone()).with_err(why),
            };
            let t = self.task_mut(&a.task_id).expect("checked above");
            t.status = TaskStatus {
                timestamp: a.at,
                ..status
            };
            bump(&mut t.meta, Some(a.at));
        }
        if refused.is_empty() {
            Response::ok()
        } else {
            Response::err(Rejection::Invalid(format!(
                "addresses not allocated: {}",
                refused.join("; ")
            )))
        }
    }

    /// Rebuild the derived indexes from the objects (they are not
    /// stored): requests, tasks by service and node (`index.rs`), and
    /// addresses held (running tasks' addresses and services' VIPs).
    pub fn reindex(&mut self) {
        self.requests.rebuild();
        self.index = super::TaskIndex::of(self.tasks.values().map(|t| &**t));
        self.ipam = self
            .networks
            .keys()
            .map(|id| (id.clone(), im::OrdSet::new()))
            .collect();
        let held: Vec<Attachment> = self
            .tasks
            .values()
            .filter(|t| holds_addresses(t))
            .flat_map(|t| t.networks.iter().flatten().cloned())
            .chain(self.services.values().flat_map(|s| s.endpoint.vips.clone()))
            .chain(self.nodes.values().flat_map(|n| n.attachments.clone()))
            .collect();
        for a in held {
            self.ipam.entry(a.network_id).or_default().insert(a.addr);
        }
    }
}

/// A task keeps its addresses until it has stopped for good.
pub fn holds_addresses(t: &Task) -> bool {
    !t.status.state.is_terminal()
}
