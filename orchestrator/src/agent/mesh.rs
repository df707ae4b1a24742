//! The node's data plane, driven by its view of the cluster: published
//! ingress ports answer on this node's address and go to the tasks'
//! ingress-network addresses wherever they run; each VIP takes every port
//! and goes to the service's tasks on that network. XDP mode by default;
//! iptables mode when asked, or when BPF cannot be used here (with a
//! warning that says why).

use crate::ports::mesh_proto;
use crate::types::{EndpointMode, NodeView, PublishMode, ServiceView};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use swarm_mesh::dataplane::{
    Backend, BackendState, Dataplane, DataplaneError, Dump, LbService, LocalEndpoint,
};
use swarm_mesh::iptables::IptablesDataplane;
use swarm_mesh::xdp::{self, XdpDataplane};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Xdp,
    Iptables,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Xdp => "xdp",
            Mode::Iptables => "iptables",
        }
    }
}

/// The data plane, shared by the agent (which programs it) and the control
/// API (which dumps it). Its calls block (map writes, iptables-restore).
pub type SharedMesh = std::sync::Arc<std::sync::Mutex<Mesh>>;

pub struct Mesh {
    pub mode: Mode,
    pin_dir: PathBuf,
    dp: Box<dyn Dataplane + Send>,
    /// What the last successful sync programmed, with the service names.
    applied: Option<Vec<LbService>>,
    /// The nodes it was told may tunnel to this one.
    nodes: Vec<Ipv4Addr>,
    /// Task ports given to the data plane as endpoints, and their addresses.
    endpoints: BTreeMap<String, Ipv4Addr>,
}

/// A task's port on the ingress network, which the data plane may deliver
/// to directly.
pub struct TaskEndpoint {
    pub addr: Ipv4Addr,
    /// The node end of the task's veth.
    pub iface: String,
    /// The task interface's MAC.
    pub mac: [u8; 6],
}

impl Mesh {
    /// Attach the data plane to the underlay `iface` (this node's `addr`).
    /// XDP falls back to iptables, saying why.
    pub fn attach(
        want: Mode,
        iface: &str,
        addr: Ipv4Addr,
        pin_dir: PathBuf,
    ) -> Result<Mesh, DataplaneError> {
        if want == Mode::Xdp {
            let xdp = xdp::attach(iface, addr, &pin_dir).and_then(|points| {
                tracing::info!(?points, "XDP data plane attached");
                XdpDataplane::open(&pin_dir)
            });
            match xdp {
                Ok(dp) => {
                    return Ok(Mesh {
                        mode: Mode::Xdp,
                        pin_dir,
                        dp: Box::new(dp),
                        applied: None,
                        nodes: Vec::new(),
                        endpoints: BTreeMap::new(),
                    })
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "the XDP data plane cannot be used on this host; falling back to iptables mode"
                ),
            }
        }
        IptablesDataplane::attach(iface)?;
        Ok(Mesh {
            mode: Mode::Iptables,
            pin_dir,
            dp: Box::new(IptablesDataplane::new(Some(addr))),
            applied: None,
            nodes: Vec::new(),
            endpoints: BTreeMap::new(),
        })
    }

    /// Program exactly the services of `view`, and the VIPs this node
    /// answers for.
    pub fn sync(&mut self, view: &NodeView) -> Result<(), DataplaneError> {
        let want = lb_services(view);
        if self.applied.as_ref() == Some(&want) && self.nodes == view.nodes {
            return Ok(());
        }
        self.dp.set_nodes(&view.nodes)?;
        // A change to the services alone is applied as such; anything else
        // (the first time, after a failure, new nodes) as a whole sync.
        let result = match self.applied.take() {
            Some(old) if self.nodes == view.nodes => {
                let (upserts, removals) = swarm_mesh::dataplane::diff(&old, &want);
                self.dp.update(&upserts, &removals)
            }
            _ => self.dp.sync(&want),
        };
        result?;
        self.nodes = view.nodes.clone();
        self.applied = Some(want);
        Ok(())
    }

    /// Give a task's overlay ports the east-west load balancer, and its
    /// `endpoints` to the fast path (XDP mode; iptables mode balances in
    /// the node's nat table instead).
    pub fn attach_task(
        &mut self,
        ifaces: &[String],
        endpoints: &[TaskEndpoint],
    ) -> Result<(), DataplaneError> {
        if self.mode != Mode::Xdp {
            return Ok(());
        }
        for i in ifaces {
            xdp::attach_task(i, &self.pin_dir)?;
        }
        for e in endpoints {
            self.dp
                .add_endpoint(&LocalEndpoint::of_port(e.addr, &e.iface, e.mac)?)?;
            self.endpoints.insert(e.iface.clone(), e.addr);
        }
        Ok(())
    }

    /// Forget a task's ports that are gone: their pinned links, and their
    /// endpoints.
    pub fn detach_task(&mut self, ifaces: &[String]) {
        if self.mode != Mode::Xdp {
            return;
        }
        for i in ifaces {
            xdp::forget_task(i, &self.pin_dir);
            if let Some(addr) = self.endpoints.remove(i) {
                if let Err(e) = self.dp.remove_endpoint(addr) {
                    tracing::warn!(iface = %i, error = %e, "removing a task endpoint failed");
                }
            }
        }
    }

    /// What the data plane holds, with the services' names. iptables mode
    /// keeps no per-service state to read back: its services are listed as
    /// programmed, beside the rules.
    pub fn dump(&mut self) -> Result<Dump, DataplaneError> {
        let mut d = self.dp.dump()?;
        if self.mode == Mode::Iptables {
            d.services = self.applied.iter().flatten().map(programmed).collect();
            return Ok(d);
        }
        let names: BTreeMap<u32, &str> = self
            .applied
            .iter()
            .flatten()
            .map(|s| (s.id, s.name.as_str()))
            .collect();
        for s in &mut d.services {
            if let Some(n) = names.get(&s.id) {
                s.name = n.to_string();
            }
        }
        Ok(d)
    }
}

/// A service as it was programmed, for dumps of modes without counters.
fn programmed(s: &LbService) -> swarm_mesh::dataplane::ServiceDump {
    use swarm_mesh::dataplane::{BackendDump, ServiceDump};
    let frontends = s
        .vip
        .map(|v| format!("{v}/{}", s.proto.name()))
        .into_iter()
        .chain(
            s.published_port
                .map(|p| format!("*:{p}/{}", s.proto.name())),
        )
        .collect();
    let n = s.backends.len().max(1) as f64;
    ServiceDump {
        id: s.id,
        name: s.name.clone(),
        frontends,
        backends: s
            .backends
            .iter()
            .map(|b| BackendDump {
                addr: b.addr.to_string(),
                node: b.node.to_string(),
                state: "active".into(),
                share: 1.0 / n,
            })
            .collect(),
        ..Default::default()
    }
}

/// The load-balanced frontends of a view: one per published ingress port
/// (to the tasks' ingress addresses) and one every-port VIP per network.
pub fn lb_services(view: &NodeView) -> Vec<LbService> {
    let ingress_net = view.networks.iter().find(|n| n.ingress);
    let ingress = ingress_net.map(|n| n.id.clone());
    let mut out = Vec::new();
    for svc in &view.services {
        for p in svc.ports.iter().filter(|p| p.mode == PublishMode::Ingress) {
            let backends = ingress
                .as_ref()
                .map(|net| backends_on(svc, net, p.target))
                .unwrap_or_default();
            out.push(LbService {
                id: 0,
                name: format!("{}:{}/{}", svc.name, p.published, p.protocol.name()),
                proto: mesh_proto(p.protocol),
                vip: None,
                published_port: Some(p.published),
                backends,
                declared_backends: Some(svc.declared.max(1)),
                snat: ingress_net.and_then(|n| n.node_addr),
            });
        }
        if svc.endpoint_mode != EndpointMode::Vip {
            continue;
        }
        for vip in &svc.vips {
            let Some(net) = view.networks.iter().find(|n| n.id == vip.network_id) else {
                continue; // not a network of this node's tasks
            };
            let backends = backends_on(svc, &vip.network_id, 0);
            for proto in [
                swarm_mesh::dataplane::Proto::Tcp,
                swarm_mesh::dataplane::Proto::Udp,
            ] {
                out.push(LbService {
                    id: 0,
                    name: format!("{}@{}/{}", svc.name, net.name, proto.name()),
                    proto,
                    vip: Some(SocketAddrV4::new(vip.addr, 0)),
                    published_port: None,
                    backends: backends.clone(),
                    declared_backends: Some(svc.declared.max(1)),
                    snat: net.node_addr,
                });
            }
        }
    }
    assign_ids(&mut out);
    out
}

/// A service's backends at their addresses on network `net`, on `port`
/// (0: the port the client asked for).
fn backends_on(svc: &ServiceView, net: &str, port: u16) -> Vec<Backend> {
    svc.backends
        .iter()
        .filter_map(|b| {
            let a = b.addrs.iter().find(|a| a.network_id == net)?;
            Some(Backend {
                addr: SocketAddrV4::new(a.addr, port),
                node: b.node,
                state: BackendState::Active,
            })
        })
        .collect()
}

/// The VIPs this node answers ARP for: those on its networks.
pub fn local_vips(view: &NodeView) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = view
        .services
        .iter()
        .filter(|s| s.endpoint_mode == EndpointMode::Vip)
        .flat_map(|s| s.vips.iter())
        .filter(|v| view.networks.iter().any(|n| n.id == v.network_id))
        .map(|v| v.addr)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Stable map IDs: a hash of the frontend's name, so a restarted daemon
/// finds its pinned entries under the same IDs; collisions step on, in
/// name order, which every node computes the same way.
fn assign_ids(services: &mut [LbService]) {
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let mut used = std::collections::HashSet::new();
    for s in services.iter_mut() {
        let mut id = fnv1a(&s.name) & 0x7fff_ffff;
        while id == 0 || !used.insert(id) {
            id = (id + 1) & 0x7fff_ffff;
        }
        s.id = id;
    }
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;
