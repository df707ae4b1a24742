//! Overlay networks on a node: one bridge and one VXLAN device per network,
//! with forwarding (FDB) and neighbour entries written from cluster state.
//! There is no multicast and no learning: the VXLAN device answers ARP from
//! its neighbour table itself (`proxy`), so ARP never crosses the underlay
//! and the gateway address, which every node's bridge carries, stays local.
//!
//! Service VIPs live on loopback (labelled `lo:swvip`), so a node answers
//! ARP for them on its bridges and tasks send VIP traffic to their port,
//! where the east-west load balancer rewrites it.

use crate::sandbox::{connect, ensure_bridge_with, existing_link, link_index, nl};
use crate::sandbox::{Result, SandboxError};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlag};
use netlink_packet_route::AddressFamily;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

/// VXLAN's UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN adds to every frame: outer IPv4, UDP, VXLAN and Ethernet.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The label of the loopback addresses that are this node's VIPs.
pub const VIP_LABEL: &str = "lo:swvip";
/// Every overlay bridge's name starts with this.
pub const BRIDGE_PREFIX: &str = "swbr";
const VXLAN_PREFIX: &str = "swvx";

/// One overlay network as this node builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay {
    pub vni: u32,
    /// The gateway address with the subnet's prefix: the bridge's address.
    pub gateway: Ipv4Net,
    /// This node's underlay address: the VXLAN source.
    pub local: Ipv4Addr,
    /// The MTU inside the overlay: the underlay's minus `VXLAN_OVERHEAD`.
    pub mtu: u32,
    /// This node's own address on the network (with the prefix), which the
    /// bridge carries besides the gateway, once allocated.
    pub node_addr: Option<Ipv4Net>,
}

/// The MAC of the overlay bridges of the node at underlay address `node`.
pub fn bridge_mac_of(node: Ipv4Addr) -> [u8; 6] {
    let o = node.octets();
    [0x02, 0x43, o[0], o[1], o[2], o[3]]
}

impl Overlay {
    /// The bridge's MAC: fixed, because a bridge that takes its ports' MACs
    /// changes address as tasks come and go and strands their ARP entries;
    /// and unique per node, because routed frames cross the VXLAN with it
    /// as their source.
    pub fn bridge_mac(&self) -> [u8; 6] {
        bridge_mac_of(self.local)
    }

    pub fn bridge(&self) -> String {
        format!("{BRIDGE_PREFIX}{}", self.vni)
    }
    pub fn vxlan(&self) -> String {
        format!("{VXLAN_PREFIX}{}", self.vni)
    }
}

/// An address on another node (a task's, or that node's bridge): where
/// frames for it are tunnelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
    pub node: Ipv4Addr,
}

/// The interface that carries `addr`, with its MTU: the underlay.
pub async fn underlay_link(addr: Ipv4Addr) -> Result<(String, u32)> {
    let handle = connect()?;
    let addrs: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    let index = addrs
        .iter()
        .find(|m| {
            m.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(v)) if *v == addr))
        })
        .map(|m| m.header.index)
        .ok_or_else(|| SandboxError::NoLink(format!("with address {addr}")))?;
    let mut links = handle.link().get().match_index(index).execute();
    let msg = links
        .try_next()
        .await
        .map_err(nl("get the underlay link"))?
        .ok_or_else(|| SandboxError::NoLink(format!("index {index}")))?;
    let mut name = String::new();
    let mut mtu = 1500;
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n,
            LinkAttribute::Mtu(m) => mtu = m,
            _ => {}
        }
    }
    Ok((name, mtu))
}

/// Make the network's bridge and VXLAN device exist, configured and up.
/// Safe to call repeatedly.
pub async fn ensure(net: &Overlay) -> Result<()> {
    let bridge = ensure_bridge_with(
        &net.bridge(),
        net.gateway,
        Some(net.bridge_mac()),
        Some(net.mtu),
    )
    .await?;
    if let Some(addr) = net.node_addr {
        crate::sandbox::ensure_addr(bridge, addr).await?;
    }
    let handle = connect()?;
    let vx = match link_index(&handle, &net.vxlan()).await? {
        Some(i) => i,
        None => {
            handle
                .link()
                .add()
                .vxlan(net.vxlan(), net.vni)
                .local(net.local)
                .port(VXLAN_PORT)
                .learning(false)
                .proxy(true)
                .execute()
                .await
                .map_err(nl(format!(
                    "create VXLAN {} (VNI {})",
                    net.vxlan(),
                    net.vni
                )))?;
            existing_link(&handle, &net.vxlan()).await?
        }
    };
    handle
        .link()
        .set(vx)
        .mtu(net.mtu)
        .controller(bridge)
        .up()
        .execute()
        .await
        .map_err(nl(format!("attach {} to {}", net.vxlan(), net.bridge())))
}

/// Make the network's FDB and neighbour entries exactly `peers`.
pub async fn sync_peers(net: &Overlay, peers: &[Peer]) -> Result<()> {
    let handle = connect()?;
    let vx = existing_link(&handle, &net.vxlan()).await?;
    let want: BTreeSet<Peer> = peers.iter().copied().collect();
    let want_macs: BTreeSet<[u8; 6]> = want.iter().map(|p| p.mac).collect();

    // Drop entries of peers that went away.
    let mut req = handle.neighbours().get();
    req.message_mut().header.family = AddressFamily::Bridge;
    let fdb: Vec<_> = req.execute().try_collect().await.map_err(nl("list FDB"))?;
    for m in fdb.into_iter().filter(|m| m.header.ifindex == vx) {
        let mac = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLocalAddress(l) if l.len() == 6 => {
                Some(<[u8; 6]>::try_from(l.as_slice()).expect("6 bytes"))
            }
            _ => None,
        });
        if mac.is_some_and(|mac| !want_macs.contains(&mac)) {
            let _ = handle.neighbours().del(m).execute().await;
        }
    }
    let neigh: Vec<_> = handle
        .neighbours()
        .get()
        .set_family(rtnetlink::IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list neighbours"))?;
    for m in neigh.into_iter().filter(|m| m.header.ifindex == vx) {
        let ip = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        if ip.is_some_and(|ip| !want.iter().any(|p| p.addr == ip)) {
            let _ = handle.neighbours().del(m).execute().await;
        }
    }

    for p in &want {
        let mac = p.mac;
        handle
            .neighbours()
            .add_bridge(vx, &mac)
            .flags(vec![NeighbourFlag::Own])
            .destination(IpAddr::V4(p.node))
            .replace()
            .execute()
            .await
            .map_err(nl(format!("FDB entry for {} via {}", p.addr, p.node)))?;
        handle
            .neighbours()
            .add(vx, IpAddr::V4(p.addr))
            .link_local_address(&mac)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("neighbour entry for {}", p.addr)))?;
    }
    Ok(())
}

/// Remove the devices of every overlay whose VNI is not in `keep`.
pub async fn remove_except(keep: &[u32]) -> Result<()> {
    let handle = connect()?;
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links"))?;
    for m in links {
        let Some(name) = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        }) else {
            continue;
        };
        let vni = name
            .strip_prefix(VXLAN_PREFIX)
            .or_else(|| name.strip_prefix(BRIDGE_PREFIX))
            .and_then(|v| v.parse::<u32>().ok());
        if vni.is_some_and(|v| !keep.contains(&v)) {
            handle
                .link()
                .del(m.header.index)
                .execute()
                .await
                .map_err(nl(format!("delete {name}")))?;
        }
    }
    Ok(())
}

/// Make loopback hold exactly `vips`, each as a /32 labelled
/// `VIP_LABEL`, so the node answers ARP for them on its bridges.
pub async fn sync_vips(vips: &[Ipv4Addr]) -> Result<()> {
    let handle = connect()?;
    let lo = existing_link(&handle, "lo").await?;
    let have: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(lo)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list VIPs"))?;
    let mut held = BTreeSet::new();
    for m in have {
        let ours = m
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Label(l) if l == VIP_LABEL));
        if !ours {
            continue;
        }
        let ip = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(v)) => Some(*v),
            _ => None,
        });
        match ip {
            Some(ip) if vips.contains(&ip) => {
                held.insert(ip);
            }
            _ => {
                let _ = handle.address().del(m).execute().await;
            }
        }
    }
    for vip in vips.iter().filter(|v| !held.contains(v)) {
        let mut req = handle.address().add(lo, IpAddr::V4(*vip), 32);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Label(VIP_LABEL.into()));
        req.execute().await.map_err(nl(format!("add VIP {vip}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_fit_the_kernel_limit_and_carry_the_vni() {
        let net = Overlay {
            vni: 16_777_215,
            gateway: "10.0.1.1/24".parse().unwrap(),
            local: Ipv4Addr::new(198, 18, 0, 11),
            mtu: 1450,
            node_addr: None,
        };
        assert_eq!(net.vxlan(), "swvx16777215");
        assert!(net.bridge().len() <= 15 && net.vxlan().len() <= 15);
    }
}
