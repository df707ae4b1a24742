//! `${VAR}` substitution, as docker's compose loader does it: `$VAR`,
//! `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
//! `${VAR?error}`, and `$$` for a literal `$`. A value that substitution
//! changed is then cast to the type its key takes (`replicas: ${N}` is an
//! integer), a value that it did not change never is (`replicas: "2"` stays
//! a string, and the schema refuses it).

use crate::yaml::{Kind, Node};
use crate::Error;
use std::path::Path;

/// Where variables come from: the process environment first, then `.env`.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Substitute in every string value of the tree, in place.
pub fn interpolate(file: &Path, node: &mut Node, env: &dyn Lookup) -> Result<(), Error> {
    walk(file, node, &mut Vec::new(), env)
}

fn walk(
    file: &Path,
    node: &mut Node,
    path: &mut Vec<String>,
    env: &dyn Lookup,
) -> Result<(), Error> {
    match &mut node.kind {
        Kind::Str(s) => {
            let new = substitute(s, env).map_err(|why| {
                Error::at(
                    file,
                    node.pos,
                    format!(
                        "invalid interpolation format for {}: \"{why}\"; you may need to escape any $ with another $",
                        path.join(".")
                    ),
                )
            })?;
            if new != *s {
                node.kind = match cast_for(path) {
                    Some(cast) => cast(&new).ok_or_else(|| {
                        Error::at(
                            file,
                            node.pos,
                            format!(
                                "failed to cast to expected type: invalid value \"{new}\" for {}",
                                path.join(".")
                            ),
                        )
                    })?,
                    None => Kind::Str(new),
                };
            }
        }
        Kind::Seq(items) => {
            for item in items {
                path.push("[]".into());
                let r = walk(file, item, path, env);
                path.pop();
                r?;
            }
        }
        Kind::Map(entries) => {
            for (k, _, v) in entries {
                path.push(k.clone());
                let r = walk(file, v, path, env);
                path.pop();
                r?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The template's value, or the text docker quotes in its error.
pub fn substitute(s: &str, env: &dyn Lookup) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| s.to_string())?;
            out.push_str(&braced(&body[..end], env).ok_or_else(|| s.to_string())??);
            rest = &body[end + 1..];
        } else {
            let n = name_len(after);
            if n == 0 {
                return Err(s.to_string());
            }
            out.push_str(&env.get(&after[..n]).unwrap_or_default());
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `NAME` then an optional `:-`, `-`, `:?` or `?` part; `None` when the
/// text is not one of those forms.
fn braced(body: &str, env: &dyn Lookup) -> Option<Result<String, String>> {
    let n = name_len(body);
    if n == 0 {
        return None;
    }
    let (name, op) = body.split_at(n);
    let value = env.get(name);
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let got = value.clone().unwrap_or_default();
    Some(Ok(if op.is_empty() {
        got
    } else if let Some(default) = op.strip_prefix(":-") {
        if non_empty {
            got
        } else {
            default.to_string()
        }
    } else if let Some(default) = op.strip_prefix('-') {
        if set {
            got
        } else {
            default.to_string()
        }
    } else if let Some(why) = op.strip_prefix(":?") {
        if !non_empty {
            return Some(Err(format!(
                "required variable {name} is missing a value: {why}"
            )));
        }
        got
    } else if let Some(why) = op.strip_prefix('?') {
        if !set {
            return Some(Err(format!(
                "required variable {name} is missing a value: {why}"
            )));
        }
        got
    } else {
        return None;
    }))
}

fn name_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.first()
        .is_none_or(|c| !(c.is_ascii_alphabetic() || *c == b'_'))
    {
        return 0;
    }
    b.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count()
}

type Cast = fn(&str) -> Option<Kind>;

fn to_int(s: &str) -> Option<Kind> {
    s.trim().parse().ok().map(Kind::Int)
}

fn to_float(s: &str) -> Option<Kind> {
    s.trim().parse().ok().map(Kind::Float)
}

fn to_bool(s: &str) -> Option<Kind> {
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(Kind::Bool(true)),
        "n" | "no" | "false" | "off" => Some(Kind::Bool(false)),
        _ => None,
    }
}

/// Docker's paths whose interpolated values are cast ("*" is any key,
/// "[]" any list item).
const CASTS: &[(&str, Cast)] = &[
    ("services.*.configs.[].mode", to_int),
    ("services.*.secrets.[].mode", to_int),
    ("services.*.healthcheck.retries", to_int),
    ("services.*.healthcheck.disable", to_bool),
    ("services.*.deploy.replicas", to_int),
    ("services.*.deploy.update_config.parallelism", to_int),
    (
        "services.*.deploy.update_config.max_failure_ratio",
        to_float,
    ),
    ("services.*.deploy.rollback_config.parallelism", to_int),
    (
        "services.*.deploy.rollback_config.max_failure_ratio",
        to_float,
    ),
    ("services.*.deploy.restart_policy.max_attempts", to_int),
    ("services.*.deploy.placement.max_replicas_per_node", to_int),
    ("services.*.ports.[].target", to_int),
    ("services.*.ports.[].published", to_int),
    ("services.*.ulimits.*", to_int),
    ("services.*.ulimits.*.hard", to_int),
    ("services.*.ulimits.*.soft", to_int),
    ("services.*.privileged", to_bool),
    ("services.*.read_only", to_bool),
    ("services.*.stdin_open", to_bool),
    ("services.*.tty", to_bool),
    ("services.*.volumes.[].read_only", to_bool),
    ("services.*.volumes.[].volume.nocopy", to_bool),
    ("networks.*.external", to_bool),
    ("networks.*.internal", to_bool),
    ("networks.*.attachable", to_bool),
    ("volumes.*.external", to_bool),
    ("secrets.*.external", to_bool),
    ("configs.*.external", to_bool),
];

fn cast_for(path: &[String]) -> Option<Cast> {
    CASTS.iter().find_map(|(pattern, cast)| {
        let parts: Vec<&str> = pattern.split('.').collect();
        let hit = parts.len() == path.len()
            && parts
                .iter()
                .zip(path)
                .all(|(p, s)| *p == s || (*p == "*" && s != "[]"));
        hit.then_some(*cast)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("v".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn every_form_of_substitution() {
        let s = |t: &str| substitute(t, &env);
        assert_eq!(s("a${SET}b$SET.$$x").unwrap(), "avbv.$x");
        assert_eq!(
            s("${UNSET:-d}${EMPTY:-e}${EMPTY-f}${UNSET-g}").unwrap(),
            "deg"
        );
        assert_eq!(s("${UNSET}").unwrap(), "");
        assert_eq!(
            s("${EMPTY:?say}").unwrap_err(),
            "required variable EMPTY is missing a value: say"
        );
        assert_eq!(s("${EMPTY?say}").unwrap(), "");
        for bad in ["${}", "$-a", "a$", "${X:+alt}", "${X"] {
            assert_eq!(s(bad).unwrap_err(), bad);
        }
    }

    #[test]
    fn only_changed_values_are_cast() {
        let path: Vec<String> = "services.web.deploy.replicas"
            .split('.')
            .map(String::from)
            .collect();
        assert!(cast_for(&path).is_some());
        let path: Vec<String> = "services.web.ulimits.nofile"
            .split('.')
            .map(String::from)
            .collect();
        assert!(cast_for(&path).is_some());
        let path: Vec<String> = "services.web.image".split('.').map(String::from).collect();
        assert!(cast_for(&path).is_none());
    }
}
