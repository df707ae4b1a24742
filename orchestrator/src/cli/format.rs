//! Output helpers shared by the CLI commands: docker-style tables, relative
//! times, durations, and JSON lines for `--format json` (templates are in
//! `template.rs`).

use crate::types::Millis;
use anyhow::{bail, Result};

/// Print rows as a left-aligned table, as docker prints its own.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut all = vec![header.iter().map(|h| h.to_string()).collect()];
    all.extend(rows.iter().cloned());
    print!("{}", tabulate(&all));
}

/// Cells aligned as docker's tabwriter aligns them (minimum width 10,
/// padding 3): every cell but a line's last is padded to its column's
/// width; a line ends without trailing blanks.
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max((cell.chars().count() + 3).max(10));
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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

/// A date in UTC, `2036-11-30`, from seconds since the epoch (the civil
/// calendar from a day count, as in Hinnant's `civil_from_days`).
pub fn utc_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
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

/// Parse a docker duration such as `5s`, `500ms`, `1m30s` or `2h`: Go's
/// `time.ParseDuration`, which docker's flags use, shared with the compose
/// loader so that a duration means the same on the command line and in a
/// stack file.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    match swarm_compose::parse_duration(s.trim()) {
        Some(ns) if ns >= 0 => Ok(std::time::Duration::from_nanos(ns as u64)),
        Some(_) => bail!("invalid duration {s:?}: it must not be negative"),
        None => bail!(
            "invalid duration {s:?}: expected numbers with units (ns, us, ms, s, m, h), e.g. 5s, 500ms or 1m30s"
        ),
    }
}

/// A time flag (`--since`, `--until`) as Unix seconds: an RFC 3339
/// time, Unix seconds, or a duration before `now`, as docker takes them.
pub fn parse_time(flag: &str, s: &str, now: i64) -> Result<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(secs as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    let Ok(ago) = parse_duration(s) else {
        bail!("invalid {flag} {s:?}: expected a time such as 2013-01-02T13:23:37Z, Unix seconds, or a duration such as 42m")
    };
    Ok(now - ago.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_seconds_or_durations_before_now() {
        let now = 1_700_000_000;
        let t = |s| parse_time("--since", s, now);
        assert_eq!(t("2013-01-02T13:23:37Z").unwrap(), 1_357_133_017);
        assert_eq!(t("1357133017").unwrap(), 1_357_133_017);
        assert_eq!(t("42m").unwrap(), now - 42 * 60);
        let err = t("yesterday").unwrap_err().to_string();
        assert!(
            err.contains("yesterday") && err.contains("--since"),
            "{err}"
        );
    }

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
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(2_095_372_800), "2036-05-26");
        assert_eq!(utc_date(-86_400), "1969-12-31");
        assert_eq!(ago(0, 1_000), "1 second ago");
        assert_eq!(ago(0, 125_000), "2 minutes ago");
    }
}
