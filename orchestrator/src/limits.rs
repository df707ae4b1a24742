//! The bounds every stored service respects, whoever wrote it: `State::apply`
//! refuses a spec past one, with a message that names the limit, so that no
//! input (`service scale web=1000000000000`, a negative reservation, a
//! megabyte label) can make every manager run out of memory or overflow the
//! scheduler's sums. The numbers are documented in docs/reliability.md.

use crate::types::{Node, ServiceSpec};

/// Replicas of one service.
pub const MAX_REPLICAS: u64 = 100_000;
/// Entries in one list of a spec (args, env, ports, networks, secrets,
/// constraints, mounts, ...) and labels on one object.
pub const MAX_ENTRIES: usize = 1_000;
/// Bytes of one label key, and of one name-like string (image, user, ...).
pub const MAX_KEY: usize = 1_024;
/// Bytes of one value: a label value, an env entry, an argument.
pub const MAX_VALUE: usize = 64 * 1024;

/// `service NAME: WHAT: N entries, ...` past the list limit. The message
/// is only made for a refusal: this runs on every service write.
fn entries(name: &str, what: &str, n: usize) -> Result<(), String> {
    if n > MAX_ENTRIES {
        return Err(format!(
            "service {name}: {what}: {n} entries, more than the limit of {MAX_ENTRIES}"
        ));
    }
    Ok(())
}

fn strings<'a>(
    name: &str,
    what: &str,
    list: impl IntoIterator<Item = &'a String>,
    max: usize,
) -> Result<(), String> {
    match list.into_iter().find(|s| s.len() > max) {
        Some(s) => Err(format!(
            "service {name}: {what}: {} bytes, more than the limit of {max}",
            s.len()
        )),
        None => Ok(()),
    }
}

/// Check `spec` against the limits, and its reservations against the
/// largest of `nodes` (when there are nodes with a known capacity).
pub fn check<'a>(spec: &ServiceSpec, nodes: impl Iterator<Item = &'a Node>) -> Result<(), String> {
    let name = &spec.name;
    if spec.replicas > MAX_REPLICAS {
        return Err(format!(
            "service {name}: {} replicas, more than the limit of {MAX_REPLICAS} per service",
            spec.replicas
        ));
    }
    let r = &spec.resources;
    if r.reserve_nano_cpus < 0 || r.reserve_memory_bytes < 0 {
        return Err(format!("service {name}: reservations cannot be negative"));
    }
    let (mut cpus, mut memory) = (0, 0);
    for n in nodes {
        cpus = cpus.max(n.nano_cpus);
        memory = memory.max(n.memory_bytes);
    }
    if cpus > 0 && r.reserve_nano_cpus > cpus {
        return Err(format!(
            "service {name}: reserves {} CPUs, more than the largest node has ({})",
            r.reserve_nano_cpus as f64 / 1e9,
            cpus as f64 / 1e9
        ));
    }
    if memory > 0 && r.reserve_memory_bytes > memory {
        return Err(format!(
            "service {name}: reserves {} bytes of memory, more than the largest node has ({memory})",
            r.reserve_memory_bytes
        ));
    }
    let c = &spec.container;
    let p = &spec.placement;
    for (what, n) in [
        ("args", spec.args.len()),
        ("env", spec.env.len()),
        ("ports", spec.ports.len()),
        ("networks", spec.networks.len()),
        ("secrets", spec.secrets.len()),
        ("configs", spec.configs.len()),
        ("constraints", p.constraints.len()),
        ("placement preferences", p.preferences.len()),
        ("mounts", c.mounts.len()),
        ("extra hosts", c.extra_hosts.len()),
        ("labels", spec.labels.len() + c.labels.len()),
    ] {
        entries(name, what, n)?;
    }
    let labels = || spec.labels.iter().chain(&c.labels);
    strings(name, "a label key", labels().map(|(k, _)| k), MAX_KEY)?;
    strings(name, "a label value", labels().map(|(_, v)| v), MAX_VALUE)?;
    strings(name, "image", [&spec.image], MAX_KEY)?;
    strings(name, "an argument", &spec.args, MAX_VALUE)?;
    strings(name, "an env entry", &spec.env, MAX_VALUE)?;
    strings(name, "a constraint", &p.constraints, MAX_KEY)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{node, service};
    use crate::types::Mode;

    #[test]
    fn each_limit_is_refused_by_name() {
        let ok = service("s", Mode::Replicated, 3).spec;
        let mut big = node("n1");
        big.nano_cpus = 2_000_000_000;
        big.memory_bytes = 1 << 30;
        assert!(check(&ok, [&big].into_iter()).is_ok());

        let mut s = ok.clone();
        s.replicas = 1_000_000_000_000;
        assert_eq!(
            check(&s, std::iter::empty()).unwrap_err(),
            "service svc-s: 1000000000000 replicas, more than the limit of 100000 per service"
        );
        let mut s = ok.clone();
        s.resources.reserve_memory_bytes = -1;
        assert!(check(&s, std::iter::empty())
            .unwrap_err()
            .contains("cannot be negative"));
        let mut s = ok.clone();
        s.resources.reserve_nano_cpus = 3_000_000_000;
        assert!(check(&s, [&big].into_iter())
            .unwrap_err()
            .contains("reserves 3 CPUs, more than the largest node has (2)"));
        let mut s = ok.clone();
        s.labels.insert("k".into(), "v".repeat(MAX_VALUE + 1));
        assert!(check(&s, std::iter::empty())
            .unwrap_err()
            .contains("a label value"));
        let mut s = ok;
        s.env = vec!["A=1".into(); MAX_ENTRIES + 1];
        assert!(check(&s, std::iter::empty())
            .unwrap_err()
            .contains("env: 1001 entries"));
    }
}
