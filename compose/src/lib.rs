//! Compose files, loaded as `docker stack deploy` loads them: YAML with
//! anchors and merge keys, `${VAR}` interpolation (from the environment,
//! then the `.env` file beside the first file), docker's schema checks
//! with its messages, and docker's normal form, so that `swarm stack
//! config` prints what `docker stack config` prints. Every error names the
//! file, line and column at fault.
//!
//! The result is a JSON value in that normal form; the stack deployer
//! reads its typed parts from it.

mod check;
mod deploy;
mod dotenv;
pub mod emit;
mod interpolate;
mod merge;
mod ports;
mod service;
mod top;
mod volumes;
pub mod yaml;

use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

pub use check::{go_duration, parse_duration};

/// What failed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub file: PathBuf,
    pub pos: Option<yaml::Pos>,
    pub msg: String,
}

impl Error {
    pub fn at(file: &Path, pos: yaml::Pos, msg: impl Into<String>) -> Error {
        Error {
            file: file.to_path_buf(),
            pos: Some(pos),
            msg: msg.into(),
        }
    }

    pub fn in_file(file: &Path, msg: impl Into<String>) -> Error {
        Error {
            file: file.to_path_buf(),
            pos: None,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.pos {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                p.line,
                p.col,
                self.msg
            ),
            None => write!(f, "{}: {}", self.file.display(), self.msg),
        }
    }
}

impl std::error::Error for Error {}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Print `${VAR}` as written (`--skip-interpolation`).
    pub skip_interpolation: bool,
}

/// Load and merge `files` in order, each checked on its own first.
/// Variables come from the process environment, then from the `.env`
/// beside the first file.
pub fn load(files: &[PathBuf], opts: &Options) -> Result<Value, Error> {
    let first = files
        .first()
        .ok_or_else(|| Error::in_file(Path::new("-"), "no compose file given"))?;
    let dir = first
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| Error::in_file(first, format!("cannot open its directory: {e}")))?;
    let dotenv = dotenv::read(&dir.join(".env"))?;
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| dotenv.get(name).cloned())
    };
    let mut merged: Option<Value> = None;
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::in_file(file, format!("cannot read: {e}")))?;
        let mut root = yaml::parse(file, &text)?;
        if !opts.skip_interpolation {
            interpolate::interpolate(file, &mut root, &lookup)?;
        }
        let ck = check::Ck {
            file,
            dir: dir.clone(),
        };
        let doc = top::document(&ck, &root)?;
        merged = Some(match merged {
            None => doc,
            Some(base) => merge::merge(base, doc),
        });
    }
    let doc = merged.expect("at least one file");
    check_key_widths(&doc, &mut Vec::new()).map_err(|msg| Error::in_file(first, msg))?;
    Ok(doc)
}

/// The longest key as printed, quotes and escapes included. YAML allows an
/// implicit key 1024 characters at most, and the printer (yaml-rust2)
/// writes every key implicitly, so a longer one (written explicitly in a
/// file, or a name in a list that the normal form makes a key) would print
/// as a document that does not load.
const MAX_KEY_WIDTH: usize = 1000;

fn printed_width(key: &str) -> usize {
    let escape = |c: char| match c {
        '"' | '\\' | '\u{8}' | '\t' | '\n' | '\u{c}' | '\r' => 2,
        c if (c as u32) < 0x20 => 6,
        _ => 1,
    };
    2 + key.chars().map(escape).sum::<usize>()
}

fn check_key_widths(v: &Value, path: &mut Vec<String>) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                path.push(k.chars().take(40).collect());
                if printed_width(k) > MAX_KEY_WIDTH {
                    return Err(format!(
                        "{}: a key longer than {MAX_KEY_WIDTH} characters as printed",
                        path.join(".")
                    ));
                }
                check_key_widths(v, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|i| check_key_widths(i, path)),
        _ => Ok(()),
    }
}

/// Where the key at `path` (`["secrets", "db_password"]`) stands in the
/// last of `files` that has it: what a deploy error found by the cluster
/// (an external secret that does not exist) points at. `None` when no
/// file has it or a file no longer parses.
pub fn locate(files: &[PathBuf], path: &[&str]) -> Option<(PathBuf, yaml::Pos)> {
    let mut found = None;
    for file in files {
        let text = std::fs::read_to_string(file).ok()?;
        let root = yaml::parse(file, &text).ok()?;
        let mut node = &root;
        let mut pos = None;
        for key in path {
            let yaml::Kind::Map(entries) = &node.kind else {
                pos = None;
                break;
            };
            match entries.iter().find(|(k, _, _)| k == key) {
                Some((_, p, v)) => {
                    pos = Some(*p);
                    node = v;
                }
                None => {
                    pos = None;
                    break;
                }
            }
        }
        if let Some(p) = pos {
            found = Some((file.clone(), p));
        }
    }
    found
}

#[cfg(test)]
mod locate_tests {
    use super::*;

    #[test]
    fn a_key_is_found_in_the_last_file_that_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, "secrets:\n  db:\n    external: true\n").unwrap();
        std::fs::write(&b, "services: {}\nsecrets:\n\n    db: {external: true}\n").unwrap();
        let (f, p) = locate(std::slice::from_ref(&a), &["secrets", "db"]).unwrap();
        assert_eq!((f, p.line, p.col), (a.clone(), 2, 3));
        let (f, p) = locate(&[a.clone(), b.clone()], &["secrets", "db"]).unwrap();
        assert_eq!((f, p.line, p.col), (b, 4, 5));
        assert!(locate(&[a], &["secrets", "nope"]).is_none());
    }
}

#[cfg(test)]
mod width_tests {
    use super::*;

    #[test]
    fn a_name_too_long_to_print_as_a_key_is_refused_whereever_it_becomes_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yml");
        // A network name in a list: the normal form makes it a key, and
        // each escaped control character prints as six.
        let name = "\\u0013".repeat(170);
        let text = format!("services:\n  web:\n    image: x\n    networks: [\"{name}\"]\n");
        std::fs::write(&file, text).unwrap();
        let e = load(std::slice::from_ref(&file), &Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("a key longer than 1000 characters as printed")
                && e.contains(": services.web.networks."),
            "{e}"
        );
        assert_eq!(printed_width("web"), 5);
        assert_eq!(printed_width("a\"\u{13}"), 2 + 1 + 2 + 6);
    }
}
