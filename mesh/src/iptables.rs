//! iptables mode: the same reachability as the XDP mode, built from nat-table
//! rules in the style of kube-proxy, and written in one atomic
//! `iptables-restore --noflush` batch per sync, however many services: the
//! first sync writes everything, later ones only the services that changed
//! (kube-proxy's partial sync), so this mode is measured at its best.
//!
//! Published ports answer on the node's own addresses (one `addrtype LOCAL`
//! check, then a rule per port); VIPs on their address. A new connection picks a backend at random among
//! the active ones (draining backends keep their connections through the
//! kernel's conntrack): one chain per service, one DNAT rule per backend.
//! Connections DNATed out of the underlay interface (to a backend on another
//! node) are masqueraded so that replies come back through this node: this
//! mode loses the client's address for remote backends, which the XDP mode
//! keeps. In a cluster, remote backends are reached over the overlay, and
//! connections to them (and to any VIP, whose replies would otherwise go
//! straight back over the bridge) are SNATed to the node's address.
//!
//! A VIP or backend with port 0 takes every port (Swarm's VIPs do).

use crate::dataplane::{BackendState, Dataplane, DataplaneError, Dump, LbService};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// Chain every owned chain hangs from, jumped to from PREROUTING and OUTPUT.
/// It holds two fixed rules: VIPs first, then, for packets to this node's
/// own addresses, the published ports (kube-proxy's KUBE-NODEPORTS layout:
/// one address-type check per packet, not one per port).
const SERVICES: &str = "SWARM-SERVICES";
/// A rule per VIP frontend.
const VIPS: &str = "SWARM-VIPS";
/// A rule per published port, matched on the port alone.
const NODEPORTS: &str = "SWARM-NODEPORTS";
const POSTROUTING: &str = "SWARM-POSTROUTING";
/// Per-sync SNAT rules, jumped to from `POSTROUTING`.
const SNAT: &str = "SWARM-SNAT";
const PREFIX: &str = "SWARM-";

pub(crate) fn ipt(args: &[&str]) -> Result<String, DataplaneError> {
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

#[derive(Default)]
pub struct IptablesDataplane {
    /// This node's address, for a data plane that SNATs connections to VIPs
    /// and to remote backends (a cluster node); `None` only masquerades
    /// what leaves the underlay.
    local: Option<std::net::Ipv4Addr>,
    /// The rules of the last sync, so the next writes only what changed;
    /// `None` until a first (whole) sync, and after a failed one.
    applied: Option<BTreeMap<u32, ServiceRules>>,
}

impl IptablesDataplane {
    /// Create the owned chains and hook them into the nat table; connections
    /// DNATed out of `iface` (the underlay) get masqueraded.
    pub fn attach(iface: &str) -> Result<IptablesDataplane, DataplaneError> {
        for chain in [SERVICES, POSTROUTING, SNAT] {
            if ipt(&["-t", "nat", "-nL", chain]).is_err() {
                ipt(&["-t", "nat", "-N", chain])?;
            }
        }
        ipt(&["-t", "nat", "-F", POSTROUTING])?;
        ipt(&[
            "-t",
            "nat",
            "-A",
            POSTROUTING,
            "-o",
            iface,
            "-m",
            "conntrack",
            "--ctstate",
            "DNAT",
            "-j",
            "MASQUERADE",
        ])?;
        ipt(&["-t", "nat", "-A", POSTROUTING, "-j", SNAT])?;
        ensure_jump("PREROUTING", SERVICES)?;
        ensure_jump("OUTPUT", SERVICES)?;
        ensure_jump("POSTROUTING", POSTROUTING)?;
        Ok(IptablesDataplane::default())
    }

    /// A data plane for a node whose address is `local` (see the field).
    pub fn new(local: Option<std::net::Ipv4Addr>) -> IptablesDataplane {
        IptablesDataplane {
            local,
            applied: None,
        }
    }

    /// Remove every owned rule and chain, in one restore batch (one process
    /// per chain would reload the whole nat table each time).
    pub fn detach() -> Result<(), DataplaneError> {
        for (chain, target) in [
            ("PREROUTING", SERVICES),
            ("OUTPUT", SERVICES),
            ("POSTROUTING", POSTROUTING),
        ] {
            while ipt(&["-t", "nat", "-D", chain, "-j", target]).is_ok() {}
        }
        let chains = owned_chains()?;
        if chains.is_empty() {
            return Ok(());
        }
        let mut batch = String::from("*nat\n");
        for c in &chains {
            let _ = writeln!(batch, ":{c} - [0:0]");
        }
        for c in &chains {
            let _ = writeln!(batch, "-X {c}");
        }
        batch.push_str("COMMIT\n");
        restore(&batch)
    }

    /// One service's rules, or `None` when it has no active backend (no
    /// rule: the port falls to the node's own stack, which refuses it with
    /// a TCP reset or an ICMP port unreachable).
    fn rules_for(&self, svc: &LbService) -> Option<ServiceRules> {
        let port = |p: u16| {
            if p == 0 {
                String::new()
            } else {
                format!(" --dport {p}")
            }
        };
        let proto = svc.proto.name();
        let active: Vec<_> = svc
            .backends
            .iter()
            .filter(|b| b.state == BackendState::Active)
            .collect();
        let n = active.len();
        if n == 0 {
            return None;
        }
        let chain = format!("SWARM-SVC-{}", svc.id);
        let mut r = ServiceRules {
            chain: chain.clone(),
            ..Default::default()
        };
        let comment = format!("-m comment --comment \"svc:{}\"", svc.id);
        if let Some(vip) = svc.vip {
            r.shared.push(format!(
                "-A {VIPS} -d {}/32 -p {proto}{} {comment} -j {chain}",
                vip.ip(),
                port(vip.port())
            ));
            if let Some(src) = svc.snat.or(self.local) {
                r.shared.push(format!("-A {SNAT} -p {proto} -m conntrack --ctstate DNAT --ctorigdst {}/32 {comment} -j SNAT --to-source {src}", vip.ip()));
            }
        }
        if let Some(port) = svc.published_port {
            r.shared.push(format!(
                "-A {NODEPORTS} -p {proto} --dport {port} {comment} -j {chain}"
            ));
        }
        for (k, b) in active.iter().enumerate() {
            let pick = if k + 1 < n {
                format!(
                    "-m statistic --mode random --probability {:.10} ",
                    1.0 / (n - k) as f64
                )
            } else {
                String::new()
            };
            let to = if b.addr.port() == 0 {
                b.addr.ip().to_string()
            } else {
                b.addr.to_string()
            };
            r.own.push(format!(
                "-A {chain} {pick}-p {proto} -j DNAT --to-destination {to}"
            ));
            let remote = self.local.is_some_and(|l| l != b.node);
            if let Some(src) = svc.snat.or(self.local).filter(|_| remote) {
                r.shared.push(format!("-A {SNAT} -p {proto} -m conntrack --ctstate DNAT -d {}/32 {comment} -j SNAT --to-source {src}", b.addr.ip()));
            }
        }
        Some(r)
    }

    fn rules(&self, services: &[LbService]) -> BTreeMap<u32, ServiceRules> {
        services
            .iter()
            .filter_map(|s| Some((s.id, self.rules_for(s)?)))
            .collect()
    }

    /// The whole batch: every owned chain declared (which empties it) and
    /// written again, and chains in `existing` that are no longer wanted
    /// deleted.
    pub fn batch(&self, services: &[LbService], existing: &[String]) -> String {
        full_batch(&self.rules(services), existing)
    }
}

/// What one service adds to the nat table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ServiceRules {
    /// Its own chain, which picks a backend.
    chain: String,
    /// The rules in that chain.
    own: Vec<String>,
    /// Its lines in the shared chains (`-A SWARM-VIPS ...`,
    /// `-A SWARM-NODEPORTS ...`, `-A SWARM-SNAT ...`).
    shared: Vec<String>,
}

fn full_batch(rules: &BTreeMap<u32, ServiceRules>, existing: &[String]) -> String {
    let mut chains: Vec<String> = [SERVICES, VIPS, NODEPORTS, SNAT].map(String::from).to_vec();
    chains.extend(rules.values().map(|r| r.chain.clone()));
    let mut out = String::from("*nat\n");
    for c in &chains {
        // Declaring a chain with --noflush creates or empties it.
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    // Chains from an earlier sync that are gone now: empty, then delete.
    // (The masquerade chain belongs to attach and is left alone.)
    let stale: Vec<&String> = existing
        .iter()
        .filter(|c| !chains.contains(c) && *c != POSTROUTING)
        .collect();
    for c in &stale {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    let _ = writeln!(out, "-A {SERVICES} -j {VIPS}");
    let _ = writeln!(
        out,
        "-A {SERVICES} -m addrtype --dst-type LOCAL -j {NODEPORTS}"
    );
    for r in rules.values() {
        for line in r.shared.iter().chain(&r.own) {
            let _ = writeln!(out, "{line}");
        }
    }
    for c in &stale {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    out
}

/// Services a sync may change one by one; beyond this, the whole table is
/// written again (each deleted line is a search of its chain, so deleting
/// thousands costs more than writing everything, as kube-proxy also finds).
/// Lines are appended to the shared chains in any order: a VIP rule and a
/// published-port rule never live in the same chain.
const PARTIAL_LIMIT: usize = 100;

/// How many services differ between `old` and `new`.
fn changed(old: &BTreeMap<u32, ServiceRules>, new: &BTreeMap<u32, ServiceRules>) -> usize {
    let differ = new.iter().filter(|(id, r)| old.get(id) != Some(r)).count();
    differ + old.keys().filter(|id| !new.contains_key(id)).count()
}

/// Turn the rules `before` into `after` (some or all services), the table
/// then holding `whole`: service by service, or, when too many changed,
/// by writing `whole` again.
fn write_change(
    before: &BTreeMap<u32, ServiceRules>,
    after: &BTreeMap<u32, ServiceRules>,
    whole: &BTreeMap<u32, ServiceRules>,
) -> Result<(), DataplaneError> {
    if changed(before, after) > PARTIAL_LIMIT {
        return restore(&full_batch(whole, &owned_chains()?));
    }
    match partial_batch(before, after) {
        Some(b) => restore(&b),
        None => Ok(()),
    }
}

/// The batch that turns the table `old` describes into `new`, touching only
/// services whose rules differ, as kube-proxy's partial sync does: their
/// chains are emptied and written again, their lines in the shared chains
/// deleted or appended one by one (the shared chains are never rewritten),
/// and chains of removed services deleted. `None` when nothing differs.
fn partial_batch(
    old: &BTreeMap<u32, ServiceRules>,
    new: &BTreeMap<u32, ServiceRules>,
) -> Option<String> {
    let (mut declare, mut delete, mut append, mut remove) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let empty = ServiceRules::default();
    for (id, r) in new {
        let was = old.get(id).unwrap_or(&empty);
        if was == r {
            continue;
        }
        if was.own != r.own {
            declare.push(r.chain.clone());
            append.extend(r.own.iter().cloned());
        }
        delete.extend(was.shared.iter().filter(|l| !r.shared.contains(l)).cloned());
        append.extend(r.shared.iter().filter(|l| !was.shared.contains(l)).cloned());
    }
    for (id, r) in old {
        if !new.contains_key(id) {
            delete.extend(r.shared.iter().cloned());
            declare.push(r.chain.clone());
            remove.push(r.chain.clone());
        }
    }
    if declare.is_empty() && delete.is_empty() && append.is_empty() {
        return None;
    }
    let mut out = String::from("*nat\n");
    for c in &declare {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for l in &delete {
        let _ = writeln!(out, "-D{}", l.strip_prefix("-A").unwrap_or(l));
    }
    for l in &append {
        let _ = writeln!(out, "{l}");
    }
    for c in &remove {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// Owned nat chains, as `iptables-save` lists them.
fn owned_chains() -> Result<Vec<String>, DataplaneError> {
    let save = ipt_save()?;
    Ok(save
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        // Host-mode ports share the prefix but are not the mesh's.
        .filter(|c| c.starts_with(PREFIX) && *c != crate::hostports::CHAIN)
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

pub(crate) fn restore(batch: &str) -> Result<(), DataplaneError> {
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
        let rules = self.rules(services);
        match self.applied.take() {
            Some(old) => write_change(&old, &rules, &rules)?,
            None => restore(&full_batch(&rules, &owned_chains()?))?,
        }
        self.applied = Some(rules);
        Ok(())
    }

    fn update(&mut self, upserts: &[LbService], removals: &[u32]) -> Result<(), DataplaneError> {
        for svc in upserts {
            svc.validate(usize::MAX)?;
        }
        let Some(mut applied) = self.applied.take() else {
            return Err(DataplaneError::Iptables(
                "an update needs a sync first: the table's rules are not known yet".into(),
            ));
        };
        let ids = upserts.iter().map(|s| s.id).chain(removals.iter().copied());
        let before: BTreeMap<u32, ServiceRules> = ids
            .filter_map(|id| Some((id, applied.get(&id)?.clone())))
            .collect();
        let after = self.rules(upserts);
        for id in before.keys() {
            applied.remove(id);
        }
        applied.extend(after.iter().map(|(id, r)| (*id, r.clone())));
        write_change(&before, &after, &applied)?;
        self.applied = Some(applied);
        Ok(())
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
            snat: None,
        }
    }

    #[test]
    fn batch_spreads_new_connections_over_active_backends_only() {
        let s = svc(&[
            ("10.0.1.2:8080", "198.18.0.11", BackendState::Active),
            ("10.0.2.2:8080", "198.18.0.12", BackendState::Active),
            ("10.0.3.2:8080", "198.18.0.13", BackendState::Draining),
        ]);
        let b = IptablesDataplane::default().batch(&[s], &[]);
        assert!(b.starts_with("*nat\n") && b.ends_with("COMMIT\n"));
        assert!(b.contains("-A SWARM-VIPS -d 10.0.0.5/32 -p tcp --dport 80"));
        assert!(b.contains("-A SWARM-NODEPORTS -p tcp --dport 8000 "));
        let vips = b
            .find("-A SWARM-SERVICES -j SWARM-VIPS\n")
            .expect("VIPs first");
        let local = b
            .find("-A SWARM-SERVICES -m addrtype --dst-type LOCAL -j SWARM-NODEPORTS\n")
            .expect("then published ports, for local addresses only");
        assert!(vips < local, "{b}");
        assert!(b.contains(
            "-A SWARM-SVC-7 -m statistic --mode random --probability 0.5000000000 -p tcp -j DNAT --to-destination 10.0.1.2:8080"
        ));
        assert!(b.contains("-A SWARM-SVC-7 -p tcp -j DNAT --to-destination 10.0.2.2:8080"));
        assert!(
            !b.contains("10.0.3.2"),
            "draining backends get no new connections"
        );
    }

    #[test]
    fn a_cluster_node_snats_vip_and_remote_connections_and_vips_take_every_port() {
        let mut s = svc(&[
            ("10.0.1.2:0", "198.18.0.11", BackendState::Active),
            ("10.0.1.3:0", "198.18.0.12", BackendState::Active),
        ]);
        s.vip = Some("10.0.1.9:0".parse().unwrap());
        s.published_port = None;
        let dp = IptablesDataplane::new(Some("198.18.0.11".parse().unwrap()));
        let b = dp.batch(&[s], &[]);
        assert!(
            b.contains("-A SWARM-VIPS -d 10.0.1.9/32 -p tcp -m comment"),
            "{b}"
        );
        assert!(b.contains("-j DNAT --to-destination 10.0.1.2\n"), "{b}");
        assert!(b.contains("--ctorigdst 10.0.1.9/32 -m comment --comment \"svc:7\" -j SNAT --to-source 198.18.0.11"));
        assert!(b.contains("-d 10.0.1.3/32 -m comment --comment \"svc:7\" -j SNAT"));
        assert!(
            !b.contains("-d 10.0.1.2/32"),
            "the local backend keeps the client's address"
        );
    }

    #[test]
    fn batch_deletes_chains_of_removed_services() {
        let existing = ["SWARM-SVC-3".into(), POSTROUTING.into(), SERVICES.into()];
        let b = IptablesDataplane::default().batch(&[], &existing);
        assert!(b.contains(":SWARM-SVC-3 - [0:0]") && b.contains("-X SWARM-SVC-3"));
        assert!(!b.contains("-X SWARM-SERVICES") && !b.contains("SWARM-POSTROUTING"));
        assert!(!b.contains("-X SWARM-VIPS") && !b.contains("-X SWARM-NODEPORTS"));
    }

    #[test]
    fn a_partial_sync_touches_only_the_services_that_changed() {
        let dp = IptablesDataplane::default();
        let a = svc(&[("10.0.1.2:8080", "198.18.0.11", BackendState::Active)]);
        let mut b = a.clone();
        b.id = 8;
        b.vip = Some("10.0.0.6:80".parse().unwrap());
        b.published_port = Some(8001);
        let old = dp.rules(&[a.clone(), b.clone()]);
        assert_eq!(partial_batch(&old, &old), None, "nothing changed");

        // A backend more for service 8: only its chain is emptied and written.
        let mut b2 = b.clone();
        b2.backends.push(Backend {
            addr: "10.0.2.2:8080".parse().unwrap(),
            node: "198.18.0.12".parse().unwrap(),
            state: BackendState::Active,
        });
        let batch = partial_batch(&old, &dp.rules(&[a.clone(), b2])).unwrap();
        assert!(batch.contains(":SWARM-SVC-8 - [0:0]\n"), "{batch}");
        assert!(batch.contains("--to-destination 10.0.2.2:8080"), "{batch}");
        assert!(
            !batch.contains("SWARM-SVC-7"),
            "service 7 is untouched: {batch}"
        );
        assert!(
            !batch.contains(":SWARM-VIPS") && !batch.contains(":SWARM-NODEPORTS"),
            "the shared chain is not rewritten: {batch}"
        );

        // Service 7 removed: its jumps deleted one by one, then its chain.
        let batch = partial_batch(&old, &dp.rules(&[b])).unwrap();
        let del = batch
            .find("-D SWARM-VIPS -d 10.0.0.5/32 -p tcp --dport 80")
            .expect("the VIP jump is deleted");
        let x = batch.find("-X SWARM-SVC-7").expect("the chain is deleted");
        assert!(del < x && !batch.contains("SWARM-SVC-8"), "{batch}");
    }
}
