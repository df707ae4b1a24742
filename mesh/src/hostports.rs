//! Host-mode published ports (`--publish mode=host,published=P,target=T`):
//! a connection to one of this node's own addresses on port P is DNATed to
//! the task's sandbox address on port T, across the gateway bridge.
//!
//! Nothing is masqueraded: the task sees the client's real address (what
//! Swarm's ingress loses), and replies, routed back through this node, are
//! un-NATed by conntrack. All rules live in chains named `SWARM-HOSTPORTS`
//! in the nat and filter tables, rewritten whole by one atomic
//! `iptables-restore --noflush` per change; the filter chain admits the
//! forwarded traffic where the FORWARD policy drops (as Docker sets it).

use crate::dataplane::{DataplaneError, Proto};
use crate::iptables::{ipt, restore};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

pub const CHAIN: &str = "SWARM-HOSTPORTS";

/// Where each chain is jumped to from.
const HOOKS: [(&str, &str); 3] = [
    ("nat", "PREROUTING"),
    ("nat", "OUTPUT"),
    ("filter", "FORWARD"),
];

/// One published port of one task on this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub proto: Proto,
    pub published: u16,
    pub addr: Ipv4Addr,
    pub target: u16,
}

/// The restore batch after which the chains hold exactly `ports`.
/// Declaring a chain in a `--noflush` restore creates or empties it.
pub fn batch(ports: &[HostPort]) -> String {
    let mut b = format!("*nat\n:{CHAIN} - [0:0]\n");
    for p in ports {
        // Loopback is left alone: a DNATed 127.0.0.1 source cannot leave `lo`.
        let _ = writeln!(
            b,
            "-A {CHAIN} -p {proto} ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL --dport {published} -j DNAT --to-destination {addr}:{target}",
            proto = p.proto.name(),
            published = p.published,
            addr = p.addr,
            target = p.target,
        );
    }
    let _ = write!(b, "COMMIT\n*filter\n:{CHAIN} - [0:0]\n");
    for p in ports {
        let (proto, addr, target) = (p.proto.name(), p.addr, p.target);
        let _ = writeln!(
            b,
            "-A {CHAIN} -d {addr}/32 -p {proto} --dport {target} -j ACCEPT"
        );
        let _ = writeln!(
            b,
            "-A {CHAIN} -s {addr}/32 -p {proto} --sport {target} -j ACCEPT"
        );
    }
    b.push_str("COMMIT\n");
    b
}

/// Make this node publish exactly `ports`.
pub fn sync(ports: &[HostPort]) -> Result<(), DataplaneError> {
    restore(&batch(ports))?;
    for (table, hook) in HOOKS {
        if ipt(&["-t", table, "-C", hook, "-j", CHAIN]).is_err() {
            ipt(&["-t", table, "-I", hook, "1", "-j", CHAIN])?;
        }
    }
    Ok(())
}

/// Remove every host-port rule and chain (the node left the swarm).
pub fn clear() -> Result<(), DataplaneError> {
    for (table, hook) in HOOKS {
        while ipt(&["-t", table, "-D", hook, "-j", CHAIN]).is_ok() {}
    }
    for table in ["nat", "filter"] {
        if ipt(&["-t", table, "-F", CHAIN]).is_ok() {
            ipt(&["-t", table, "-X", CHAIN])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_dnats_local_addresses_to_each_task_and_admits_the_forwarding() {
        let b = batch(&[HostPort {
            proto: Proto::Udp,
            published: 5353,
            addr: Ipv4Addr::new(198, 19, 3, 2),
            target: 53,
        }]);
        assert!(b.starts_with("*nat\n:SWARM-HOSTPORTS - [0:0]\n"), "{b}");
        assert!(b.contains(
            "-A SWARM-HOSTPORTS -p udp ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL --dport 5353 -j DNAT --to-destination 198.19.3.2:53\n"
        ), "{b}");
        assert!(b.contains("*filter\n:SWARM-HOSTPORTS - [0:0]\n"), "{b}");
        assert!(
            b.contains("-d 198.19.3.2/32 -p udp --dport 53 -j ACCEPT"),
            "{b}"
        );
        assert!(
            b.contains("-s 198.19.3.2/32 -p udp --sport 53 -j ACCEPT"),
            "{b}"
        );
        assert_eq!(b.matches("COMMIT\n").count(), 2);
        // No ports: both chains are declared, hence emptied.
        assert_eq!(
            batch(&[]),
            "*nat\n:SWARM-HOSTPORTS - [0:0]\nCOMMIT\n*filter\n:SWARM-HOSTPORTS - [0:0]\nCOMMIT\n"
        );
    }
}
