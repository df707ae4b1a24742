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
    #[error("address {addr} is not inside gateway subnet {subnet}")]
    OutsideSubnet { addr: Ipv4Addr, subnet: Ipv4Net },
}

type Result<T> = std::result::Result<T, SandboxError>;

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> SandboxError {
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

fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(SandboxError::Connect)?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
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
async fn existing_link(handle: &Handle, name: &str) -> Result<u32> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| SandboxError::NoLink(name.to_string()))
}

/// Create the gateway bridge in the current namespace if it is missing, give
/// it its address and bring it up. Safe to call repeatedly.
pub async fn ensure_bridge(gw: &Gateway) -> Result<()> {
    let handle = connect()?;
    let index = match link_index(&handle, &gw.bridge).await? {
        Some(i) => i,
        None => {
            handle
                .link()
                .add()
                .bridge(gw.bridge.clone())
                .execute()
                .await
                .map_err(nl(format!("create bridge {}", gw.bridge)))?;
            existing_link(&handle, &gw.bridge).await?
        }
    };
    let existing: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list bridge addresses"))?;
    let has_addr = existing.iter().any(|m| {
        m.attributes.iter().any(|a| {
            matches!(a, netlink_packet_route::address::AddressAttribute::Address(IpAddr::V4(v)) if *v == gw.addr.addr())
        })
    });
    if !has_addr {
        handle
            .address()
            .add(index, IpAddr::V4(gw.addr.addr()), gw.addr.prefix_len())
            .execute()
            .await
            .map_err(nl(format!("add {} to {}", gw.addr, gw.bridge)))?;
    }
    handle
        .link()
        .set(index)
        .up()
        .execute()
        .await
        .map_err(nl(format!("bring up {}", gw.bridge)))
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
    let handle = connect()?;
    // A half-done earlier attempt may have left the host end behind.
    detach(host_if).await?;
    let peer = format!("{host_if}p");
    handle
        .link()
        .add()
        .veth(host_if.to_string(), peer.clone())
        .execute()
        .await
        .map_err(nl(format!("create veth {host_if}")))?;
    let bridge = existing_link(&handle, &gw.bridge).await?;
    let host = existing_link(&handle, host_if).await?;
    let peer_index = existing_link(&handle, &peer).await?;
    handle
        .link()
        .set(host)
        .controller(bridge)
        .up()
        .execute()
        .await
        .map_err(nl(format!("attach {host_if} to {}", gw.bridge)))?;
    handle
        .link()
        .set(peer_index)
        .setns_by_pid(pid)
        .execute()
        .await
        .map_err(nl(format!("move {peer} into pid {pid}'s namespace")))?;

    let (prefix, gateway) = (gw.addr.prefix_len(), gw.addr.addr());
    in_namespace(pid, move || async move {
        configure_inside(&peer, addr, prefix, gateway).await
    })
    .await
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

/// Inside the task's namespace: rename the peer to eth0, address it, bring it
/// and lo up, and route everything through the gateway.
async fn configure_inside(peer: &str, addr: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<()> {
    let handle = connect()?;
    let index = existing_link(&handle, peer).await?;
    handle
        .link()
        .set(index)
        .name("eth0".into())
        .execute()
        .await
        .map_err(nl("rename to eth0"))?;
    handle
        .address()
        .add(index, IpAddr::V4(addr), prefix)
        .execute()
        .await
        .map_err(nl(format!("add {addr}/{prefix} to eth0")))?;
    handle
        .link()
        .set(index)
        .up()
        .execute()
        .await
        .map_err(nl("bring up eth0"))?;
    if let Some(lo) = link_index(&handle, "lo").await? {
        handle
            .link()
            .set(lo)
            .up()
            .execute()
            .await
            .map_err(nl("bring up lo"))?;
    }
    handle
        .route()
        .add()
        .v4()
        .gateway(gateway)
        .execute()
        .await
        .map_err(nl(format!("add default route via {gateway}")))
}

/// Run `f` on a dedicated thread that has entered the network namespace of
/// `pid`. A fresh thread is used because `setns` changes the calling thread
/// for good, and runtime worker threads must stay in the node's namespace.
async fn in_namespace<F, Fut>(pid: u32, f: F) -> Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
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
