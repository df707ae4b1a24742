//! The agent's network plumbing: the node's overlays follow its view of the
//! cluster (`sync`), and each task's sandbox gets one interface per network
//! it has an address on (`attach`), plus an `eth0` on the node's gateway
//! bridge for traffic that leaves the swarm, unless all its networks are
//! internal. Overlay addresses come from the allocator; only the gateway
//! bridge's address, which never leaves the node, is chosen here, as
//! Docker chooses docker_gwbridge addresses.

use crate::types::{NetworkView, NodeView, Task};
use ipnet::Ipv4Net;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use swarm_mesh::overlay::{self, Overlay, Peer};
use swarm_mesh::sandbox::{self, Gateway, Port, SandboxError};

type Built = (Vec<NetworkView>, Vec<Ipv4Addr>, Vec<Ipv4Addr>);

pub struct Networks {
    pub gateway: Gateway,
    /// This node's underlay address and that link's MTU, once known.
    underlay: Mutex<Option<(Ipv4Addr, u32)>>,
    /// What was last built (networks, nodes, VIPs), to skip unchanged work.
    applied: tokio::sync::Mutex<Option<Built>>,
}

impl Networks {
    pub fn new(gateway: Gateway) -> Networks {
        Networks {
            gateway,
            underlay: Mutex::new(None),
            applied: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn ensure_gateway(&self) -> Result<(), SandboxError> {
        sandbox::ensure_bridge(&self.gateway).await
    }

    /// Learn the underlay (the link carrying `addr`) and its MTU.
    pub async fn set_underlay(&self, addr: Ipv4Addr) -> Result<String, SandboxError> {
        let (name, mtu) = overlay::underlay_link(addr).await?;
        *self.underlay.lock().expect("underlay lock") = Some((addr, mtu));
        Ok(name)
    }

    /// The MTU inside the overlays (and on task ports): the underlay's less
    /// the VXLAN overhead, once the underlay is known.
    fn overlay_mtu(&self) -> Option<u32> {
        (*self.underlay.lock().expect("underlay lock"))
            .map(|(_, mtu)| mtu.saturating_sub(overlay::VXLAN_OVERHEAD))
    }

    fn overlay(&self, net: &NetworkView) -> Option<Overlay> {
        let (local, _) = (*self.underlay.lock().expect("underlay lock"))?;
        Some(Overlay {
            vni: net.vni,
            gateway: Ipv4Net::new(net.gateway, net.subnet.prefix_len()).ok()?,
            local,
            mtu: self.overlay_mtu()?,
            node_addr: net
                .node_addr
                .and_then(|a| Ipv4Net::new(a, net.subnet.prefix_len()).ok()),
        })
    }

    /// Build this node's overlays as the view says: devices, FDB and
    /// neighbour entries, the VIPs; and remove overlays no longer needed.
    pub async fn sync(&self, view: &NodeView) -> Result<(), SandboxError> {
        let mut applied = self.applied.lock().await;
        let vips = super::mesh::local_vips(view);
        let wanted = (view.networks.clone(), view.nodes.clone(), vips);
        if applied.as_ref() == Some(&wanted) {
            return Ok(());
        }
        for net in &view.networks {
            let Some(ov) = self.overlay(net) else {
                return Err(SandboxError::NoLink("the underlay is not known yet".into()));
            };
            overlay::ensure(&ov).await?;
            let peers: Vec<Peer> = net
                .remote
                .iter()
                .map(|r| Peer {
                    addr: r.addr,
                    // A node's address is its bridge's; a task's MAC
                    // follows its address.
                    mac: if r.is_node {
                        overlay::bridge_mac_of(r.node)
                    } else {
                        sandbox::mac_of(r.addr)
                    },
                    node: r.node,
                })
                .collect();
            overlay::sync_peers(&ov, &peers).await?;
        }
        let keep: Vec<u32> = view.networks.iter().map(|n| n.vni).collect();
        overlay::remove_except(&keep).await?;
        let bridges: Vec<String> = view
            .networks
            .iter()
            .filter_map(|n| Some(self.overlay(n)?.bridge()))
            .collect();
        let gateway = self.gateway.bridge.clone();
        let nodes = view.nodes.clone();
        tokio::task::spawn_blocking(move || {
            swarm_mesh::isolation::sync(&bridges, overlay::BRIDGE_PREFIX, &gateway, &nodes)
        })
        .await
        .map_err(|e| SandboxError::Filter(e.to_string()))?
        .map_err(|e| SandboxError::Filter(e.to_string()))?;
        overlay::sync_vips(&wanted.2).await?;
        *applied = Some(wanted);
        Ok(())
    }

    /// The bridge of the ingress network on this node, when it has one:
    /// published ports lead to tasks' addresses on it.
    pub fn ingress_bridge(&self, view: &NodeView) -> Option<String> {
        let net = view.networks.iter().find(|n| n.ingress)?;
        Some(self.overlay(net)?.bridge())
    }

    /// The interfaces a task's sandbox gets. `gw_addr` is its address on
    /// the gateway bridge, when it has one.
    pub fn ports(&self, task: &Task, view: &NodeView, gw_addr: Option<Ipv4Addr>) -> Vec<Port> {
        let mut ports = Vec::new();
        // The gateway port gets the overlay's MTU too: a task's TCP MSS
        // follows the route to its peer, and replies to mesh clients leave
        // through the gateway while the client's segments reach the task
        // in 20 bytes of IPIP.
        let overlay_mtu = self.overlay_mtu();
        if let Some(addr) = gw_addr {
            ports.push(Port {
                bridge: self.gateway.bridge.clone(),
                host_if: gateway_if(&task.id),
                name: "eth0".into(),
                addr: Ipv4Net::new(addr, self.gateway.addr.prefix_len()).expect("valid prefix"),
                mac: None,
                mtu: overlay_mtu,
                default_via: Some(self.gateway.addr.addr()),
                isolated: true,
            });
        }
        for (i, a) in task.networks.iter().flatten().enumerate() {
            let Some(net) = view.networks.iter().find(|n| n.id == a.network_id) else {
                continue;
            };
            let Some(ov) = self.overlay(net) else {
                continue;
            };
            ports.push(Port {
                bridge: ov.bridge(),
                host_if: network_if(&task.id, i),
                name: format!("eth{}", ports.len()),
                addr: Ipv4Net::new(a.addr, net.subnet.prefix_len()).expect("valid prefix"),
                mac: Some(sandbox::mac_of(a.addr)),
                mtu: Some(ov.mtu),
                default_via: None,
                isolated: false,
            });
        }
        ports
    }

    /// Whether a task gets the gateway bridge: unless every network it is
    /// on is internal (such a task has no way out of the swarm).
    pub fn wants_gateway(task: &Task, view: &NodeView) -> bool {
        let nets: Vec<&NetworkView> = task
            .networks
            .iter()
            .flatten()
            .filter_map(|a| view.networks.iter().find(|n| n.id == a.network_id))
            .collect();
        nets.is_empty() || nets.iter().any(|n| !n.internal)
    }

    /// The networks a task is on that this node has not built yet.
    pub fn missing(task: &Task, view: &NodeView) -> Vec<String> {
        let have: HashSet<&str> = view.networks.iter().map(|n| n.id.as_str()).collect();
        task.networks
            .iter()
            .flatten()
            .filter(|a| !have.contains(a.network_id.as_str()))
            .map(|a| a.network_id.clone())
            .collect()
    }

    /// Plumb every port into the namespace of `pid`.
    pub async fn attach(&self, pid: u32, ports: &[Port]) -> Result<(), SandboxError> {
        for p in ports {
            sandbox::attach_port(pid, p).await?;
        }
        Ok(())
    }

    /// Remove the host ends of a task's veths (their peers go with them).
    pub async fn detach(&self, task_id: &str) {
        for name in all_ifs(task_id) {
            let _ = sandbox::detach(&name).await;
        }
    }
}

/// The most networks one task can be on (its interface names use one
/// base-36 digit).
pub const MAX_NETWORKS: usize = 36;

/// Every host-side interface name a task may have.
pub fn all_ifs(task_id: &str) -> Vec<String> {
    let mut names = vec![gateway_if(task_id)];
    names.extend((0..MAX_NETWORKS).map(|i| network_if(task_id, i)));
    names
}

/// Host end of a task's gateway veth: unique and within the 15-byte limit.
pub fn gateway_if(task_id: &str) -> String {
    format!("sw{}", &task_id[..task_id.len().min(11)])
}

/// Host end of a task's veth on its `i`-th network.
pub fn network_if(task_id: &str, i: usize) -> String {
    let digit = char::from_digit((i % MAX_NETWORKS) as u32, 36).expect("below 36");
    format!("sv{}{digit}", &task_id[..task_id.len().min(11)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit_with_their_peer_suffix() {
        let id = "abcdefghijklmnopqrstuvwxy";
        assert!(gateway_if(id).len() < 15);
        assert_eq!(network_if(id, 35), "svabcdefghijkz");
        assert!(network_if(id, 35).len() < 15);
        assert_ne!(network_if(id, 1), network_if(id, 2));
    }
}
