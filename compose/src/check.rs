//! Typed reads of tree nodes with docker's schema messages
//! (`services.web.deploy.replicas must be a integer`), each error at the
//! node's FILE:LINE:COLUMN. Every reader returns the value as docker's
//! `stack config` prints it.

pub use crate::yaml::to_json;
use crate::yaml::{Entry, Kind, Node, Pos};
use crate::Error;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// One file being checked: where errors point, and where relative paths
/// start.
pub struct Ck<'a> {
    pub file: &'a Path,
    pub dir: PathBuf,
}

pub type R<T = Value> = Result<T, Error>;

impl Ck<'_> {
    pub fn fail(&self, pos: Pos, path: &str, msg: &str) -> Error {
        Error::at(self.file, pos, format!("{path} {msg}"))
    }

    pub fn unknown(&self, pos: Pos, path: &str, key: &str) -> Error {
        let path = if path.is_empty() { "(root)" } else { path };
        Error::at(
            self.file,
            pos,
            format!("{path} Additional property {key} is not allowed"),
        )
    }

    /// The entries of a mapping; anything else is "must be a {what}"
    /// (docker names the first type a key accepts).
    pub fn map<'n>(&self, n: &'n Node, path: &str, what: &str) -> R<&'n [Entry]> {
        match &n.kind {
            Kind::Map(m) => Ok(m),
            _ => Err(self.fail(n.pos, path, &format!("must be a {what}"))),
        }
    }

    /// A mapping where `null` is allowed and means an empty one.
    pub fn map_or_null<'n>(&self, n: &'n Node, path: &str) -> R<&'n [Entry]> {
        match &n.kind {
            Kind::Null => Ok(&[]),
            _ => self.map(n, path, "mapping or null"),
        }
    }

    pub fn seq<'n>(&self, n: &'n Node, path: &str) -> R<&'n [Node]> {
        match &n.kind {
            Kind::Seq(s) => Ok(s),
            _ => Err(self.fail(n.pos, path, "must be a list")),
        }
    }

    pub fn string(&self, n: &Node, path: &str) -> R<String> {
        n.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.fail(n.pos, path, "must be a string"))
    }

    pub fn int(&self, n: &Node, path: &str) -> R<i64> {
        match n.kind {
            Kind::Int(i) => Ok(i),
            Kind::Float(f) if f.fract() == 0.0 => Ok(f as i64),
            _ => Err(self.fail(n.pos, path, "must be a integer")),
        }
    }

    pub fn number(&self, n: &Node, path: &str) -> R<Value> {
        match n.kind {
            Kind::Int(i) => Ok(json!(i)),
            Kind::Float(f) => Ok(json!(f)),
            _ => Err(self.fail(n.pos, path, "must be a number")),
        }
    }

    pub fn bool(&self, n: &Node, path: &str) -> R<bool> {
        match n.kind {
            Kind::Bool(b) => Ok(b),
            _ => Err(self.fail(n.pos, path, "must be a boolean")),
        }
    }

    /// A string or a number, printed as a string (`expose`, label values).
    pub fn string_or_number(&self, n: &Node, path: &str) -> R<String> {
        scalar_text(n).ok_or_else(|| self.fail(n.pos, path, "must be a string or number"))
    }

    /// docker's memory values: a size as a string (`50M`; a bare number is
    /// refused), printed as a string of bytes.
    pub fn bytes(&self, n: &Node, path: &str) -> R {
        let text = self.string(n, path)?;
        let b = ram_in_bytes(&text).ok_or_else(|| {
            Error::at(self.file, n.pos, format!("{path}: invalid size: '{text}'"))
        })?;
        Ok(json!(b.to_string()))
    }

    /// A Go duration, printed as Go prints it (`90s` is `1m30s`).
    pub fn duration(&self, n: &Node, path: &str) -> R<Value> {
        let s = self.string(n, path)?;
        let nanos = parse_duration(&s)
            .ok_or_else(|| self.fail(n.pos, path, "Does not match format 'duration'"))?;
        Ok(json!(go_duration(nanos)))
    }

    pub fn strings(&self, n: &Node, path: &str) -> R<Vec<String>> {
        self.seq(n, path)?
            .iter()
            .enumerate()
            .map(|(i, item)| self.string(item, &format!("{path}.{i}")))
            .collect()
    }

    /// A string or a list of strings, as a list (`dns`, `env_file`).
    pub fn string_or_list(&self, n: &Node, path: &str) -> R<Value> {
        match &n.kind {
            Kind::Str(s) => Ok(json!([s])),
            Kind::Seq(_) => Ok(json!(self.strings(n, path)?)),
            _ => Err(self.fail(n.pos, path, "must be a string")),
        }
    }

    /// `KEY=VALUE` items or a mapping, as a mapping. A key without a value
    /// is `missing` (null for environments, "" for labels).
    pub fn list_or_dict(&self, n: &Node, path: &str, missing: Value) -> R<Value> {
        let mut out = Map::new();
        match &n.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let s = self.string(item, &format!("{path}.{i}"))?;
                    match s.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), json!(v)),
                        None => out.insert(s, missing.clone()),
                    };
                }
            }
            Kind::Map(entries) => {
                for (k, _, v) in entries {
                    let value = match &v.kind {
                        Kind::Null => missing.clone(),
                        Kind::Seq(_) | Kind::Map(_) | Kind::Bool(_) => {
                            let msg = "must be a string, number or null";
                            return Err(self.fail(v.pos, &format!("{path}.{k}"), msg));
                        }
                        _ => json!(scalar_text(v).unwrap_or_default()),
                    };
                    out.insert(k.clone(), value);
                }
            }
            _ => return Err(self.fail(n.pos, path, "must be a mapping")),
        }
        Ok(Value::Object(out))
    }

    /// A relative path is taken from the compose file's directory, and
    /// `~` is the home directory, as docker does for binds and files.
    pub fn host_path(&self, p: &str) -> String {
        if let Some(rest) = p.strip_prefix("~/").or((p == "~").then_some("")) {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            return Path::new(&home).join(rest).to_string_lossy().into_owned();
        }
        if p.starts_with('/') {
            return p.to_string();
        }
        clean(&self.dir.join(p))
    }
}

/// `a/./b/../c` is `a/c`, as Go's filepath.Join cleans.
fn clean(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::RootDir => parts.clear(),
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A scalar as Go's fmt prints it: numbers without a needless fraction.
pub fn scalar_text(n: &Node) -> Option<String> {
    match &n.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Int(i) => Some(i.to_string()),
        Kind::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

const UNITS: &[(&str, f64)] = &[
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
];

/// Go's time.ParseDuration, in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = UNITS.iter().find(|(name, _)| *name == &rest[..u])?.1;
        total += number * scale;
        rest = &rest[u..];
    }
    // Go refuses a duration past ±292 years rather than wrapping.
    if total >= i64::MAX as f64 {
        return None;
    }
    let total = total.round() as i64;
    Some(if neg { -total } else { total })
}

/// Go's Duration.String.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = |v: u64, digits: u32| -> String {
        let scale = 10u64.pow(digits);
        let (whole, part) = (v / scale, v % scale);
        if part == 0 {
            whole.to_string()
        } else {
            let p = format!("{part:0width$}", width = digits as usize);
            format!("{whole}.{}", p.trim_end_matches('0'))
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 3));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 6));
    }
    let h = n / 3_600_000_000_000;
    let m = (n / 60_000_000_000) % 60;
    let s = frac(n % 60_000_000_000, 9);
    let mut out = sign.to_string();
    if h > 0 {
        out += &format!("{h}h{m}m");
    } else if m > 0 {
        out += &format!("{m}m");
    }
    out + &format!("{s}s")
}

/// docker's units.RAMInBytes: `50M` is 50 MiB.
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let s = s.trim();
    let n = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..n].parse().ok()?;
    let unit = s[n..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or(unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    Some((number * 1024f64.powi(power)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        let d = |s: &str| go_duration(parse_duration(s).unwrap());
        assert_eq!(d("10s"), "10s");
        assert_eq!(d("1m"), "1m0s");
        assert_eq!(d("90s"), "1m30s");
        assert_eq!(d("1500ms"), "1.5s");
        assert_eq!(d("100ms"), "100ms");
        assert_eq!(d("2h"), "2h0m0s");
        assert_eq!(d("1h2m3.5s"), "1h2m3.5s");
        assert_eq!(d("0"), "0s");
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("xx"), None);
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(ram_in_bytes("50M"), Some(52_428_800));
        assert_eq!(ram_in_bytes("1g"), Some(1 << 30));
        assert_eq!(ram_in_bytes("512"), Some(512));
        assert_eq!(ram_in_bytes("1.5kb"), Some(1536));
        assert_eq!(ram_in_bytes("xx"), None);
    }
}
