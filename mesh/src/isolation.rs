//! Keeping overlay networks apart on a node. The node routes between its
//! bridges (it must: VIP traffic is routed back into the same network, and
//! published ports are routed from the underlay), so one filter chain,
//! `SWARM-FORWARD`, decides what crosses: traffic stays within its own
//! overlay bridge, nothing goes from one overlay to another or from the
//! task gateway into an overlay, and the rest of the swarm's traffic is
//! admitted where the FORWARD policy drops (as Docker sets it). Rewritten
//! whole by one `iptables-restore --noflush` when the node's networks
//! change.

use crate::dataplane::DataplaneError;
use crate::iptables::{ipt, restore};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

pub const CHAIN: &str = "SWARM-FORWARD";
/// VXLAN is accepted from the swarm's nodes only (INPUT).
pub const INPUT: &str = "SWARM-INPUT";

/// The batch for a node whose overlay bridges are `bridges` and whose task
/// gateway bridge is `gateway`. `prefix` matches every overlay bridge;
/// `nodes` are the underlay addresses VXLAN may come from.
pub fn batch(bridges: &[String], prefix: &str, gateway: &str, nodes: &[Ipv4Addr]) -> String {
    let mut b = format!("*filter\n:{CHAIN} - [0:0]\n:{INPUT} - [0:0]\n");
    let vxlan = crate::overlay::VXLAN_PORT;
    for n in nodes {
        let _ = writeln!(b, "-A {INPUT} -s {n}/32 -p udp --dport {vxlan} -j RETURN");
    }
    let _ = writeln!(b, "-A {INPUT} -p udp --dport {vxlan} -j DROP");
    for br in bridges {
        let _ = writeln!(b, "-A {CHAIN} -i {br} -o {br} -j ACCEPT");
    }
    let _ = writeln!(b, "-A {CHAIN} -i {prefix}+ -o {prefix}+ -j DROP");
    let _ = writeln!(b, "-A {CHAIN} -i {gateway} -o {prefix}+ -j DROP");
    for dir in ["-i", "-o"] {
        let _ = writeln!(b, "-A {CHAIN} {dir} {prefix}+ -j ACCEPT");
        let _ = writeln!(b, "-A {CHAIN} {dir} {gateway} -j ACCEPT");
    }
    b.push_str("COMMIT\n");
    b
}

/// Write the chains and make FORWARD and INPUT jump to them first.
pub fn sync(
    bridges: &[String],
    prefix: &str,
    gateway: &str,
    nodes: &[Ipv4Addr],
) -> Result<(), DataplaneError> {
    restore(&batch(bridges, prefix, gateway, nodes))?;
    for (hook, chain) in [("FORWARD", CHAIN), ("INPUT", INPUT)] {
        if ipt(&["-t", "filter", "-C", hook, "-j", chain]).is_err() {
            ipt(&["-t", "filter", "-I", hook, "1", "-j", chain])?;
        }
    }
    Ok(())
}

/// Remove the chains (the node left the swarm).
pub fn clear() -> Result<(), DataplaneError> {
    for (hook, chain) in [("FORWARD", CHAIN), ("INPUT", INPUT)] {
        while ipt(&["-t", "filter", "-D", hook, "-j", chain]).is_ok() {}
        if ipt(&["-t", "filter", "-F", chain]).is_ok() {
            ipt(&["-t", "filter", "-X", chain])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_stays_on_its_bridge_and_never_enters_an_overlay_from_another() {
        let node: Ipv4Addr = "198.18.0.12".parse().unwrap();
        let b = batch(
            &["swbr4096".into(), "swbr4097".into()],
            "swbr",
            "swgw0",
            &[node],
        );
        assert!(b.contains("-A SWARM-INPUT -s 198.18.0.12/32 -p udp --dport 4789 -j RETURN\n-A SWARM-INPUT -p udp --dport 4789 -j DROP\n"), "{b}");
        let lines: Vec<&str> = b.lines().collect();
        let pos = |rule: &str| {
            lines
                .iter()
                .position(|l| *l == format!("-A {CHAIN} {rule}"))
                .unwrap_or_else(|| panic!("missing {rule} in {b}"))
        };
        let same = pos("-i swbr4097 -o swbr4097 -j ACCEPT");
        let cross = pos("-i swbr+ -o swbr+ -j DROP");
        let from_gw = pos("-i swgw0 -o swbr+ -j DROP");
        let rest = pos("-i swbr+ -j ACCEPT");
        assert!(same < cross && cross < rest && from_gw < rest);
        assert!(b.starts_with("*filter\n") && b.ends_with("COMMIT\n"));
    }
}
