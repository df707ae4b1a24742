//! A YAML tree that remembers where each node came from, built from
//! yaml-rust2's parser events: anchors and aliases are resolved, merge keys
//! (`<<`) are applied, and plain scalars are typed as Go's yaml.v3 types
//! them (the library docker's compose loader uses), so `yes` stays a
//! string and `0x10` is an integer.

use crate::Error;
use std::collections::HashMap;
use std::path::Path;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a file, both 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Pos {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order, each with its own position.
    Map(Vec<Entry>),
}

/// A mapping's key, where the key stands, and its value.
pub type Entry = (String, Pos, Node);

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A node as plain data (extension fields are kept verbatim this way).
pub fn to_json(n: &Node) -> serde_json::Value {
    use serde_json::{json, Value};
    match &n.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => json!(b),
        Kind::Int(i) => json!(i),
        Kind::Float(f) => json!(f),
        Kind::Str(s) => json!(s),
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, _, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// Parse one file's text. An empty file is an empty mapping.
/// YAML's printable characters (c-printable): anything else may only be
/// written as an escape in a double-quoted string. go-yaml, which docker
/// reads compose files with, refuses the rest; yaml-rust2 does not.
fn printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{85}')
        || matches!(c, '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// The first character YAML does not allow in a stream, with its position.
fn unprintable(text: &str) -> Option<Pos> {
    let (mut line, mut col) = (1, 1);
    for (i, c) in text.chars().enumerate() {
        // A byte order mark may open the stream.
        let bom = i == 0 && c == '\u{feff}';
        if !(printable(c) || bom) {
            return Some(Pos { line, col });
        }
        if c == '\n' {
            (line, col) = (line + 1, 1);
        } else {
            col += 1;
        }
    }
    None
}

pub fn parse(file: &Path, text: &str) -> Result<Node, Error> {
    if let Some(pos) = unprintable(text) {
        return Err(Error::at(
            file,
            pos,
            "yaml: control characters are not allowed",
        ));
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e| Error::at(file, (*e.marker()).into(), format!("yaml: {}", e.info())))?;
    if let Some((pos, msg)) = builder.error {
        return Err(Error::at(file, pos, msg));
    }
    Ok(builder.root.unwrap_or(Node {
        kind: Kind::Map(Vec::new()),
        pos: Pos { line: 1, col: 1 },
    }))
}

enum Open {
    Seq(Pos, usize, Vec<Node>),
    // A mapping, and its key while the value is being read.
    Map(Pos, usize, Vec<Entry>, Option<(String, Pos)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<(Pos, String)>,
}

impl Builder {
    fn fail(&mut self, pos: Pos, msg: String) {
        self.error.get_or_insert((pos, msg));
    }

    /// A finished node goes into whatever is open, or becomes the root.
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, _, items)) => items.push(node),
            Some(Open::Map(_, _, entries, key)) => match key.take() {
                None => {
                    let name = match &node.kind {
                        Kind::Str(s) => s.clone(),
                        Kind::Int(i) => i.to_string(),
                        Kind::Bool(b) => b.to_string(),
                        Kind::Float(f) => f.to_string(),
                        Kind::Null => "null".into(),
                        _ => {
                            let err = (node.pos, "yaml: mapping keys must be scalars".to_string());
                            self.error.get_or_insert(err);
                            String::new()
                        }
                    };
                    *key = Some((name, node.pos));
                }
                Some((name, pos)) => {
                    if let Some((_, first, _)) = entries.iter().find(|(k, _, _)| *k == name) {
                        let msg = format!(
                            "yaml: mapping key \"{name}\" already defined at line {}",
                            first.line
                        );
                        self.error.get_or_insert((pos, msg));
                    }
                    entries.push((name, pos, node));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let kind = if style == TScalarStyle::Plain {
                    plain(&value)
                } else {
                    Kind::Str(value)
                };
                self.push(Node { kind, pos }, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.push(node, 0);
                }
                None => self.fail(pos, "yaml: unknown anchor".into()),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(pos, anchor, Vec::new(), None))
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq(pos, anchor, items)) = self.stack.pop() {
                    self.push(
                        Node {
                            kind: Kind::Seq(items),
                            pos,
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(pos, anchor, entries, _)) = self.stack.pop() {
                    match merge_keys(entries) {
                        Ok(entries) => self.push(
                            Node {
                                kind: Kind::Map(entries),
                                pos,
                            },
                            anchor,
                        ),
                        Err((pos, msg)) => self.fail(pos, msg),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Apply `<<: *a` and `<<: [*a, *b]`: merged keys fill in only what the
/// mapping does not set itself, the first merged mapping winning.
fn merge_keys(entries: Vec<Entry>) -> Result<Vec<Entry>, (Pos, String)> {
    if !entries.iter().any(|(k, _, _)| k == "<<") {
        return Ok(entries);
    }
    let mut own = Vec::new();
    let mut merged = Vec::new();
    for (k, pos, v) in entries {
        if k != "<<" {
            own.push((k, pos, v));
            continue;
        }
        let sources = match v.kind {
            Kind::Seq(items) => items,
            _ => vec![v],
        };
        for source in sources {
            match source.kind {
                Kind::Map(m) => merged.extend(m),
                _ => {
                    return Err((
                        source.pos,
                        "yaml: map merge requires map or sequence of maps as the value".into(),
                    ))
                }
            }
        }
    }
    for (k, pos, v) in merged {
        if !own.iter().any(|(o, _, _)| *o == k) {
            own.push((k, pos, v));
        }
    }
    Ok(own)
}

/// yaml.v3's resolution of a plain scalar.
fn plain(s: &str) -> Kind {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = int(s) {
        return Kind::Int(i);
    }
    let numeric = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b"+-.".contains(&b))
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE_".contains(&b));
    if numeric {
        if let Ok(f) = s.replace('_', "").parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(s.to_string())
}

fn int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body.replace('_', "");
    let v = if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = body.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if let Some(bin) = body.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        // yaml.v3 keeps YAML 1.1's leading-zero octal for integers.
        i64::from_str_radix(&body[1..], 8).ok()?
    } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        body.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Node, Error> {
        parse(Path::new("f.yml"), text)
    }

    #[test]
    fn plain_scalars_are_typed_as_yaml_v3_types_them() {
        let n = load("a: yes\nb: 0x10\nc: 1.5\nd: ~\ne: '1'\nf: true\ng: 017\n").unwrap();
        assert_eq!(n.get("a").unwrap().kind, Kind::Str("yes".into()));
        assert_eq!(n.get("b").unwrap().kind, Kind::Int(16));
        assert_eq!(n.get("c").unwrap().kind, Kind::Float(1.5));
        assert_eq!(n.get("d").unwrap().kind, Kind::Null);
        assert_eq!(n.get("e").unwrap().kind, Kind::Str("1".into()));
        assert_eq!(n.get("f").unwrap().kind, Kind::Bool(true));
        assert_eq!(n.get("g").unwrap().kind, Kind::Int(15));
    }

    #[test]
    fn merge_keys_fill_in_what_the_mapping_lacks() {
        let n = load("x: &a {p: 1, q: 2}\ny:\n  <<: *a\n  q: 3\n").unwrap();
        let y = n.get("y").unwrap();
        assert_eq!(y.get("p").unwrap().kind, Kind::Int(1));
        assert_eq!(y.get("q").unwrap().kind, Kind::Int(3));
    }

    #[test]
    fn positions_and_duplicate_keys() {
        let n = load("a:\n  b: 1\n").unwrap();
        assert_eq!(
            n.get("a").unwrap().get("b").unwrap().pos,
            Pos { line: 2, col: 6 }
        );
        let e = load("a: 1\nb: 2\na: 3\n").unwrap_err().to_string();
        assert_eq!(
            e,
            "f.yml:3:1: yaml: mapping key \"a\" already defined at line 1"
        );
        let e = load("a:\n  b: [\u{13}x]\n").unwrap_err().to_string();
        assert_eq!(e, "f.yml:2:7: yaml: control characters are not allowed");
        assert!(
            load("a: \"\\u0013x\"\n").is_ok(),
            "escaped, as docker allows"
        );
        let e = load("a: [x\n").unwrap_err().to_string();
        assert!(e.starts_with("f.yml:2:1: yaml: "), "{e}");
    }
}
