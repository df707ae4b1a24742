//! A compose file's top level: `version`, `services`, and the `networks`,
//! `volumes`, `secrets` and `configs` the services refer to.

use crate::check::{scalar_text, to_json, Ck, R};
use crate::yaml::{Kind, Node};
use serde_json::{json, Map, Value};

/// The newest 3.x format, which docker assumes for `3` or no version.
pub const LATEST: &str = "3.13";

pub fn document(ck: &Ck, root: &Node) -> R {
    let mut out = Map::new();
    let entries = ck.map(root, "(root)", "mapping")?;
    for (k, pos, v) in entries {
        let value = match k.as_str() {
            "version" => {
                let version = ck.string(v, "version")?;
                if version != "3" && !version.starts_with("3.") {
                    let msg = format!("unsupported Compose file version: {version}");
                    return Err(crate::Error::at(ck.file, v.pos, msg));
                }
                json!(if version == "3" { LATEST } else { &version })
            }
            "services" => {
                let mut services = Map::new();
                for (name, _, s) in ck.map(v, "services", "mapping")? {
                    let path = format!("services.{name}");
                    services.insert(name.clone(), crate::service::service(ck, s, &path)?);
                }
                Value::Object(services)
            }
            "networks" => objects(ck, v, k, network)?,
            "volumes" => objects(ck, v, k, volume)?,
            "secrets" | "configs" => objects(ck, v, k, file_object)?,
            x if x.starts_with("x-") => to_json(v),
            _ => return Err(ck.unknown(*pos, "", k)),
        };
        out.insert(k.clone(), value);
    }
    out.entry("version").or_insert(json!(LATEST));
    Ok(Value::Object(out))
}

type Object = fn(&Ck, &str, &Node, &str) -> R;

fn objects(ck: &Ck, n: &Node, section: &str, each: Object) -> R {
    let mut out = Map::new();
    for (name, _, v) in ck.map(n, section, "mapping")? {
        let path = format!("{section}.{name}");
        out.insert(name.clone(), each(ck, name, v, &path)?);
    }
    Ok(Value::Object(out))
}

/// The keys every kind of object shares; `None` for a key it does not.
fn common(ck: &Ck, key: &str, v: &Node, path: &str) -> R<Option<Value>> {
    let p = format!("{path}.{key}");
    Ok(Some(match key {
        "name" | "driver" => json!(ck.string(v, &p)?),
        "labels" => ck.list_or_dict(v, &p, json!(""))?,
        "driver_opts" => {
            let mut m = Map::new();
            for (k, _, e) in ck.map(v, &p, "mapping")? {
                let text = scalar_text(e).ok_or_else(|| {
                    ck.fail(e.pos, &format!("{p}.{k}"), "must be a string or number")
                })?;
                m.insert(k.clone(), json!(text));
            }
            Value::Object(m)
        }
        "external" => match &v.kind {
            Kind::Bool(b) => json!(b),
            Kind::Map(_) => crate::service::strings_only(ck, v, &p, &["name"])?,
            _ => return Err(ck.fail(v.pos, &p, "must be a boolean")),
        },
        _ => return Ok(None),
    }))
}

/// docker names an external object after its key unless told otherwise,
/// and folds the deprecated `external: {name: N}` into `name`.
fn settle_external(out: &mut Map<String, Value>, key: &str) {
    if let Some(Value::Object(ext)) = out.get("external").cloned() {
        if let Some(name) = ext.get("name") {
            out.insert("name".into(), name.clone());
        }
        out.insert("external".into(), json!(true));
    }
    if out.get("external") == Some(&json!(false)) {
        out.remove("external");
    }
    if out.get("external") == Some(&json!(true)) {
        out.entry("name").or_insert(json!(key));
    }
}

fn network(ck: &Ck, key: &str, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map_or_null(n, path)? {
        let p = format!("{path}.{k}");
        let value = match common(ck, k, v, path)? {
            Some(value) => value,
            None => match k.as_str() {
                "internal" | "attachable" => match ck.bool(v, &p)? {
                    true => json!(true),
                    false => continue,
                },
                "ipam" => ipam(ck, v, &p)?,
                x if x.starts_with("x-") => to_json(v),
                _ => return Err(ck.unknown(*pos, path, k)),
            },
        };
        out.insert(k.clone(), value);
    }
    settle_external(&mut out, key);
    Ok(Value::Object(out))
}

fn ipam(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match k.as_str() {
            "driver" => json!(ck.string(v, &p)?),
            "config" => {
                let mut configs = Vec::new();
                for (i, c) in ck.seq(v, &p)?.iter().enumerate() {
                    let cp = format!("{p}.{i}");
                    configs.push(crate::service::strings_only(ck, c, &cp, &["subnet"])?);
                }
                json!(configs)
            }
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}

fn volume(ck: &Ck, key: &str, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map_or_null(n, path)? {
        let value = match common(ck, k, v, path)? {
            Some(value) => value,
            None if k.starts_with("x-") => to_json(v),
            None => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    settle_external(&mut out, key);
    Ok(Value::Object(out))
}

/// A secret or a config: from a file (its path made absolute), or external.
fn file_object(ck: &Ck, key: &str, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match common(ck, k, v, path)? {
            Some(value) => value,
            None => match k.as_str() {
                "file" => json!(ck.host_path(&ck.string(v, &p)?)),
                "template_driver" => json!(ck.string(v, &p)?),
                x if x.starts_with("x-") => to_json(v),
                _ => return Err(ck.unknown(*pos, path, k)),
            },
        };
        out.insert(k.clone(), value);
    }
    settle_external(&mut out, key);
    Ok(Value::Object(out))
}
