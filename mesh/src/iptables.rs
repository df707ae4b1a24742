//! iptables mode: the same reachability as the XDP mode, built from nat-table
//! rules in the style of kube-proxy, and written in one atomic
//! `iptables-restore --noflush` batch per sync, however many services.
//!
//! Published ports answer on the node's own addresses (`addrtype LOCAL`);
//! VIPs on their address. A new connection picks a backend at random among
//! the active ones (draining backends keep their connections through the
//! kernel's conntrack). Connections sent to a backend on another node are
//! masqueraded so that replies come back through this node: this mode loses
//! the client's address for remote backends, which the XDP mode keeps.

use crate::dataplane::{BackendState, Dataplane, DataplaneError, Dump, LbService};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Chain every owned chain hangs from, jumped to from PREROUTING and OUTPUT.
const SERVICES: &str = "SWARM-SERVICES";
const POSTROUTING: &str = "SWARM-POSTROUTING";
const PREFIX: &str = "SWARM-";
/// Packet mark for connections to remote backends, which need masquerading.
const MASQ_MARK: &str = "0x4000/0x4000";

fn ipt(args: &[&str]) -> Result<String, DataplaneError> {
    let out = Command::new("iptables").args(args).output().map_err(|e| {
        DataplaneError::Iptables(format!("cannot run iptables: {e}; install iptables"))
    })?;
    if !out.status.success() {
        return Err(DataplaneError::Iptables(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Insert a jump unless it is there already.
fn ensure_jump(chain: &str, target: &str) -> Result<(), DataplaneError> {
    if ipt(&["-t", "nat", "-C", chain, "-j", target]).is_err() {
        ipt(&["-t", "nat", "-I", chain, "1", "-j", target])?;
    }
    Ok(())
}

/// Whether `addr` belongs to this network namespace: binding to it works.
fn is_local(addr: Ipv4Addr) -> bool {
    std::net::UdpSocket::bind((addr, 0)).is_ok()
}

pub struct IptablesDataplane;

impl IptablesDataplane {
    /// Create the owned chains and hook them into the nat table.
    pub fn attach() -> Result<IptablesDataplane, DataplaneError> {
        let dp = IptablesDataplane;
        for chain in [SERVICES, POSTROUTING] {
            if ipt(&["-t", "nat", "-nL", chain]).is_err() {
                ipt(&["-t", "nat", "-N", chain])?;
            }
        }
        ensure_jump("PREROUTING", SERVICES)?;
        ensure_jump("OUTPUT", SERVICES)?;
        ensure_jump("POSTROUTING", POSTROUTING)?;
        Ok(dp)
    }

    /// Remove every owned rule and chain.
    pub fn detach() -> Result<(), DataplaneError> {
        for (chain, target) in [
            ("PREROUTING", SERVICES),
            ("OUTPUT", SERVICES),
            ("POSTROUTING", POSTROUTING),
        ] {
            while ipt(&["-t", "nat", "-D", chain, "-j", target]).is_ok() {}
        }
        let chains = owned_chains()?;
        for c in &chains {
            ipt(&["-t", "nat", "-F", c])?;
        }
        for c in &chains {
            ipt(&["-t", "nat", "-X", c])?;
        }
        Ok(())
    }

    /// The restore batch that makes the owned chains hold exactly `services`.
    /// `local` tells whether a node address is this node's.
    pub fn batch(
        &self,
        services: &[LbService],
        existing: &[String],
        local: &dyn Fn(Ipv4Addr) -> bool,
    ) -> String {
        let mut chains = vec![SERVICES.to_string(), POSTROUTING.to_string()];
        let mut rules = String::new();
        let _ = writeln!(
            rules,
            "-A {POSTROUTING} -m mark --mark {MASQ_MARK} -j MASQUERADE"
        );
        for svc in services {
            let proto = svc.proto.name();
            let active: Vec<_> = svc
                .backends
                .iter()
                .filter(|b| b.state == BackendState::Active)
                .collect();
            let n = active.len();
            if n == 0 {
                // No rule: the port falls to the node's own stack, which
                // refuses it (TCP reset, ICMP port unreachable).
                continue;
            }
            let svc_chain = format!("SWARM-SVC-{}", svc.id);
            chains.push(svc_chain.clone());
            let comment = format!("-m comment --comment \"svc:{}\"", svc.id);
            if let Some(vip) = svc.vip {
                let _ = writeln!(
                    rules,
                    "-A {SERVICES} -d {}/32 -p {proto} --dport {} {comment} -j {svc_chain}",
                    vip.ip(),
                    vip.port()
                );
            }
            if let Some(port) = svc.published_port {
                let _ = writeln!(rules, "-A {SERVICES} -m addrtype --dst-type LOCAL -p {proto} --dport {port} {comment} -j {svc_chain}");
            }
            for (k, b) in active.iter().enumerate() {
                let sep = format!("SWARM-SEP-{}-{k}", svc.id);
                chains.push(sep.clone());
                let pick = if k + 1 < n {
                    format!(
                        "-m statistic --mode random --probability {:.10} ",
                        1.0 / (n - k) as f64
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(rules, "-A {svc_chain} {pick}-j {sep}");
                if !local(b.node) {
                    let _ = writeln!(rules, "-A {sep} -j MARK --set-xmark {MASQ_MARK}");
                }
                let _ = writeln!(
                    rules,
                    "-A {sep} -p {proto} -j DNAT --to-destination {}",
                    b.addr
                );
            }
        }
        let mut out = String::from("*nat\n");
        for c in &chains {
            // Declaring a chain with --noflush creates or empties it.
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        // Chains from an earlier sync that are gone now: empty, then delete.
        let stale: Vec<&String> = existing.iter().filter(|c| !chains.contains(c)).collect();
        for c in &stale {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        out.push_str(&rules);
        for c in &stale {
            let _ = writeln!(out, "-X {c}");
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// Owned nat chains, as `iptables-save` lists them.
fn owned_chains() -> Result<Vec<String>, DataplaneError> {
    let save = ipt_save()?;
    Ok(save
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with(PREFIX))
        .map(str::to_string)
        .collect())
}

fn ipt_save() -> Result<String, DataplaneError> {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .map_err(|e| DataplaneError::Iptables(format!("cannot run iptables-save: {e}")))?;
    if !out.status.success() {
        return Err(DataplaneError::Iptables(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn restore(batch: &str) -> Result<(), DataplaneError> {
    let mut child = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DataplaneError::Iptables(format!("cannot run iptables-restore: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(batch.as_bytes())
        .map_err(|e| DataplaneError::Iptables(format!("writing the restore batch: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| DataplaneError::Iptables(format!("iptables-restore: {e}")))?;
    if !out.status.success() {
        return Err(DataplaneError::Iptables(format!(
            "iptables-restore refused the batch (nothing was changed): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Dataplane for IptablesDataplane {
    fn sync(&mut self, services: &[LbService]) -> Result<(), DataplaneError> {
        for svc in services {
            svc.validate(usize::MAX)?;
        }
        let existing = owned_chains()?;
        restore(&self.batch(services, &existing, &is_local))
    }

    fn dump(&mut self) -> Result<Dump, DataplaneError> {
        let save = ipt_save()?;
        let rules = save
            .lines()
            .filter(|l| l.contains(PREFIX))
            .map(str::to_string)
            .collect();
        Ok(Dump {
            mode: "iptables".into(),
            attach_points: vec![
                "nat/PREROUTING".into(),
                "nat/OUTPUT".into(),
                "nat/POSTROUTING".into(),
            ],
            rules,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{Backend, Proto};

    fn svc(backends: &[(&str, &str, BackendState)]) -> LbService {
        LbService {
            id: 7,
            name: "web".into(),
            proto: Proto::Tcp,
            vip: Some("10.0.0.5:80".parse().unwrap()),
            published_port: Some(8000),
            backends: backends
                .iter()
                .map(|(a, n, s)| Backend {
                    addr: a.parse().unwrap(),
                    node: n.parse().unwrap(),
                    state: *s,
                })
                .collect(),
            declared_backends: None,
        }
    }

    #[test]
    fn batch_spreads_over_active_backends_and_masquerades_remote_ones() {
        let dp = IptablesDataplane;
        let local = |a: Ipv4Addr| a == Ipv4Addr::new(198, 18, 0, 11);
        let s = svc(&[
            ("10.0.1.2:8080", "198.18.0.11", BackendState::Active),
            ("10.0.2.2:8080", "198.18.0.12", BackendState::Active),
            ("10.0.3.2:8080", "198.18.0.13", BackendState::Draining),
        ]);
        let b = dp.batch(&[s], &[], &local);
        assert!(b.starts_with("*nat\n") && b.ends_with("COMMIT\n"));
        assert!(b.contains("-d 10.0.0.5/32 -p tcp --dport 80"));
        assert!(b.contains("--dst-type LOCAL -p tcp --dport 8000"));
        assert!(b.contains(
            "-A SWARM-SVC-7 -m statistic --mode random --probability 0.5000000000 -j SWARM-SEP-7-0"
        ));
        assert!(b.contains("-A SWARM-SVC-7 -j SWARM-SEP-7-1"));
        assert!(
            !b.contains("10.0.3.2"),
            "draining backends get no new connections"
        );
        assert!(
            !b.contains("-A SWARM-SEP-7-0 -j MARK"),
            "local backend keeps the client address"
        );
        assert!(b.contains("-A SWARM-SEP-7-1 -j MARK --set-xmark 0x4000/0x4000"));
    }

    #[test]
    fn batch_deletes_chains_of_removed_services() {
        let b = IptablesDataplane.batch(
            &[],
            &[
                "SWARM-SVC-3".into(),
                "SWARM-SEP-3-0".into(),
                SERVICES.into(),
            ],
            &|_| true,
        );
        assert!(b.contains(":SWARM-SVC-3 - [0:0]") && b.contains("-X SWARM-SVC-3"));
        assert!(b.contains("-X SWARM-SEP-3-0"));
        assert!(!b.contains("-X SWARM-SERVICES"));
    }
}
