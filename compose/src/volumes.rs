//! A service's `volumes:`. The short syntax (`SOURCE:TARGET[:MODE]`)
//! becomes the long one: a source that is a path is a bind (relative paths
//! from the compose file's directory), any other is a named volume.

use crate::check::{Ck, R};
use crate::yaml::{Kind, Node};
use serde_json::{json, Map, Value};

pub fn service_volumes(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Vec::new();
    for (i, item) in ck.seq(n, path)?.iter().enumerate() {
        let p = format!("{path}.{i}");
        out.push(match &item.kind {
            Kind::Str(s) => short(ck, s).ok_or_else(|| {
                crate::Error::at(
                    ck.file,
                    item.pos,
                    format!("{p}: invalid volume specification: '{s}'"),
                )
            })?,
            Kind::Map(_) => long(ck, item, &p)?,
            _ => return Err(ck.fail(item.pos, &p, "must be a string")),
        });
    }
    Ok(json!(out))
}

fn is_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('.') || s.starts_with('~')
}

/// A Windows drive (`c:/x`), which docker's parser takes as one part even
/// on Linux: so `v:/data:ro` binds the path `v:/data`.
fn drive(spec: &str) -> usize {
    let b = spec.as_bytes();
    let is_drive =
        b.len() > 2 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'/' | b'\\');
    if is_drive {
        2
    } else {
        0
    }
}

fn short(ck: &Ck, spec: &str) -> Option<Value> {
    let skip = drive(spec);
    let mut parts: Vec<&str> = spec[skip..].split(':').collect();
    parts[0] = &spec[..skip + parts[0].len()];
    let mut m = Map::new();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, mode] => (Some(*s), *t, Some(*mode)),
        _ => return None,
    };
    if target.is_empty() || source.is_some_and(str::is_empty) {
        return None;
    }
    let bind = source.is_some_and(|s| is_path(s) || drive(s) > 0);
    m.insert("type".into(), json!(if bind { "bind" } else { "volume" }));
    if let Some(s) = source {
        let s = if bind && drive(s) == 0 {
            ck.host_path(s)
        } else {
            s.to_string()
        };
        m.insert("source".into(), json!(s));
    }
    m.insert("target".into(), json!(target));
    for opt in mode.into_iter().flat_map(|m| m.split(',')) {
        match opt {
            "ro" => {
                m.insert("read_only".into(), json!(true));
            }
            "rw" => {}
            "nocopy" => {
                m.insert("volume".into(), json!({ "nocopy": true }));
            }
            // Accepted, and dropped by docker's short-syntax parser.
            "cached" | "delegated" | "consistent" => {}
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                m.insert("bind".into(), json!({ "propagation": opt }));
            }
            "z" | "Z" => {}
            _ => return None,
        }
    }
    Some(Value::Object(m))
}

fn long(ck: &Ck, n: &Node, path: &str) -> R {
    let mut m = Map::new();
    let mut bind = false;
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match k.as_str() {
            "type" => {
                let t = ck.string(v, &p)?;
                bind = t == "bind";
                json!(t)
            }
            "source" | "target" | "consistency" => json!(ck.string(v, &p)?),
            "read_only" => match ck.bool(v, &p)? {
                true => json!(true),
                false => continue,
            },
            "bind" => options(
                ck,
                v,
                &p,
                &[("propagation", Opt::Str), ("create_host_path", Opt::Bool)],
            )?,
            "volume" => options(ck, v, &p, &[("nocopy", Opt::Bool)])?,
            "tmpfs" => options(ck, v, &p, &[("size", Opt::Num)])?,
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        m.insert(k.clone(), value);
    }
    if bind {
        if let Some(Value::String(s)) = m.get("source") {
            let s = ck.host_path(s);
            m.insert("source".into(), json!(s));
        }
    }
    Ok(Value::Object(m))
}

/// The type of one option of a long-syntax volume.
#[derive(Clone, Copy)]
enum Opt {
    Str,
    Bool,
    Num,
}

/// A small mapping of typed options.
fn options(ck: &Ck, n: &Node, path: &str, keys: &[(&str, Opt)]) -> R {
    let mut m = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match keys.iter().find(|(name, _)| name == k).map(|(_, t)| *t) {
            Some(Opt::Str) => json!(ck.string(v, &p)?),
            Some(Opt::Bool) => json!(ck.bool(v, &p)?),
            Some(Opt::Num) => ck.number(v, &p)?,
            None => return Err(ck.unknown(*pos, path, k)),
        };
        m.insert(k.clone(), value);
    }
    Ok(Value::Object(m))
}
