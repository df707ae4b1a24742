//! Computes each node's view of the cluster's service endpoints (networks,
//! services with VIPs, ports and backends, DNS names) from raft state. A
//! pure function: the dispatcher streams its result, and a test can check
//! any state against it.

use crate::state::{holds_addresses, State};
use crate::types::{
    BackendView, DnsRecord, EndpointMode, Mode, NetworkView, Node, NodeView, PublishMode,
    RemoteEndpoint, Service, ServiceView, Task, TaskState,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// A task that serves traffic: running, meant to run, and (once services
/// have healthchecks) healthy.
fn serves(t: &Task) -> bool {
    t.status.state == TaskState::Running && t.desired_state == TaskState::Running
}

pub fn for_node(st: &State, node_id: &str) -> NodeView {
    let node_addr = |id: &Option<String>| -> Option<Ipv4Addr> {
        st.nodes.get(id.as_deref()?).and_then(Node::underlay)
    };
    // Networks that this node's tasks hold addresses on, and ingress: the
    // routing mesh answers on every node, and reaches remote backends
    // over it (iptables mode).
    let local = st.node_networks(node_id);
    let me = st.nodes.get(node_id);

    let mut networks = Vec::new();
    for id in &local {
        let Some(net) = st.networks.get(id) else {
            continue;
        };
        let mut remote: Vec<RemoteEndpoint> = st
            .tasks
            .values()
            .filter(|t| t.node_id.is_some() && t.node_id.as_deref() != Some(node_id))
            .filter(|t| holds_addresses(t))
            .filter_map(|t| {
                let node = node_addr(&t.node_id)?;
                let a = t.networks.iter().flatten().find(|a| &a.network_id == id)?;
                Some(RemoteEndpoint {
                    addr: a.addr,
                    node,
                    is_node: false,
                })
            })
            .collect();
        remote.extend(
            st.nodes
                .values()
                .filter(|n| n.id != node_id)
                .filter_map(|n| {
                    let a = n.attachments.iter().find(|a| &a.network_id == id)?;
                    Some(RemoteEndpoint {
                        addr: a.addr,
                        node: n.underlay()?,
                        is_node: true,
                    })
                }),
        );
        remote.sort();
        networks.push(NetworkView {
            id: net.id.clone(),
            name: net.spec.name.clone(),
            subnet: net.subnet,
            gateway: net.gateway,
            vni: net.vni,
            internal: net.spec.internal,
            ingress: net.spec.ingress,
            node_addr: me
                .and_then(|n| n.attachments.iter().find(|a| &a.network_id == id))
                .map(|a| a.addr),
            remote,
        });
    }

    let mut services = Vec::new();
    let mut dns: BTreeMap<(String, String), BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for svc in st.services.values() {
        let nets = st.spec_networks(&svc.spec);
        let publishes = svc
            .spec
            .ports
            .iter()
            .any(|p| p.mode == PublishMode::Ingress);
        let reachable = nets.iter().any(|n| local.contains(n));
        if !publishes && !reachable {
            continue;
        }
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
        let named = nets
            .iter()
            .filter(|n| local.contains(*n) && st.ingress().is_none_or(|i| &i.id != *n));
        for net in named {
            add_names(&mut dns, svc, net, &backends);
        }
        services.push(ServiceView {
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
        });
    }
    let mut nodes: Vec<Ipv4Addr> = st.nodes.values().filter_map(Node::underlay).collect();
    nodes.sort();
    NodeView {
        nodes,
        networks,
        services,
        dns: dns
            .into_iter()
            .map(|((network_id, name), addrs)| DnsRecord {
                network_id,
                name,
                addrs: addrs.into_iter().collect(),
            })
            .collect(),
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
