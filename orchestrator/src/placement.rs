//! Where a service's tasks may run: constraints, spread preferences, a
//! per-node replica limit and resource reservations, in Swarm's syntax.
//! Parsed once when a service is created, so a bad expression is refused
//! with its reason instead of leaving tasks pending forever.

use crate::types::{Node, NodeRole};
pub use crate::types::{Placement, Resources};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Attr {
    Id,
    Hostname,
    Role,
    Label(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    attr: Attr,
    equal: bool,
    value: String,
}

impl Constraint {
    pub fn parse(expr: &str) -> Result<Constraint, String> {
        let bad = |why: &str| {
            format!("invalid constraint {expr:?}: {why}; use node.id, node.hostname, node.role or node.labels.NAME with == or !=")
        };
        let (lhs, rhs, equal) = if let Some((l, r)) = expr.split_once("!=") {
            (l, r, false)
        } else if let Some((l, r)) = expr.split_once("==") {
            (l, r, true)
        } else {
            return Err(bad("no == or != operator"));
        };
        let (lhs, value) = (lhs.trim(), rhs.trim());
        if value.is_empty() {
            return Err(bad("the value is empty"));
        }
        let attr = match lhs {
            "node.id" => Attr::Id,
            "node.hostname" => Attr::Hostname,
            "node.role" => {
                if value.parse::<NodeRole>().is_err() {
                    return Err(bad("node.role is manager or worker"));
                }
                Attr::Role
            }
            _ => match lhs.strip_prefix("node.labels.") {
                Some(name) if !name.is_empty() => Attr::Label(name.to_string()),
                _ => return Err(bad(&format!("unknown attribute {lhs:?}"))),
            },
        };
        Ok(Constraint {
            attr,
            equal,
            value: value.to_string(),
        })
    }

    pub fn matches(&self, node: &Node) -> bool {
        let actual: Option<&str> = match &self.attr {
            Attr::Id => Some(&node.id),
            Attr::Hostname => Some(&node.hostname),
            Attr::Role => Some(node.role.as_str()),
            Attr::Label(name) => node.labels.get(name).map(String::as_str),
        };
        // A missing label equals nothing, so `!=` holds for it (Swarm does
        // the same).
        (actual == Some(self.value.as_str())) == self.equal
    }
}

/// The label a spread preference names.
pub fn parse_preference(pref: &str) -> Result<String, String> {
    pref.strip_prefix("spread=node.labels.")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            format!("invalid placement preference {pref:?}: use spread=node.labels.NAME")
        })
}

impl Placement {
    /// Check every expression; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        for c in &self.constraints {
            Constraint::parse(c)?;
        }
        for p in &self.preferences {
            parse_preference(p)?;
        }
        Ok(())
    }

    /// Parsed constraints; invalid ones (refused at create) are skipped.
    pub fn parsed_constraints(&self) -> Vec<Constraint> {
        self.constraints
            .iter()
            .filter_map(|c| Constraint::parse(c).ok())
            .collect()
    }

    pub fn spread_labels(&self) -> Vec<String> {
        self.preferences
            .iter()
            .filter_map(|p| parse_preference(p).ok())
            .collect()
    }

    pub fn allows(&self, node: &Node) -> bool {
        self.parsed_constraints().iter().all(|c| c.matches(node))
    }
}

/// Docker's memory sizes: bytes, or a number with b, k, m, g or t (either
/// case, optional trailing b as in `512mb`).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let v: f64 = num.parse().map_err(|_| {
        format!("invalid size {s:?}: use a number with an optional unit, such as 512M or 2G")
    })?;
    if v < 0.0 {
        return Err(format!("invalid size {s:?}: must not be negative"));
    }
    Ok((v * mult as f64) as i64)
}

/// CPUs as a decimal (`0.5`, `2`) in nano-CPUs.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid CPU count {s:?}: use a decimal such as 0.5 or 2"))?;
    if v < 0.0 {
        return Err(format!("invalid CPU count {s:?}: must not be negative"));
    }
    Ok((v * 1e9) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::node;

    #[test]
    fn constraints_match_ids_hostnames_roles_and_labels() {
        let mut n = node("abc");
        n.labels.insert("zone".into(), "east".into());
        for (expr, want) in [
            ("node.id==abc", true),
            ("node.id!=abc", false),
            ("node.hostname==abc", true),
            ("node.role==manager", true),
            ("node.role!=manager", false),
            ("node.labels.zone==east", true),
            ("node.labels.zone != west", true),
            ("node.labels.rack==1", false),
            ("node.labels.rack!=1", true),
        ] {
            assert_eq!(Constraint::parse(expr).unwrap().matches(&n), want, "{expr}");
        }
    }

    #[test]
    fn bad_constraints_and_preferences_say_what_is_wrong() {
        for (expr, why) in [
            ("node.zone==x", "unknown attribute"),
            ("node.role==boss", "manager or worker"),
            ("node.labels.zone=east", "no == or !="),
            ("node.labels.==x", "unknown attribute"),
            ("node.id==", "value is empty"),
        ] {
            let e = Constraint::parse(expr).unwrap_err();
            assert!(e.contains(why) && e.contains(expr), "{expr}: {e}");
        }
        assert!(parse_preference("spread=node.labels.zone").is_ok());
        assert!(parse_preference("binpack=x")
            .unwrap_err()
            .contains("spread=node.labels.NAME"));
    }

    #[test]
    fn sizes_and_cpus_parse_like_docker() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1kb").unwrap(), 1024);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert!(parse_cpus("-1").is_err());
    }
}
