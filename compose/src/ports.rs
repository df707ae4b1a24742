//! `ports:` in both syntaxes. The short one (`[IP:][PUBLISHED:]TARGET
//! [/PROTOCOL]`, either side a range) becomes one long entry per port, in
//! ingress mode, as docker's loader expands it.

use crate::check::{Ck, R};
use crate::yaml::Kind;
use crate::yaml::Node;
use serde_json::{json, Map, Value};

pub fn ports(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Vec::new();
    for (i, item) in ck.seq(n, path)?.iter().enumerate() {
        let p = format!("{path}.{i}");
        match &item.kind {
            Kind::Int(port) => out.push(entry(*port as u64, None, "tcp")),
            Kind::Str(s) => {
                let bad = || ck.fail(item.pos, &p, "Does not match format 'ports'");
                out.extend(short(s).ok_or_else(bad)?);
            }
            Kind::Map(entries) => {
                let mut m = Map::new();
                for (k, pos, v) in entries {
                    let kp = format!("{p}.{k}");
                    let value = match k.as_str() {
                        "mode" | "protocol" | "host_ip" => json!(ck.string(v, &kp)?),
                        "target" | "published" => json!(ck.int(v, &kp)?),
                        _ => return Err(ck.unknown(*pos, &p, k)),
                    };
                    m.insert(k.clone(), value);
                }
                out.push(Value::Object(m));
            }
            _ => return Err(ck.fail(item.pos, &p, "must be a number")),
        }
    }
    Ok(json!(out))
}

fn entry(target: u64, published: Option<u64>, proto: &str) -> Value {
    let mut m = Map::new();
    m.insert("mode".into(), json!("ingress"));
    m.insert("target".into(), json!(target));
    if let Some(p) = published {
        m.insert("published".into(), json!(p));
    }
    m.insert("protocol".into(), json!(proto));
    Value::Object(m)
}

/// `a` or `a-b` as an inclusive range of ports.
fn range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b && b <= 65535).then_some((a, b))
}

fn short(spec: &str) -> Option<Vec<Value>> {
    let (rest, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if !["tcp", "udp", "sctp"].contains(&proto) {
        return None;
    }
    // An IP before the ports is accepted and ignored, as docker does: the
    // routing mesh listens on every address.
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (target, published) = match parts.as_slice() {
        [t] => (range(t)?, None),
        [t, p] | [t, p, _] if p.is_empty() => (range(t)?, None),
        [t, p] | [t, p, _] => (range(t)?, Some(range(p)?)),
        _ => return None,
    };
    let (t0, t1) = target;
    match published {
        None => Some((t0..=t1).map(|t| entry(t, None, proto)).collect()),
        Some((p0, p1)) if p1 - p0 == t1 - t0 => Some(
            (0..=t1 - t0)
                .map(|i| entry(t0 + i, Some(p0 + i), proto))
                .collect(),
        ),
        // One published port for a range of targets is refused by docker.
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_syntax_expands_ranges() {
        let v = short("9000-9001:8000-8001/udp").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[1],
            json!({"mode": "ingress", "target": 8001, "published": 9001, "protocol": "udp"})
        );
        assert_eq!(
            short("80").unwrap()[0],
            json!({"mode": "ingress", "target": 80, "protocol": "tcp"})
        );
        assert_eq!(short("127.0.0.1:82:83").unwrap()[0]["published"], json!(82));
        assert!(short("x:y").is_none());
        assert!(short("80/xyz").is_none());
        assert!(short("1-3:5").is_none());
    }
}
