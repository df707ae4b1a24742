//! The `.env` file beside the first compose file, which docker's stack
//! deploy ignores (moby#29133) and we honour: `KEY=VALUE` lines, `#`
//! comments, an optional `export `, and quoted values.

use crate::yaml::Pos;
use crate::Error;
use std::collections::HashMap;
use std::path::Path;

/// The variables of `path`; none when it does not exist.
pub fn read(path: &Path) -> Result<HashMap<String, String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(Error::in_file(path, format!("cannot read: {e}"))),
    }
}

pub fn parse(path: &Path, text: &str) -> Result<HashMap<String, String>, Error> {
    let mut vars = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            let pos = Pos {
                line: i + 1,
                col: 1,
            };
            return Err(Error::at(
                path,
                pos,
                format!("expected KEY=VALUE, found {line:?}"),
            ));
        };
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v.to_string()
        } else if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            v.replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else {
            // An unquoted value ends at a comment.
            value
                .split(" #")
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_string()
        };
        vars.insert(key.trim().to_string(), value);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_quotes_and_export() {
        let text = "# c\nA=1\nexport B = two # note\nC='x # y'\nD=\"l1\\nl2\"\n\nE=\n";
        let v = parse(Path::new(".env"), text).unwrap();
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "two");
        assert_eq!(v["C"], "x # y");
        assert_eq!(v["D"], "l1\nl2");
        assert_eq!(v["E"], "");
        let e = parse(Path::new(".env"), "A=1\nnope\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            ".env:2:1: expected KEY=VALUE, found \"nope\""
        );
    }
}
