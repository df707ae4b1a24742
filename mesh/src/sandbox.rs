//! Plumbing for a task's network sandbox. The agent starts a "pause"
//! container with no network, then calls `attach` to give its namespace an
//! `eth0` on the node's gateway bridge with a default route through it, before
//! the application container joins that namespace. The application therefore
//! never starts without a network.

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::Handle;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("netlink {op} failed: {source}")]
    Netlink {
        op: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("cannot open a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("cannot enter the network namespace of pid {pid}: {source}")]
    Namespace { pid: u32, source: std::io::Error },
    #[error("interface {0} not found")]
    NoLink(String),
    #[error("filter rules: {0}")]
    Filter(String),
    #[error("address {addr} is not inside gateway subnet {subnet}")]
    OutsideSubnet { addr: Ipv4Addr, subnet: Ipv4Net },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) type Result<T> = std::result::Result<T, SandboxError>;

pub(crate) fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> SandboxError {
    let op = op.into();
    move |source| SandboxError::Netlink {
        op,
        source: Box::new(source),
    }
}

/// A node's gateway bridge: the L2 segment its tasks hang off.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// Bridge device name, e.g. `swgw0`.
    pub bridge: String,
    /// The bridge's own address, with the subnet's prefix length, e.g. 198.19.1.1/24.
    pub addr: Ipv4Net,
}

impl Gateway {
    /// The gateway for `subnet`: the bridge takes its first host address.
    pub fn for_subnet(bridge: &str, subnet: Ipv4Net) -> Gateway {
        let first = subnet.hosts().next().unwrap_or(subnet.network());
        Gateway {
            bridge: bridge.to_string(),
            addr: Ipv4Net::new(first, subnet.prefix_len()).expect("prefix comes from a valid net"),
        }
    }

    /// Addresses that tasks may use: the subnet's hosts minus the gateway.
    pub fn task_addrs(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let gw = self.addr.addr();
        self.addr.trunc().hosts().filter(move |a| *a != gw)
    }
}

pub(crate) fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(SandboxError::Connect)?;
    tokio::spawn(conn);
    Ok(handle)
}

pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers ENODEV for an unknown name.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("get link {name}"))(e)),
    }
}

/// The index of interface `name`, which must exist.
pub(crate) async fn existing_link(handle: &Handle, name: &str) -> Result<u32> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| SandboxError::NoLink(name.to_string()))
}

/// Create the gateway bridge in the current namespace if it is missing, give
/// it its address and bring it up. Safe to call repeatedly.
pub async fn ensure_bridge(gw: &Gateway) -> Result<()> {
    // A fixed MAC: a bridge that takes its ports' MACs changes address as
    // tasks come and go, and strands the tasks' ARP entries for it.
    let mac = mac_of(gw.addr.addr());
    ensure_bridge_with(&gw.bridge, gw.addr, Some(mac), None)
        .await
        .map(|_| ())
}

/// Create bridge `name` if missing, with `addr` on it, the given MAC and
/// MTU when set, and bring it up. Returns its index.
pub(crate) async fn ensure_bridge_with(
    name: &str,
    addr: Ipv4Net,
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
) -> Result<u32> {
    let handle = connect()?;
    let index = match link_index(&handle, name).await? {
        Some(i) => i,
        None => {
            handle
                .link()
                .add()
                .bridge(name.to_string())
                .execute()
                .await
                .map_err(nl(format!("create bridge {name}")))?;
            existing_link(&handle, name).await?
        }
    };
    if let Some(mac) = mac {
        handle
            .link()
            .set(index)
            .address(mac.to_vec())
            .execute()
            .await
            .map_err(nl(format!("set the MAC of {name}")))?;
    }
    if let Some(mtu) = mtu {
        handle
            .link()
            .set(index)
            .mtu(mtu)
            .execute()
            .await
            .map_err(nl(format!("set the MTU of {name}")))?;
    }
    ensure_addr(index, addr).await?;
    handle
        .link()
        .set(index)
        .up()
        .execute()
        .await
        .map_err(nl(format!("bring up {name}")))?;
    Ok(index)
}

/// Give link `index` the address `addr` unless it has it.
pub(crate) async fn ensure_addr(index: u32, addr: Ipv4Net) -> Result<()> {
    let handle = connect()?;
    let existing: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    let has_addr = existing.iter().any(|m| {
        m.attributes.iter().any(|a| {
            matches!(a, netlink_packet_route::address::AddressAttribute::Address(IpAddr::V4(v)) if *v == addr.addr())
        })
    });
    if !has_addr {
        handle
            .address()
            .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
            .execute()
            .await
            .map_err(nl(format!("add {addr} to link {index}")))?;
    }
    Ok(())
}

/// One interface to give a task's namespace.
#[derive(Clone, Debug)]
pub struct Port {
    /// The bridge its host end joins.
    pub bridge: String,
    /// Host end of the veth: at most 15 bytes, unique per task and network.
    pub host_if: String,
    /// Its name inside the namespace (`eth0`, `eth1`, ...).
    pub name: String,
    pub addr: Ipv4Net,
    /// Set to make the MAC follow the address, so a reused address never
    /// meets a stale neighbour entry elsewhere.
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// The default route goes through this gateway.
    pub default_via: Option<Ipv4Addr>,
    /// An isolated bridge port reaches only the bridge itself, never the
    /// other isolated ports: tasks on one node cannot meet on the gateway.
    pub isolated: bool,
}

/// Make bridge port `index` isolated. Bridge-port options are set with
/// RTM_NEWLINK on the existing device (RTM_SETLINK ignores them), which
/// rtnetlink has no builder for.
async fn isolate_port(handle: &Handle, index: u32) -> std::result::Result<(), rtnetlink::Error> {
    use futures::StreamExt;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
    use netlink_packet_route::link::{
        InfoBridgePort, InfoPortData, InfoPortKind, LinkAttribute, LinkInfo, LinkMessage,
    };
    use netlink_packet_route::RouteNetlinkMessage;
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
            true,
        )])),
    ]));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut resp = handle.clone().request(req)?;
    while let Some(m) = resp.next().await {
        if let NetlinkPayload::Error(e) = m.payload {
            if e.code.is_some() {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
    }
    Ok(())
}

/// Docker's MAC for an address: 02:42 followed by the address bytes.
pub fn mac_of(addr: Ipv4Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Give the namespace of process `pid` the interface `port`.
pub async fn attach_port(pid: u32, port: &Port) -> Result<()> {
    let handle = connect()?;
    // A half-done earlier attempt may have left the host end behind.
    detach(&port.host_if).await?;
    let peer = format!("{}p", port.host_if);
    handle
        .link()
        .add()
        .veth(port.host_if.clone(), peer.clone())
        .execute()
        .await
        .map_err(nl(format!("create veth {}", port.host_if)))?;
    let bridge = existing_link(&handle, &port.bridge).await?;
    let host = existing_link(&handle, &port.host_if).await?;
    let peer_index = existing_link(&handle, &peer).await?;
    // The task's end receives in NAPI, so XDP can redirect packets to it
    // (the routing mesh's fast path to local backends); set here, where
    // the peer is still in the node's namespace.
    crate::link::enable_gro(&peer).map_err(|source| SandboxError::Io {
        op: format!("enabling GRO on {peer}"),
        source,
    })?;
    if let Some(mtu) = port.mtu {
        for i in [host, peer_index] {
            handle
                .link()
                .set(i)
                .mtu(mtu)
                .execute()
                .await
                .map_err(nl(format!("set the MTU of {}", port.host_if)))?;
        }
    }
    handle
        .link()
        .set(host)
        .controller(bridge)
        .up()
        .execute()
        .await
        .map_err(nl(format!("attach {} to {}", port.host_if, port.bridge)))?;
    if port.isolated {
        isolate_port(&handle, host)
            .await
            .map_err(nl(format!("isolate {}", port.host_if)))?;
    }
    handle
        .link()
        .set(peer_index)
        .setns_by_pid(pid)
        .execute()
        .await
        .map_err(nl(format!("move {peer} into pid {pid}'s namespace")))?;
    let inside = port.clone();
    in_namespace(
        pid,
        move || async move { configure_port(&peer, &inside).await },
    )
    .await
}

/// Give the namespace of process `pid` an `eth0` with `addr` on the gateway
/// bridge and a default route via the gateway. `host_if` names the host end
/// of the veth (at most 15 bytes, unique per task).
pub async fn attach(pid: u32, gw: &Gateway, addr: Ipv4Addr, host_if: &str) -> Result<()> {
    if !gw.addr.contains(&addr) {
        return Err(SandboxError::OutsideSubnet {
            addr,
            subnet: gw.addr.trunc(),
        });
    }
    let port = Port {
        bridge: gw.bridge.clone(),
        host_if: host_if.to_string(),
        name: "eth0".into(),
        addr: Ipv4Net::new(addr, gw.addr.prefix_len()).expect("prefix comes from a valid net"),
        mac: None,
        mtu: None,
        default_via: Some(gw.addr.addr()),
        isolated: true,
    };
    attach_port(pid, &port).await
}

/// Remove the host end of a task's veth (the peer goes with it). Missing is fine.
pub async fn detach(host_if: &str) -> Result<()> {
    let handle = connect()?;
    if let Some(index) = link_index(&handle, host_if).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(nl(format!("delete {host_if}")))?;
    }
    Ok(())
}

/// Inside the task's namespace: rename the peer, give it its MAC and
/// address, bring it and lo up, and route through the gateway if asked.
async fn configure_port(peer: &str, port: &Port) -> Result<()> {
    let handle = connect()?;
    let index = existing_link(&handle, peer).await?;
    let mut set = handle.link().set(index).name(port.name.clone());
    if let Some(mac) = port.mac {
        set = set.address(mac.to_vec());
    }
    set.execute()
        .await
        .map_err(nl(format!("rename to {}", port.name)))?;
    handle
        .address()
        .add(index, IpAddr::V4(port.addr.addr()), port.addr.prefix_len())
        .execute()
        .await
        .map_err(nl(format!("add {} to {}", port.addr, port.name)))?;
    handle
        .link()
        .set(index)
        .up()
        .execute()
        .await
        .map_err(nl(format!("bring up {}", port.name)))?;
    if let Some(lo) = link_index(&handle, "lo").await? {
        handle
            .link()
            .set(lo)
            .up()
            .execute()
            .await
            .map_err(nl("bring up lo"))?;
    }
    if let Some(gateway) = port.default_via {
        handle
            .route()
            .add()
            .v4()
            .gateway(gateway)
            .execute()
            .await
            .map_err(nl(format!("add default route via {gateway}")))?;
    }
    Ok(())
}

/// Run `f` on a dedicated thread that has entered the network namespace of
/// `pid`. A fresh thread is used because `setns` changes the calling thread
/// for good, and runtime worker threads must stay in the node's namespace.
pub async fn in_namespace<F, Fut, T>(pid: u32, f: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|source| SandboxError::Namespace { pid, source })?;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                SandboxError::Namespace {
                    pid,
                    source: std::io::Error::from(e),
                }
            })?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(SandboxError::Connect)?;
            rt.block_on(f())
        })();
        let _ = tx.send(result);
    });
    rx.await.unwrap_or_else(|_| {
        Err(SandboxError::Namespace {
            pid,
            source: std::io::Error::other("namespace worker thread panicked"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_takes_first_host_and_tasks_get_the_rest() {
        let gw = Gateway::for_subnet("swgw0", "198.19.1.0/24".parse().unwrap());
        assert_eq!(gw.addr.to_string(), "198.19.1.1/24");
        let addrs: Vec<_> = gw.task_addrs().take(2).collect();
        assert_eq!(
            addrs,
            vec![Ipv4Addr::new(198, 19, 1, 2), Ipv4Addr::new(198, 19, 1, 3)]
        );
        assert_eq!(gw.task_addrs().count(), 253);
    }
}
