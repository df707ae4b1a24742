//! A service's `deploy:` section.

use crate::check::{Ck, R};
use crate::yaml::{Kind, Node};
use serde_json::{json, Map, Value};

pub fn deploy(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map_or_null(n, path)? {
        let p = format!("{path}.{k}");
        let p = p.as_str();
        let value = match k.as_str() {
            "mode" | "endpoint_mode" => json!(ck.string(v, p)?),
            "replicas" => json!(ck.int(v, p)?),
            "labels" => ck.list_or_dict(v, p, json!(""))?,
            "update_config" | "rollback_config" => update_config(ck, v, p)?,
            "resources" => resources(ck, v, p)?,
            "restart_policy" => restart_policy(ck, v, p)?,
            "placement" => placement(ck, v, p)?,
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}

fn update_config(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match k.as_str() {
            "parallelism" => json!(ck.int(v, &p)?),
            // Plain values with omitempty in docker's types: a zero delay,
            // monitor or ratio is not printed (parallelism is a pointer).
            "delay" | "monitor" => match ck.duration(v, &p)? {
                d if d == "0s" => continue,
                d => d,
            },
            "failure_action" | "order" => json!(ck.string(v, &p)?),
            "max_failure_ratio" => match ck.number(v, &p)? {
                r if r.as_f64() == Some(0.0) => continue,
                r => r,
            },
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}

fn resources(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        if k != "limits" && k != "reservations" {
            return Err(ck.unknown(*pos, path, k));
        }
        let mut m = Map::new();
        for (r, rpos, e) in ck.map(v, &p, "mapping")? {
            let rp = format!("{p}.{r}");
            let value = match r.as_str() {
                "cpus" => json!(ck.string(e, &rp)?),
                "memory" => ck.bytes(e, &rp)?,
                "pids" if k == "limits" => json!(ck.int(e, &rp)?),
                "generic_resources" if k == "reservations" => generic(ck, e, &rp)?,
                _ => return Err(ck.unknown(*rpos, &p, r)),
            };
            m.insert(r.clone(), value);
        }
        out.insert(k.clone(), Value::Object(m));
    }
    Ok(Value::Object(out))
}

fn generic(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Vec::new();
    for (i, item) in ck.seq(n, path)?.iter().enumerate() {
        let p = format!("{path}.{i}");
        let spec = item
            .get("discrete_resource_spec")
            .filter(|_| matches!(&item.kind, Kind::Map(m) if m.len() == 1))
            .ok_or_else(|| ck.fail(item.pos, &p, "must have exactly discrete_resource_spec"))?;
        let sp = format!("{p}.discrete_resource_spec");
        let mut m = Map::new();
        for (k, pos, v) in ck.map(spec, &sp, "mapping")? {
            let value = match k.as_str() {
                "kind" => json!(ck.string(v, &format!("{sp}.kind"))?),
                "value" => ck.number(v, &format!("{sp}.value"))?,
                _ => return Err(ck.unknown(*pos, &sp, k)),
            };
            m.insert(k.clone(), value);
        }
        out.push(json!({ "discrete_resource_spec": m }));
    }
    Ok(json!(out))
}

fn restart_policy(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match k.as_str() {
            "condition" => json!(ck.string(v, &p)?),
            "delay" | "window" => ck.duration(v, &p)?,
            "max_attempts" => json!(ck.int(v, &p)?),
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}

fn placement(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match k.as_str() {
            "constraints" => json!(ck.strings(v, &p)?),
            "max_replicas_per_node" => json!(ck.int(v, &p)?),
            "preferences" => {
                let mut prefs = Vec::new();
                for (i, item) in ck.seq(v, &p)?.iter().enumerate() {
                    let ip = format!("{p}.{i}");
                    prefs.push(crate::service::strings_only(ck, item, &ip, &["spread"])?);
                }
                json!(prefs)
            }
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}
