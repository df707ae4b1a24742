//! The per-node view of the cluster's service endpoints: what one node's
//! agent needs to build its overlays, program its data plane and answer
//! DNS. The leader computes it from raft state (`view.rs`) and streams it
//! over the node's dispatcher session, so the mesh and DNS of every node
//! follow the same state and cannot disagree.

use super::{Attachment, EndpointMode, PortConfig};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Networks this node's tasks are on.
    pub networks: Vec<NetworkView>,
    /// Services this node's tasks can reach, and every service that
    /// publishes an ingress-mode port (the mesh answers on every node).
    pub services: Vec<ServiceView>,
    /// Names on this node's networks.
    pub dns: Vec<DnsRecord>,
    /// Underlay addresses of every node: the only sources of tunnelled
    /// traffic (IPIP, VXLAN) this node accepts.
    #[serde(default)]
    pub nodes: Vec<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    pub id: String,
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub vni: u32,
    pub internal: bool,
    pub ingress: bool,
    /// This node's own address on the network, once allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_addr: Option<Ipv4Addr>,
    /// Addresses on this network that live on other nodes (their tasks',
    /// and the nodes' own), with the node's underlay address: the static
    /// FDB and neighbour entries.
    pub remote: Vec<RemoteEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    pub addr: Ipv4Addr,
    pub node: Ipv4Addr,
    /// The node's own address (its bridge), not a task's.
    #[serde(default)]
    pub is_node: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub endpoint_mode: EndpointMode,
    pub ports: Vec<PortConfig>,
    pub vips: Vec<Attachment>,
    /// Tasks that run (and pass their healthcheck): the only backends.
    pub backends: Vec<BackendView>,
    /// How many tasks the service is declared to have, for sizing load
    /// balancing tables that must not change as tasks come and go.
    pub declared: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendView {
    pub task_id: String,
    /// Underlay address of the node that runs it.
    pub node: Ipv4Addr,
    /// Its address on each of its networks.
    pub addrs: Vec<Attachment>,
}

/// One DNS name on one network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DnsRecord {
    pub network_id: String,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub addrs: Vec<Ipv4Addr>,
}
