//! One service of a compose file, checked key by key and printed as
//! docker's `stack config` prints it: short syntaxes become long ones
//! (ports, volumes, secrets), lists become mappings (environment, labels),
//! durations and sizes take Go's forms.

use crate::check::{scalar_text, to_json, Ck, R};
use crate::ports;
use crate::yaml::{Kind, Node};
use serde_json::{json, Map, Value};

pub fn service(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (key, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{key}");
        let p = p.as_str();
        let value = match key.as_str() {
            "image" | "cgroup_parent" | "container_name" | "domainname" | "hostname" | "ipc"
            | "isolation" | "mac_address" | "network_mode" | "pid" | "restart" | "stop_signal"
            | "user" | "userns_mode" | "working_dir" => json!(ck.string(v, p)?),
            "shm_size" => json!(ck.string_or_number(v, p)?),
            // Go's omitempty drops a false plain boolean; `init` is a
            // pointer there, so its false is printed.
            "init" => json!(ck.bool(v, p)?),
            "privileged" | "read_only" | "stdin_open" | "tty" => match ck.bool(v, p)? {
                true => json!(true),
                false => continue,
            },
            "cap_add" | "cap_drop" | "devices" | "external_links" | "links" | "security_opt" => {
                json!(ck.strings(v, p)?)
            }
            // Unlike docker, the long form (`condition: service_healthy`)
            // is accepted: deploy waits on it.
            "depends_on" => match &v.kind {
                Kind::Map(_) => depends_on(ck, v, p)?,
                _ => json!(ck.strings(v, p)?),
            },
            "dns" | "dns_search" | "env_file" | "tmpfs" => ck.string_or_list(v, p)?,
            "stop_grace_period" => ck.duration(v, p)?,
            "environment" => ck.list_or_dict(v, p, Value::Null)?,
            "labels" | "sysctls" => ck.list_or_dict(v, p, json!(""))?,
            "extra_hosts" => extra_hosts(ck, v, p)?,
            "command" | "entrypoint" => command(ck, v, p)?,
            "expose" => json!(ck
                .seq(v, p)?
                .iter()
                .enumerate()
                .map(|(i, e)| ck.string_or_number(e, &format!("{p}.{i}")))
                .collect::<R<Vec<_>>>()?),
            "ports" => ports::ports(ck, v, p)?,
            "volumes" => crate::volumes::service_volumes(ck, v, p)?,
            "secrets" | "configs" => file_refs(ck, v, p)?,
            "networks" => networks(ck, v, p)?,
            "ulimits" => ulimits(ck, v, p)?,
            "healthcheck" => healthcheck(ck, v, p)?,
            "deploy" => crate::deploy::deploy(ck, v, p)?,
            "logging" => logging(ck, v, p)?,
            "build" => build(ck, v, p)?,
            "credential_spec" => strings_only(ck, v, p, &["config", "file", "registry"])?,
            k if k.starts_with("x-") => to_json(v),
            _ => return Err(ck.unknown(*pos, path, key)),
        };
        out.insert(key.clone(), value);
    }
    if let Some(files) = out.get("env_file").cloned() {
        let node = n.get("env_file").expect("env_file was read from the node");
        let mut env = env_files(ck, node, &files)?;
        if let Some(Value::Object(own)) = out.get("environment") {
            env.extend(own.clone());
        }
        out.insert("environment".into(), Value::Object(env));
    }
    Ok(Value::Object(out))
}

/// The variables of a service's `env_file`s, in order, as docker folds
/// them into its environment: `KEY=VALUE` lines, `#` comments, and a bare
/// `KEY` taken from the process environment.
fn env_files(ck: &Ck, node: &Node, files: &Value) -> R<Map<String, Value>> {
    let mut env = Map::new();
    for f in files
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let path = ck.host_path(f);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            crate::Error::at(
                ck.file,
                node.pos,
                format!("couldn't find env file {path}: {e}"),
            )
        })?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) => env.insert(k.to_string(), json!(v)),
                None => env.insert(
                    line.to_string(),
                    std::env::var(line)
                        .map(Value::String)
                        .unwrap_or(Value::Null),
                ),
            };
        }
    }
    Ok(env)
}

/// A mapping whose keys are all strings.
pub fn strings_only(ck: &Ck, n: &Node, path: &str, keys: &[&str]) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        if !keys.contains(&k.as_str()) {
            return Err(ck.unknown(*pos, path, k));
        }
        out.insert(k.clone(), json!(ck.string(v, &format!("{path}.{k}"))?));
    }
    Ok(Value::Object(out))
}

fn depends_on(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (name, _, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{name}");
        let mut dep = Map::new();
        for (k, pos, c) in ck.map(v, &p, "mapping")? {
            if k != "condition" {
                return Err(ck.unknown(*pos, &p, k));
            }
            let cond = ck.string(c, &format!("{p}.condition"))?;
            if ![
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            ]
            .contains(&cond.as_str())
            {
                return Err(ck.fail(c.pos, &format!("{p}.condition"), "must be one of the following: \"service_started\", \"service_healthy\", \"service_completed_successfully\""));
            }
            dep.insert("condition".into(), json!(cond));
        }
        out.insert(name.clone(), Value::Object(dep));
    }
    Ok(Value::Object(out))
}

fn extra_hosts(ck: &Ck, n: &Node, path: &str) -> R {
    match &n.kind {
        Kind::Map(_) => {
            let map = ck.list_or_dict(n, path, json!(""))?;
            let hosts = map.as_object().into_iter().flatten();
            Ok(json!(hosts
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()))
        }
        _ => Ok(json!(ck.strings(n, path)?)),
    }
}

fn command(ck: &Ck, n: &Node, path: &str) -> R {
    match &n.kind {
        Kind::Str(s) => {
            let words =
                shell_words(s).ok_or_else(|| ck.fail(n.pos, path, "has an unterminated quote"))?;
            Ok(json!(words))
        }
        Kind::Null => Ok(Value::Null),
        _ => match ck.strings(n, path) {
            Ok(list) => Ok(json!(list)),
            Err(e) if matches!(n.kind, Kind::Seq(_)) => Err(e),
            Err(_) => Err(ck.fail(n.pos, path, "must be a string")),
        },
    }
}

/// Split as a POSIX shell would (no expansion): quotes group, a backslash
/// escapes. `None` for an unterminated quote.
pub fn shell_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                words.extend(word.take());
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => {
                            let c = chars.next()?;
                            if !matches!(c, '"' | '\\' | '$' | '`') {
                                w.push('\\');
                            }
                            w.push(c);
                        }
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.next());
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// `secrets:` and `configs:` of a service: a name, or source/target/uid/
/// gid/mode.
fn file_refs(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Vec::new();
    for (i, item) in ck.seq(n, path)?.iter().enumerate() {
        let p = format!("{path}.{i}");
        let value = match &item.kind {
            Kind::Str(s) => json!({ "source": s }),
            Kind::Map(entries) => {
                let mut m = Map::new();
                for (k, pos, v) in entries {
                    let kp = format!("{p}.{k}");
                    let value = match k.as_str() {
                        "source" | "target" | "uid" | "gid" => json!(ck.string(v, &kp)?),
                        "mode" => ck.number(v, &kp)?,
                        _ => return Err(ck.unknown(*pos, &p, k)),
                    };
                    m.insert(k.clone(), value);
                }
                Value::Object(m)
            }
            _ => return Err(ck.fail(item.pos, &p, "must be a string")),
        };
        out.push(value);
    }
    Ok(json!(out))
}

fn networks(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    match &n.kind {
        Kind::Seq(_) => {
            for name in ck.strings(n, path)? {
                out.insert(name, Value::Null);
            }
        }
        Kind::Map(entries) => {
            for (name, _, v) in entries {
                let p = format!("{path}.{name}");
                let value = match &v.kind {
                    Kind::Null => Value::Null,
                    _ => {
                        let mut m = Map::new();
                        for (k, pos, e) in ck.map_or_null(v, &p)? {
                            let kp = format!("{p}.{k}");
                            let value = match k.as_str() {
                                "aliases" => json!(ck.strings(e, &kp)?),
                                "ipv4_address" | "ipv6_address" => json!(ck.string(e, &kp)?),
                                _ => return Err(ck.unknown(*pos, &p, k)),
                            };
                            m.insert(k.clone(), value);
                        }
                        Value::Object(m)
                    }
                };
                out.insert(name.clone(), value);
            }
        }
        _ => return Err(ck.fail(n.pos, path, "must be a list")),
    }
    Ok(Value::Object(out))
}

fn ulimits(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (name, _, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{name}");
        let value = match &v.kind {
            Kind::Map(entries) => {
                let mut m = Map::new();
                for (k, pos, e) in entries {
                    if k != "soft" && k != "hard" {
                        return Err(ck.unknown(*pos, &p, k));
                    }
                    m.insert(k.clone(), json!(ck.int(e, &format!("{p}.{k}"))?));
                }
                Value::Object(m)
            }
            _ => json!(ck.int(v, &p)?),
        };
        out.insert(name.clone(), value);
    }
    Ok(Value::Object(out))
}

fn healthcheck(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match k.as_str() {
            "test" => match &v.kind {
                Kind::Str(s) => json!(["CMD-SHELL", s]),
                _ => json!(ck.strings(v, &p)?),
            },
            "interval" | "timeout" | "start_period" | "start_interval" => ck.duration(v, &p)?,
            "retries" => ck.number(v, &p)?,
            "disable" => match ck.bool(v, &p)? {
                true => json!(true),
                false => continue,
            },
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}

fn logging(ck: &Ck, n: &Node, path: &str) -> R {
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "mapping")? {
        let p = format!("{path}.{k}");
        let value = match k.as_str() {
            "driver" => json!(ck.string(v, &p)?),
            "options" => {
                let mut m = Map::new();
                for (o, _, e) in ck.map(v, &p, "mapping")? {
                    let text = scalar_text(e).ok_or_else(|| {
                        ck.fail(
                            e.pos,
                            &format!("{p}.{o}"),
                            "must be a string, number or null",
                        )
                    })?;
                    m.insert(o.clone(), json!(text));
                }
                Value::Object(m)
            }
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}

/// Stack deploy ignores `build` (with a warning), but the loader checks it.
fn build(ck: &Ck, n: &Node, path: &str) -> R {
    if let Kind::Str(s) = &n.kind {
        return Ok(json!({ "context": s }));
    }
    let mut out = Map::new();
    for (k, pos, v) in ck.map(n, path, "string")? {
        let p = format!("{path}.{k}");
        let value = match k.as_str() {
            "context" | "dockerfile" | "network" | "target" => json!(ck.string(v, &p)?),
            "shm_size" => json!(ck.string_or_number(v, &p)?),
            "args" => ck.list_or_dict(v, &p, Value::Null)?,
            "labels" => ck.list_or_dict(v, &p, json!(""))?,
            "cache_from" | "extra_hosts" => json!(ck.strings(v, &p)?),
            _ => return Err(ck.unknown(*pos, path, k)),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::shell_words;

    #[test]
    fn commands_split_as_a_shell_splits_them() {
        assert_eq!(
            shell_words(r#"sh -c 'echo "x y"' a\ b "q\"z""#).unwrap(),
            vec!["sh", "-c", "echo \"x y\"", "a b", "q\"z"]
        );
        assert_eq!(shell_words("  "), Some(vec![]));
        assert_eq!(shell_words("'open"), None);
    }
}
