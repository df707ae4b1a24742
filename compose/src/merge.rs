//! Several `-c` files, merged in order as docker merges them: a later file
//! overrides the keys it sets, and mappings merge key by key. In a
//! service, ports merge by published port, volumes by mount point, secrets
//! and configs by source; `command` and `entrypoint` are replaced; other
//! lists are appended to. A top-level network, volume, secret or config is
//! replaced whole.

use serde_json::Value;

pub fn merge(base: Value, over: Value) -> Value {
    merge_at(base, over, &mut Vec::new())
}

fn merge_at(base: Value, over: Value, path: &mut Vec<String>) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) if replaced_whole(path) => {
            let _ = b;
            Value::Object(o)
        }
        (Value::Object(mut b), Value::Object(o)) => {
            for (k, v) in o {
                path.push(k.clone());
                let merged = match b.remove(&k) {
                    Some(old) => merge_at(old, v, path),
                    None => v,
                };
                path.pop();
                b.insert(k, merged);
            }
            Value::Object(b)
        }
        (Value::Array(b), Value::Array(o)) => match list_rule(path) {
            List::Keyed(key) => {
                let mut out = b;
                for item in o {
                    let id = item.get(key).filter(|v| !v.is_null()).cloned();
                    let slot = id.and_then(|id| out.iter_mut().find(|x| x.get(key) == Some(&id)));
                    match slot {
                        Some(slot) => *slot = item,
                        None => out.push(item),
                    }
                }
                Value::Array(out)
            }
            List::Replace => Value::Array(o),
            List::Append => Value::Array(b.into_iter().chain(o).collect()),
        },
        (_, over) => over,
    }
}

enum List {
    /// Items with the same value of this field replace each other.
    Keyed(&'static str),
    Replace,
    Append,
}

fn list_rule(path: &[String]) -> List {
    match path {
        [s, _, list] if s == "services" => match list.as_str() {
            "ports" => List::Keyed("published"),
            "volumes" => List::Keyed("target"),
            "secrets" | "configs" => List::Keyed("source"),
            "command" | "entrypoint" => List::Replace,
            _ => List::Append,
        },
        [s, _, h, t] if s == "services" && h == "healthcheck" && t == "test" => List::Replace,
        _ => List::Append,
    }
}

fn replaced_whole(path: &[String]) -> bool {
    matches!(path, [section, _] if ["networks", "volumes", "secrets", "configs"].contains(&section.as_str()))
}
