//! The task table that `service ps` and `node ps` share.

use super::format::{ago, short, table};
use super::{print_items, Format, FORMAT_HELP};
use crate::ports;
use crate::types::{now_ms, Task, TaskState};
use anyhow::Result;
use clap::Args;
use serde_json::json;
use std::collections::HashMap;

/// The output flags `service ps` and `node ps` share.
#[derive(Args, Debug, Clone)]
pub struct TableArgs {
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
    pub format: Option<Format>,
    /// Filter output (desired-state, id, name, node), as KEY=VALUE;
    /// repeatable.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
}

/// `service ps` and `node ps` output. `nodes` maps node IDs to hostnames.
pub fn print_tasks(
    mut tasks: Vec<Task>,
    nodes: &HashMap<String, String>,
    out: TableArgs,
) -> Result<()> {
    let TableArgs {
        no_trunc,
        quiet,
        format,
        filter,
    } = out;
    let filters = super::filter::Filters::parse(&filter, super::filter::TASK_KEYS)?;
    tasks.retain(|t| super::filter::task(&filters, t, nodes));
    // Slot by slot; within a slot the newest task first, older ones as history.
    tasks.sort_by(|a, b| {
        (
            &a.service_name,
            a.slot,
            &a.node_id,
            std::cmp::Reverse(a.meta.created_at),
        )
            .cmp(&(
                &b.service_name,
                b.slot,
                &b.node_id,
                std::cmp::Reverse(b.meta.created_at),
            ))
    });
    let now = now_ms();
    let trunc = |s: &str| {
        if no_trunc {
            s.to_string()
        } else {
            short(s).to_string()
        }
    };
    let mut rows = Vec::new();
    let mut json_items = Vec::new();
    let mut prev_group = None;
    for t in &tasks {
        let group = (
            t.service_id.clone(),
            t.slot,
            if t.slot == 0 { t.node_id.clone() } else { None },
        );
        let history = prev_group.as_ref() == Some(&group);
        prev_group = Some(group);
        let node = t
            .node_id
            .as_ref()
            .map(|n| nodes.get(n).cloned().unwrap_or_else(|| n.clone()))
            .unwrap_or_default();
        let name = if t.slot > 0 {
            format!("{}.{}", t.service_name, t.slot)
        } else {
            format!(
                "{}.{}",
                t.service_name,
                t.node_id.as_deref().map(short).unwrap_or("")
            )
        };
        let current = format!("{} {}", t.status.state, ago(t.status.timestamp, now));
        let err = t.status.err.clone().unwrap_or_default();
        if quiet {
            println!("{}", trunc(&t.id));
            continue;
        }
        // Like Docker, a task shows the ports published on its own node.
        let ports = if t.desired_state <= TaskState::Running {
            ports::display(&t.spec.ports)
        } else {
            String::new()
        };
        json_items.push(json!({
            "ID": t.id, "Name": name, "Image": t.spec.image, "Node": node,
            "DesiredState": t.desired_state.to_string(), "CurrentState": current,
            "Error": err, "Ports": ports, "Slot": t.slot, "ServiceID": t.service_id,
            "ContainerID": t.status.container_id,
            // The allocator's addresses, one per network; the gateway address
            // is node-local (chosen by the agent, as docker_gwbridge's are).
            "NetworksAttachments": t.networks.iter().flatten()
                .map(|a| json!({"NetworkID": a.network_id, "Addr": a.addr.to_string()}))
                .collect::<Vec<_>>(),
            "GatewayAddr": t.status.addr,
        }));
        let shown_err = if err.is_empty() || no_trunc {
            err.clone()
        } else {
            format!("\"{}\"", truncate(&err, 40))
        };
        rows.push(vec![
            trunc(&t.id),
            if history {
                format!(" \\_ {name}")
            } else {
                name
            },
            t.spec.image.clone(),
            node,
            t.desired_state.to_string(),
            current,
            shown_err,
            ports,
        ]);
    }
    if quiet {
        return Ok(());
    }
    print_items(&format, &json_items, || {
        table(
            &[
                "ID",
                "NAME",
                "IMAGE",
                "NODE",
                "DESIRED STATE",
                "CURRENT STATE",
                "ERROR",
                "PORTS",
            ],
            &rows,
        )
    })
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
