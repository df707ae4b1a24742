//! Overlay networks and the addresses the allocator hands out on them.

use super::Meta;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The name of the routing-mesh network `swarm init` creates, as in Swarm.
pub const INGRESS: &str = "ingress";

/// Where networks without `--subnet` get theirs: Swarm's default pool,
/// carved into /24s.
pub fn default_addr_pool() -> Vec<Ipv4Net> {
    vec!["10.0.0.0/8".parse().expect("a valid net")]
}
pub const DEFAULT_POOL_MASK_LEN: u8 = 24;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    /// Always "overlay": the one driver a swarm network has.
    pub driver: String,
    /// `None` asks for one from the cluster's address pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Net>,
    /// `None` means the subnet's first host address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Standalone containers may join (kept for docker parity).
    #[serde(default)]
    pub attachable: bool,
    /// No way out: tasks on it reach only each other.
    #[serde(default)]
    pub internal: bool,
    /// The routing mesh's network: tasks of services with ingress-mode
    /// published ports get an address on it.
    #[serde(default)]
    pub ingress: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A network as stored: the spec with its subnet, gateway and VXLAN ID
/// settled, so every node builds the same devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub spec: NetworkSpec,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// VXLAN network identifier.
    pub vni: u32,
    #[serde(flatten)]
    pub meta: Meta,
}

/// A service's request to be on a network (`--network name=N,alias=A`).
/// `target` is the network's ID once the service is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentSpec {
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// How clients find a service's tasks (`--endpoint-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP per network, load-balanced to the tasks.
    #[default]
    Vip,
    /// DNS round robin: the name resolves to the tasks' own addresses.
    Dnsrr,
}

/// One address on one network: a task's, or a service's VIP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    pub network_id: String,
    pub addr: Ipv4Addr,
}

/// What the allocator gave a service (observed state, not spec).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<Attachment>,
}
