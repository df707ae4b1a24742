//! Output helpers shared by the CLI commands: docker-style tables, relative
//! times, durations, and JSON lines for `--format json`.

use crate::types::Millis;
use anyhow::{bail, Result};

/// Print rows as a left-aligned table with docker's three-space gutters.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{:<w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Print each value as one JSON document per line, as `docker --format json` does.
pub fn json_lines<T: serde::Serialize>(items: &[T]) {
    for item in items {
        println!("{}", serde_json::to_string(item).expect("values serialize"));
    }
}

/// The first 12 characters of an ID, as docker shows them.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// "3 seconds ago", "2 minutes ago": docker's human durations.
pub fn ago(then: Millis, now: Millis) -> String {
    let secs = now.saturating_sub(then) / 1000;
    let (n, unit) = match secs {
        0 => return "Less than a second ago".into(),
        1..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

/// Parse a docker duration such as `5s`, `500ms`, `1m30s` or `2h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let mut total_ms: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            bail!("invalid duration {s:?}: expected a number, e.g. 5s or 500ms");
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "" => bail!("invalid duration {s:?}: missing unit (ms, s, m or h)"),
            u => bail!("invalid duration {s:?}: unknown unit {u:?} (use ms, s, m or h)"),
        };
        total_ms += (value * factor) as u64;
        rest = &rest[unit_len..];
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_docker() {
        assert_eq!(parse_duration("5s").unwrap().as_millis(), 5000);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("1m30s").unwrap().as_millis(), 90_000);
        assert_eq!(parse_duration("0s").unwrap().as_millis(), 0);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3x").is_err());
    }

    #[test]
    fn relative_times() {
        assert_eq!(ago(0, 500), "Less than a second ago");
        assert_eq!(ago(0, 1_000), "1 second ago");
        assert_eq!(ago(0, 125_000), "2 minutes ago");
    }
}
