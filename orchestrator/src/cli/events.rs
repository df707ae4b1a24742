//! `swarm events`: the cluster's events as `docker events` shows them, from
//! the local manager (see `crate::events`).

use super::format::parse_time;
use super::{print_items, Format, FORMAT_HELP};
use crate::api::client::{connect, status_error};
use crate::api::pb;
use anyhow::{Context, Result};
use clap::Args;
use futures::StreamExt;
use serde_json::Value;
use std::io::Write;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show events since a time (e.g. "2013-01-02T13:23:37Z", Unix
    /// seconds, or "10m" for ten minutes ago); by default only new ones.
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this time, then exit.
    #[arg(long)]
    pub until: Option<String>,
    /// Filter (type=service|node|task|network|secret|config,
    /// event=create|update|remove, service=, node=, task=, network=,
    /// secret=, config= by name or ID), as KEY=VALUE; repeatable.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
    pub format: Option<Format>,
}

const NANOS: i64 = 1_000_000_000;

/// Docker's line for an event: time, type, action, ID, then the sorted
/// attributes.
fn line(e: &Value) -> String {
    let nanos = e["timeNano"].as_i64().unwrap_or_default();
    let time = chrono::DateTime::from_timestamp(nanos / NANOS, (nanos % NANOS) as u32)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string())
        .unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out = format!(
        "{time} {} {} {}",
        text(&e["Type"]),
        text(&e["Action"]),
        text(&e["Actor"]["ID"])
    );
    if let Some(attrs) = e["Actor"]["Attributes"]
        .as_object()
        .filter(|a| !a.is_empty())
    {
        let pairs: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        out.push_str(&format!(" ({})", pairs.join(", ")));
    }
    out
}

pub async fn events(host: &str, args: EventsArgs) -> Result<()> {
    let now = chrono::Utc::now().timestamp();
    let nanos = |flag, s: &Option<String>| -> Result<i64> {
        Ok(s.as_deref()
            .map(|s| parse_time(flag, s, now))
            .transpose()?
            .map_or(0, |secs| secs * NANOS))
    };
    let req = pb::EventsRequest {
        // Without --since, only what happens from now on.
        since: match &args.since {
            Some(_) => nanos("--since", &args.since)?,
            None => crate::types::now_ns(),
        },
        until: nanos("--until", &args.until)?,
        filters: args.filter,
    };
    let mut c = connect(host).await?;
    let mut stream = c.events(req).await.map_err(status_error)?.into_inner();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(status_error)?;
        let event: Value =
            serde_json::from_str(&msg.event_json).context("an event from the daemon")?;
        print_items(&args.format, std::slice::from_ref(&event), || {
            println!("{}", line(&event))
        })?;
        std::io::stdout().flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_dockers() {
        let e = serde_json::json!({
            "Type": "service", "Action": "update",
            "Actor": {"ID": "abc", "Attributes": {"name": "web", "replicas.new": "3", "replicas.old": "2"}},
            "scope": "swarm", "time": 1700000000, "timeNano": 1_700_000_000_000_000_123i64,
        });
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20.000000123Z service update abc (name=web, replicas.new=3, replicas.old=2)"
        );
    }
}
