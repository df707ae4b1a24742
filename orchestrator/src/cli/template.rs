//! `--format`: `table`, `json`, or a Go template as docker takes it
//! (`--format '{{.Name}}'`, `--format 'table {{.ID}}\t{{.Image}}'`), run by
//! gotmpl (a port of Go's text/template) with docker's extra functions.
//!
//! A template sees the same objects that `--format json` prints, so the
//! field names are one list per command. As in docker, a template prints
//! one line per object; with `table` its cells are aligned and a header row
//! names each field (`DesiredState` becomes `DESIRED STATE`), and the
//! literal `\t` and `\n` that a shell passes through are a tab and a newline.

use gotmpl::{MissingKey, Template, TemplateError, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What `--format` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// The command's own table (also `--format table`).
    Table,
    /// One JSON object per line.
    Json,
    /// A Go template, per object; `table` when it began with `table`.
    Template { source: String, table: bool },
}

impl Format {
    /// clap's value parser: a template that does not parse is refused
    /// before anything is asked of the daemon.
    pub fn parse(s: &str) -> Result<Format, String> {
        let (table, rest) = match s.strip_prefix("table") {
            Some(rest) => (true, rest.trim()),
            None => (false, s),
        };
        let format = match (table, rest, s) {
            (true, "", _) => Format::Table,
            (_, _, "json") => Format::Json,
            _ => Format::Template {
                source: rest.to_string(),
                table,
            },
        };
        if let Format::Template { source, .. } = &format {
            compile(source, false).map_err(|e| e.to_string())?;
        }
        Ok(format)
    }
}

/// Render a listing's `items` (JSON objects) with a template: each
/// object's line, and for a table the header first and the cells aligned.
/// As docker's listings do, it reads a literal `\t` or `\n` as a tab or a
/// newline.
pub fn render(source: &str, table: bool, items: &[serde_json::Value]) -> anyhow::Result<String> {
    let source = source.replace("\\t", "\t").replace("\\n", "\n");
    if !table {
        return render_inspected(&source, items);
    }
    let mut lines = each(&source, items)?;
    let header = compile(&source, true)?.execute_to_string(&header(&source))?;
    lines.insert(0, header);
    let rows: Vec<Vec<String>> = lines
        .iter()
        .flat_map(|l| l.split('\n'))
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    Ok(super::format::tabulate(&rows))
}

/// A line per object, the template's text as it is: what `inspect` prints
/// (docker's `inspect` leaves `\t` alone), and a listing that is no table.
pub fn render_inspected(source: &str, items: &[serde_json::Value]) -> anyhow::Result<String> {
    Ok(each(source, items)?
        .iter()
        .map(|l| format!("{l}\n"))
        .collect())
}

fn each(source: &str, items: &[serde_json::Value]) -> anyhow::Result<Vec<String>> {
    let tmpl = compile(source, false)?;
    items
        .iter()
        .map(|item| {
            let data = gotmpl::to_value(item)?;
            tmpl.execute_to_string(&data).map_err(|e| {
                anyhow::anyhow!("--format: {e} (the fields are those --format json prints)")
            })
        })
        .collect()
}

/// The template with docker's functions. For the header row each of them
/// gives back its first argument, the header text, as docker's do.
fn compile(source: &str, header: bool) -> Result<Template, TemplateError> {
    let mut t = Template::new("").missing_key(MissingKey::Error);
    for (name, f) in functions() {
        t = if header {
            t.func(name, |args: &[Value]| {
                Ok(args.first().cloned().unwrap_or(Value::Nil))
            })
        } else {
            t.func(name, f)
        };
    }
    t.parse(source)
}

type Func = fn(&[Value]) -> gotmpl::Result<Value>;

fn functions() -> [(&'static str, Func); 8] {
    [
        ("json", |a| {
            Ok(text(
                serde_json::to_string(&to_json(arg(a, 0)?)).unwrap_or_default(),
            ))
        }),
        ("upper", |a| Ok(text(string(a, 0)?.to_uppercase()))),
        ("lower", |a| Ok(text(string(a, 0)?.to_lowercase()))),
        ("title", |a| Ok(text(title(&string(a, 0)?)))),
        ("join", |a| {
            let Value::List(items) = arg(a, 0)? else {
                return Err(bad("join takes a list and a separator"));
            };
            let parts: Vec<String> = items.iter().map(|v| v.to_string()).collect();
            Ok(text(parts.join(&string(a, 1)?)))
        }),
        ("split", |a| {
            let (s, sep) = (string(a, 0)?, string(a, 1)?);
            Ok(Value::List(s.split(sep.as_str()).map(text).collect()))
        }),
        ("truncate", |a| {
            let n = arg(a, 1)?
                .as_int()
                .ok_or_else(|| bad("truncate takes a length"))?;
            Ok(text(
                string(a, 0)?
                    .chars()
                    .take(n.max(0) as usize)
                    .collect::<String>(),
            ))
        }),
        ("pad", |a| {
            let count = |i| arg(a, i).ok().and_then(Value::as_int).unwrap_or(0).max(0) as usize;
            let s = string(a, 0)?;
            Ok(text(format!(
                "{}{s}{}",
                " ".repeat(count(1)),
                " ".repeat(count(2))
            )))
        }),
    ]
}

fn bad(msg: &str) -> TemplateError {
    TemplateError::Exec(msg.into())
}

fn arg(args: &[Value], i: usize) -> gotmpl::Result<&Value> {
    args.get(i).ok_or_else(|| bad("missing argument"))
}

fn string(args: &[Value], i: usize) -> gotmpl::Result<String> {
    Ok(arg(args, i)?.to_string())
}

fn text(s: impl AsRef<str>) -> Value {
    Value::String(Arc::from(s.as_ref()))
}

/// Go's `strings.Title` as docker uses it: each word's first letter upper.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::Uint(n) => J::from(*n),
        Value::Float(f) => J::from(*f),
        Value::String(s) => J::String(s.to_string()),
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
    }
}

/// The header row's data: every field the template names (`.Name`,
/// `.Spec.Name`), each answering with its header text. Taken from the
/// template, so an empty list still gets its header, as in docker.
fn header(source: &str) -> Value {
    #[derive(Default)]
    struct Node(BTreeMap<String, Node>);
    let mut root = Node::default();
    for action in source.split("{{").skip(1) {
        let action = action.split("}}").next().unwrap_or_default();
        let bytes = action.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let starts = bytes[i] == b'.'
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
            if !starts {
                i += 1;
                continue;
            }
            let end = action[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .map_or(action.len(), |n| i + n);
            let mut node = &mut root;
            for field in action[i..end].split('.').filter(|f| !f.is_empty()) {
                node = node.0.entry(field.to_string()).or_default();
            }
            i = end;
        }
    }
    fn value(name: &str, node: &Node) -> Value {
        if node.0.is_empty() {
            return text(heading(name));
        }
        let map = node
            .0
            .iter()
            .map(|(k, n)| (Arc::from(k.as_str()), value(k, n)));
        Value::Map(Arc::new(map.collect()))
    }
    value("", &root)
}

/// A field's header text as docker writes it: `DesiredState` is
/// `DESIRED STATE`, `TLSStatus` is `TLS STATUS`, `ID` stays `ID`.
fn heading(field: &str) -> String {
    let chars: Vec<char> = field.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let word_starts = i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase()
                || chars.get(i + 1).is_some_and(|n| n.is_lowercase())
                    && chars[i - 1].is_uppercase());
        if word_starts {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items() -> Vec<serde_json::Value> {
        vec![
            json!({"ID": "abcdef123456789", "Name": "web", "Replicas": "2/2",
                   "Labels": ["a", "b"], "Spec": {"Name": "web", "Mode": "replicated"}}),
            json!({"ID": "0123456789abcdef", "Name": "db-primary", "Replicas": "1/1",
                   "Labels": [], "Spec": {"Name": "db-primary", "Mode": "global"}}),
        ]
    }

    fn run(format: &str) -> String {
        match Format::parse(format).unwrap() {
            Format::Template { source, table } => render(&source, table, &items()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_templates_print_a_line_per_object() {
        assert_eq!(run("{{.Name}}"), "web\ndb-primary\n");
        assert_eq!(
            run("{{.Name}}: {{.Spec.Mode}}"),
            "web: replicated\ndb-primary: global\n"
        );
        assert_eq!(
            run(r"{{.Name}}\t{{.Replicas}}"),
            "web\t2/2\ndb-primary\t1/1\n"
        );
    }

    #[test]
    fn tables_have_a_header_and_docker_s_alignment() {
        // tabwriter(minwidth 10, padding 3), as docker's formatter.
        assert_eq!(
            run(r"table {{.Name}}\t{{.Replicas}}\t{{.ID}}"),
            "NAME         REPLICAS   ID\n\
             web          2/2        abcdef123456789\n\
             db-primary   1/1        0123456789abcdef\n"
        );
        assert_eq!(
            run("table {{.Spec.Name | upper}}").lines().next(),
            Some("NAME")
        );
        let empty = render("{{.DesiredState}}\t{{.ID}}", true, &[]).unwrap();
        assert_eq!(empty, "DESIRED STATE   ID\n");
    }

    #[test]
    fn docker_s_functions() {
        assert_eq!(run("{{json .Labels}}"), "[\"a\",\"b\"]\n[]\n");
        assert_eq!(
            run("{{json .Spec}}").lines().next(),
            Some(r#"{"Mode":"replicated","Name":"web"}"#)
        );
        assert_eq!(run(r#"{{join .Labels ","}}"#), "a,b\n\n");
        assert_eq!(
            run("{{upper .Name}} {{lower \"ABC\"}}"),
            "WEB abc\nDB-PRIMARY abc\n"
        );
        assert_eq!(run("{{title .Name}}"), "Web\nDb-Primary\n");
        assert_eq!(run("{{truncate .ID 5}}"), "abcde\n01234\n");
        assert_eq!(run(r#"{{index (split .Name "-") 0}}"#), "web\ndb\n");
        assert_eq!(run("[{{pad .Replicas 1 2}}]"), "[ 2/2  ]\n[ 1/1  ]\n");
        assert_eq!(
            run("{{if eq .Spec.Mode \"global\"}}{{.Name}}{{end}}"),
            "\ndb-primary\n"
        );
    }

    #[test]
    fn json_and_table_alone_are_the_built_in_outputs() {
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        assert_eq!(Format::parse("table"), Ok(Format::Table));
        assert!(matches!(
            Format::parse("{{json .}}"),
            Ok(Format::Template { .. })
        ));
    }

    #[test]
    fn a_bad_template_or_field_is_refused_by_name() {
        let err = Format::parse("{{.Name").unwrap_err();
        assert!(err.contains("template"), "{err}");
        let err = render("{{.Nmae}}", false, &items())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Nmae"), "{err}");
    }

    #[test]
    fn headings_split_words_as_docker_s_do() {
        assert_eq!(heading("ID"), "ID");
        assert_eq!(heading("DesiredState"), "DESIRED STATE");
        assert_eq!(heading("TLSStatus"), "TLS STATUS");
        assert_eq!(heading("ServiceID"), "SERVICE ID");
        assert_eq!(heading("EngineVersion"), "ENGINE VERSION");
    }
}
