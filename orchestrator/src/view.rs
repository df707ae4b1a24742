//! Computes each node's view of the cluster's service endpoints (networks,
//! services with VIPs, ports and backends, DNS names) from raft state.
//! Pure: a [`Book`] made once per state, from which each node's view is
//! cut; the dispatcher streams the cuts, and a test can check any state.

use crate::state::{holds_addresses, State};
use crate::types::{
    BackendView, DnsRecord, EndpointMode, Mode, NetworkView, NodeView, PublishMode, RemoteEndpoint,
    Service, ServiceView, Task, TaskState,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A task that serves traffic: running, meant to run, and (once services
/// have healthchecks) healthy.
fn serves(t: &Task) -> bool {
    t.status.state == TaskState::Running && t.desired_state == TaskState::Running
}

/// An endpoint on a network, and the node it belongs to (the task's, or
/// the node's own attachment), which is left out of that node's view.
#[derive(PartialEq)]
struct Endpoint {
    owner: String,
    endpoint: RemoteEndpoint,
}

/// A service as every node that sees it sees it, and the networks that
/// make a node see it.
#[derive(PartialEq)]
struct Seen {
    view: ServiceView,
    networks: BTreeSet<String>,
    publishes: bool,
}

impl Seen {
    /// Whether a node serving `local` networks sees the service: it can
    /// reach it, or the service publishes a port (ingress is on every node).
    fn seen_from(&self, local: &BTreeSet<String>) -> bool {
        self.publishes || self.networks.iter().any(|n| local.contains(n))
    }
}

/// What every node's view is cut from, made once per state. A dispatcher
/// session per node used to scan every task for each network of its node
/// on every change: at 500 nodes and 20,000 tasks that scan took the
/// leader's CPU, and raft starved beside it. Its parts are shared with the
/// previous state's book where they did not change (`sharing`), so a
/// session can tell by pointer that its node's cut is the same.
pub struct Book {
    /// The managers' addresses, which every session carries too.
    pub managers: Arc<Vec<String>>,
    /// Every node's underlay address, sorted.
    nodes: Arc<Vec<Ipv4Addr>>,
    /// Each network's endpoints, sorted.
    endpoints: Arc<BTreeMap<String, Vec<Endpoint>>>,
    /// In service ID order.
    services: Vec<Arc<Seen>>,
    /// Names by (network, name), every network but ingress.
    dns: Arc<BTreeMap<(String, String), BTreeSet<Ipv4Addr>>>,
}

/// `part`, or `prev`'s when they are equal: one comparison per state
/// saves one per session.
fn share<T: PartialEq>(part: Arc<T>, prev: &Arc<T>) -> Arc<T> {
    if *part == **prev {
        prev.clone()
    } else {
        part
    }
}

impl Book {
    pub fn of(st: &State) -> Book {
        let underlay: BTreeMap<&str, Ipv4Addr> = st
            .nodes
            .values()
            .filter_map(|n| Some((n.id.as_str(), n.underlay()?)))
            .collect();
        let node_addr = |id: &Option<String>| underlay.get(id.as_deref()?).copied();

        let mut endpoints: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        for t in st.tasks.values().filter(|t| holds_addresses(t)) {
            let (Some(owner), Some(node)) = (&t.node_id, node_addr(&t.node_id)) else {
                continue;
            };
            for a in t.networks.iter().flatten() {
                endpoints
                    .entry(a.network_id.clone())
                    .or_default()
                    .push(Endpoint {
                        owner: owner.clone(),
                        endpoint: RemoteEndpoint {
                            addr: a.addr,
                            node,
                            is_node: false,
                        },
                    });
            }
        }
        for n in st.nodes.values() {
            let Some(node) = underlay.get(n.id.as_str()).copied() else {
                continue;
            };
            for a in &n.attachments {
                endpoints
                    .entry(a.network_id.clone())
                    .or_default()
                    .push(Endpoint {
                        owner: n.id.clone(),
                        endpoint: RemoteEndpoint {
                            addr: a.addr,
                            node,
                            is_node: true,
                        },
                    });
            }
        }
        for list in endpoints.values_mut() {
            list.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        }

        let ingress = st.ingress().map(|i| i.id.as_str());
        let mut services = Vec::new();
        let mut dns = BTreeMap::new();
        for svc in st.services.values() {
            let networks: BTreeSet<String> = st.spec_networks(&svc.spec).into_iter().collect();
            let backends: Vec<BackendView> = st
                .tasks_of(&svc.id)
                .filter(|t| serves(t))
                .filter_map(|t| {
                    Some(BackendView {
                        task_id: t.id.clone(),
                        node: node_addr(&t.node_id)?,
                        addrs: t.networks.clone()?,
                    })
                })
                .collect();
            // Names live on the service's own networks: ingress has none.
            for net in networks.iter().filter(|n| Some(n.as_str()) != ingress) {
                add_names(&mut dns, svc, net, &backends);
            }
            services.push(Arc::new(Seen {
                view: ServiceView {
                    id: svc.id.clone(),
                    name: svc.spec.name.clone(),
                    endpoint_mode: svc.spec.endpoint_mode,
                    ports: svc.spec.ports.clone(),
                    vips: svc.endpoint.vips.clone(),
                    declared: match svc.spec.mode {
                        Mode::Replicated => svc.spec.replicas as usize,
                        Mode::Global => st.nodes.len(),
                    },
                    backends,
                },
                networks,
                publishes: svc
                    .spec
                    .ports
                    .iter()
                    .any(|p| p.mode == PublishMode::Ingress),
            }));
        }
        let mut nodes: Vec<Ipv4Addr> = underlay.into_values().collect();
        nodes.sort();
        Book {
            managers: Arc::new(st.manager_addrs()),
            nodes: Arc::new(nodes),
            endpoints: Arc::new(endpoints),
            services,
            dns: Arc::new(dns),
        }
    }

    /// This book with the parts equal to `prev`'s taken from `prev`.
    pub fn sharing(self, prev: &Book) -> Book {
        let before: BTreeMap<&str, &Arc<Seen>> = prev
            .services
            .iter()
            .map(|s| (s.view.id.as_str(), s))
            .collect();
        let services = self
            .services
            .into_iter()
            .map(|s| match before.get(s.view.id.as_str()) {
                Some(p) => share(s, p),
                None => s,
            })
            .collect();
        Book {
            managers: share(self.managers, &prev.managers),
            nodes: share(self.nodes, &prev.nodes),
            endpoints: share(self.endpoints, &prev.endpoints),
            services,
            dns: share(self.dns, &prev.dns),
        }
    }

    /// Whether a node serving `local` networks is cut the same view (and
    /// manager list) from this book as from `prev`, by pointers alone.
    pub fn same_cut(&self, prev: &Book, local: &BTreeSet<String>) -> bool {
        let seen = |b: &Book| -> Vec<*const Seen> {
            b.services
                .iter()
                .filter(|s| s.seen_from(local))
                .map(Arc::as_ptr)
                .collect()
        };
        Arc::ptr_eq(&self.managers, &prev.managers)
            && Arc::ptr_eq(&self.nodes, &prev.nodes)
            && Arc::ptr_eq(&self.endpoints, &prev.endpoints)
            && Arc::ptr_eq(&self.dns, &prev.dns)
            && seen(self) == seen(prev)
    }

    /// Node `node_id`'s view: the networks it serves with every other
    /// node's endpoints on them, the services it can reach or that publish
    /// ports (ingress is on every node), and their names on its networks.
    pub fn for_node(&self, st: &State, node_id: &str) -> NodeView {
        // Networks that this node's tasks hold addresses on, and ingress:
        // the routing mesh answers on every node, and reaches remote
        // backends over it (iptables mode).
        let local = st.node_networks(node_id);
        let me = st.nodes.get(node_id);
        let networks = local
            .iter()
            .filter_map(|id| st.networks.get(id))
            .map(|net| NetworkView {
                id: net.id.clone(),
                name: net.spec.name.clone(),
                subnet: net.subnet,
                gateway: net.gateway,
                vni: net.vni,
                internal: net.spec.internal,
                ingress: net.spec.ingress,
                node_addr: me
                    .and_then(|n| n.attachments.iter().find(|a| a.network_id == net.id))
                    .map(|a| a.addr),
                remote: self
                    .endpoints
                    .get(&net.id)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.owner != node_id)
                    .map(|e| e.endpoint.clone())
                    .collect(),
            })
            .collect();
        let services = self
            .services
            .iter()
            .filter(|s| s.seen_from(&local))
            .map(|s| s.view.clone())
            .collect();
        let dns = self
            .dns
            .iter()
            .filter(|((network_id, _), _)| local.contains(network_id))
            .map(|((network_id, name), addrs)| DnsRecord {
                network_id: network_id.clone(),
                name: name.clone(),
                addrs: addrs.iter().copied().collect(),
            })
            .collect();
        NodeView {
            nodes: self.nodes.to_vec(),
            networks,
            services,
            dns,
        }
    }
}

/// The names a service has on one network: its name and aliases (the VIP,
/// or with dnsrr the tasks' addresses) and `tasks.NAME` (the tasks).
fn add_names(
    dns: &mut BTreeMap<(String, String), BTreeSet<Ipv4Addr>>,
    svc: &Service,
    net: &str,
    backends: &[BackendView],
) {
    let tasks: Vec<Ipv4Addr> = backends
        .iter()
        .flat_map(|b| {
            b.addrs
                .iter()
                .filter(|a| a.network_id == net)
                .map(|a| a.addr)
        })
        .collect();
    let vip = svc.endpoint.vips.iter().find(|v| v.network_id == net);
    let answer: Vec<Ipv4Addr> = match (svc.spec.endpoint_mode, vip) {
        (EndpointMode::Vip, Some(v)) => vec![v.addr],
        (EndpointMode::Vip, None) => Vec::new(), // not allocated yet
        (EndpointMode::Dnsrr, _) => tasks.clone(),
    };
    let aliases = svc
        .spec
        .networks
        .iter()
        .filter(|a| a.target == net)
        .flat_map(|a| a.aliases.iter());
    let mut put = |name: String, addrs: &[Ipv4Addr]| {
        dns.entry((net.to_string(), name.to_ascii_lowercase()))
            .or_default()
            .extend(addrs.iter().copied());
    };
    put(svc.spec.name.clone(), &answer);
    for alias in aliases {
        put(alias.clone(), &answer);
    }
    put(format!("tasks.{}", svc.spec.name), &tasks);
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
