//! What the data plane is asked to do, independent of how: the `Dataplane`
//! trait and its model of load-balanced services. Implemented by the XDP
//! mode (`xdp.rs`) and, with the same reachability, the iptables mode.

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new flows.
    #[default]
    Active,
    /// Keeps its established flows, gets no new ones.
    Draining,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Backend {
    /// The task's address and the port it listens on.
    pub addr: SocketAddrV4,
    /// Underlay address of the node that runs it.
    pub node: Ipv4Addr,
    #[serde(default)]
    pub state: BackendState,
}

/// One load-balanced port of a service: its frontends and its backends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbService {
    /// Unique per node for every (service, port); names maps entries.
    pub id: u32,
    /// Human name for dumps, e.g. "web:80/tcp".
    #[serde(default)]
    pub name: String,
    pub proto: Proto,
    /// East-west frontend: the service's virtual IP and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<SocketAddrV4>,
    /// North-south frontend: this port on every node's own address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_port: Option<u16>,
    pub backends: Vec<Backend>,
    /// Backends the service is declared to have (its replicas). Sizes the
    /// Maglev table, which must not change as backends fail and return.
    /// Defaults to the number of backends given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_backends: Option<usize>,
    /// iptables mode: the source that forwarded connections get (this
    /// node's address on the backends' network), so replies come back
    /// through this node. Without it, the data plane's node address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat: Option<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("service {id}: {reason}")]
    InvalidService { id: u32, reason: String },
    #[error("BPF: {0}")]
    Bpf(String),
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("iptables: {0}")]
    Iptables(String),
}

impl LbService {
    /// Reject what the data plane cannot represent, naming the service.
    pub fn validate(&self, max_backends: usize) -> Result<(), DataplaneError> {
        let bad = |reason: String| DataplaneError::InvalidService {
            id: self.id,
            reason,
        };
        if self.vip.is_none() && self.published_port.is_none() {
            return Err(bad("needs a VIP or a published port".into()));
        }
        if self.backends.len() > max_backends {
            return Err(bad(format!(
                "{} backends; at most {max_backends} are supported",
                self.backends.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for b in &self.backends {
            if !seen.insert(b.addr) {
                return Err(bad(format!("backend {} listed twice", b.addr)));
            }
        }
        Ok(())
    }
}

/// What turns `old` into `new`, by service id: the services to add or
/// replace, and the ids to remove (for `Dataplane::update`).
pub fn diff(old: &[LbService], new: &[LbService]) -> (Vec<LbService>, Vec<u32>) {
    let before: std::collections::HashMap<u32, &LbService> =
        old.iter().map(|s| (s.id, s)).collect();
    let ids: std::collections::HashSet<u32> = new.iter().map(|s| s.id).collect();
    let upserts = new
        .iter()
        .filter(|s| before.get(&s.id) != Some(s))
        .cloned()
        .collect();
    let removals = old
        .iter()
        .map(|s| s.id)
        .filter(|id| !ids.contains(id))
        .collect();
    (upserts, removals)
}

/// A local backend's port: where a data plane that forwards packets itself
/// (XDP mode) hands packets for `addr` over, instead of passing them to the
/// node's stack to be routed and bridged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// The task's address on the network the port is on.
    pub addr: Ipv4Addr,
    /// The node end of the task's veth.
    pub ifindex: u32,
    /// The task interface's MAC.
    pub mac: [u8; 6],
    /// The node end's own MAC, the source of the frames it is handed.
    pub port_mac: [u8; 6],
    /// The task interface's MTU.
    pub mtu: u16,
}

impl LocalEndpoint {
    /// The endpoint for `addr`, whose task interface has `mac`, behind the
    /// node-end port `iface` (looked up in the calling thread's namespace).
    pub fn of_port(
        addr: Ipv4Addr,
        iface: &str,
        mac: [u8; 6],
    ) -> Result<LocalEndpoint, DataplaneError> {
        let io = |source| DataplaneError::Io {
            op: format!("reading interface {iface} for the endpoint of {addr}"),
            source,
        };
        Ok(LocalEndpoint {
            addr,
            ifindex: crate::link::index(iface).map_err(io)?,
            mac,
            port_mac: crate::link::mac(iface).map_err(io)?,
            mtu: crate::link::mtu(iface)
                .map_err(io)?
                .min(u32::from(u16::MAX)) as u16,
        })
    }
}

/// A snapshot of what a data plane holds, for `swarm mesh dump`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Dump {
    pub mode: String,
    pub attach_points: Vec<String>,
    pub services: Vec<ServiceDump>,
    pub flows: Vec<FlowDump>,
    pub drops: Vec<(String, u64)>,
    /// iptables mode: the rules this program owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServiceDump {
    pub id: u32,
    /// The frontend's name, when the caller knows it ("web:8000/tcp").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub frontends: Vec<String>,
    pub table_size: u32,
    pub backends: Vec<BackendDump>,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BackendDump {
    pub addr: String,
    pub node: String,
    pub state: String,
    /// Fraction of the Maglev table this backend owns (0..1).
    pub share: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FlowDump {
    pub client: String,
    pub frontend: String,
    pub backend: String,
    pub proto: String,
    pub age_ms: u64,
}

/// A node's service load balancer.
pub trait Dataplane {
    /// Make the data plane hold exactly `services` (add, change, remove).
    fn sync(&mut self, services: &[LbService]) -> Result<(), DataplaneError>;
    /// Change what is programmed: services in `upserts` are added, or
    /// replace the service with their id; services with an id in
    /// `removals` go. The same as a sync of the list that results, at a
    /// cost that follows the change rather than the number of services.
    fn update(&mut self, upserts: &[LbService], removals: &[u32]) -> Result<(), DataplaneError>;
    /// Everything it holds, with counters.
    fn dump(&mut self) -> Result<Dump, DataplaneError>;
    /// The swarm's nodes: the only sources of tunnelled connections (the
    /// nodes that run backends always are). Applied at the next `sync`.
    fn set_nodes(&mut self, _nodes: &[Ipv4Addr]) -> Result<(), DataplaneError> {
        Ok(())
    }
    /// A local backend's port, for modes that deliver to it directly (a
    /// mode that does not leaves it to the stack). Replaces any endpoint
    /// for the same address.
    fn add_endpoint(&mut self, _ep: &LocalEndpoint) -> Result<(), DataplaneError> {
        Ok(())
    }
    /// Forget the endpoint for `addr` (its task is gone); missing is fine.
    fn remove_endpoint(&mut self, _addr: Ipv4Addr) -> Result<(), DataplaneError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(id: u32, port: u16) -> LbService {
        LbService {
            id,
            name: format!("s{id}"),
            proto: Proto::Tcp,
            vip: None,
            published_port: Some(port),
            backends: Vec::new(),
            declared_backends: None,
            snat: None,
        }
    }

    #[test]
    fn a_diff_names_what_was_added_changed_and_removed_and_nothing_else() {
        let old = [svc(1, 80), svc(2, 81), svc(3, 82)];
        let new = [svc(1, 80), svc(2, 8081), svc(4, 83)];
        let (upserts, removals) = diff(&old, &new);
        let ids: Vec<u32> = upserts.iter().map(|s| s.id).collect();
        assert_eq!(ids, [2, 4]);
        assert_eq!(removals, [3]);
        assert_eq!(diff(&new, &new), (Vec::new(), Vec::new()));
    }
}
