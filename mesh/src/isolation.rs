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

pub const CHAIN: &str = "SWARM-FORWARD";

/// The batch for a node whose overlay bridges are `bridges` and whose task
/// gateway bridge is `gateway`. `prefix` matches every overlay bridge.
pub fn batch(bridges: &[String], prefix: &str, gateway: &str) -> String {
    let mut b = format!("*filter\n:{CHAIN} - [0:0]\n");
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

/// Write the chain and make FORWARD jump to it first.
pub fn sync(bridges: &[String], prefix: &str, gateway: &str) -> Result<(), DataplaneError> {
    restore(&batch(bridges, prefix, gateway))?;
    if ipt(&["-t", "filter", "-C", "FORWARD", "-j", CHAIN]).is_err() {
        ipt(&["-t", "filter", "-I", "FORWARD", "1", "-j", CHAIN])?;
    }
    Ok(())
}

/// Remove the chain (the node left the swarm).
pub fn clear() -> Result<(), DataplaneError> {
    while ipt(&["-t", "filter", "-D", "FORWARD", "-j", CHAIN]).is_ok() {}
    if ipt(&["-t", "filter", "-F", CHAIN]).is_ok() {
        ipt(&["-t", "filter", "-X", CHAIN])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_stays_on_its_bridge_and_never_enters_an_overlay_from_another() {
        let b = batch(&["swbr4096".into(), "swbr4097".into()], "swbr", "swgw0");
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
