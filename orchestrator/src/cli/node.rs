//! `swarm init`, `swarm info` and `swarm node ...`

use super::format::{json_lines, table};
use super::service::fetch_nodes;
use super::{is_json, Format};
use crate::api::client::{connect, status_error};
use crate::api::pb;
use crate::types::{Availability, NodeRole, NodeState};
use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List nodes in the swarm.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
}

pub async fn init(host: &str, advertise_addr: Option<String>) -> Result<()> {
    let mut c = connect(host).await?;
    let req = pb::InitRequest {
        advertise_addr: advertise_addr.unwrap_or_default(),
    };
    let resp = c.init(req).await.map_err(status_error)?.into_inner();
    println!(
        "Swarm initialized: current node ({}) is now a manager.",
        resp.node_id
    );
    Ok(())
}

pub async fn info(host: &str, format: Option<Format>) -> Result<()> {
    let mut c = connect(host).await?;
    let i = c
        .info(pb::InfoRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    if is_json(format) {
        json_lines(&[json!({
            "NodeID": i.node_id, "Hostname": i.hostname, "Swarm": i.swarm_state,
            "ClusterID": i.cluster_id, "IsLeader": i.is_leader, "AdvertiseAddr": i.advertise_addr,
        })]);
    } else {
        println!(
            "Node ID:   {}\nHostname:  {}\nSwarm:     {}",
            i.node_id, i.hostname, i.swarm_state
        );
        if !i.cluster_id.is_empty() {
            println!(
                "Cluster:   {}\nLeader:    {}\nAddress:   {}",
                i.cluster_id, i.is_leader, i.advertise_addr
            );
        }
    }
    Ok(())
}

pub async fn run(host: &str, cmd: NodeCmd) -> Result<()> {
    let mut c = connect(host).await?;
    match cmd {
        NodeCmd::Ls { quiet, format } => {
            let me = c
                .info(pb::InfoRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            let nodes = fetch_nodes(&mut c).await?;
            if quiet {
                nodes.iter().for_each(|n| println!("{}", n.id));
                return Ok(());
            }
            let rows: Vec<_> = nodes
                .iter()
                .map(|n| {
                    let status = match n.state {
                        NodeState::Ready => "Ready",
                        NodeState::Down => "Down",
                        NodeState::Unknown => "Unknown",
                    };
                    let avail = match n.availability {
                        Availability::Active => "Active",
                        Availability::Pause => "Pause",
                        Availability::Drain => "Drain",
                    };
                    let manager = match (n.role, n.raft_id == me.leader_raft_id) {
                        (NodeRole::Manager, true) => "Leader",
                        (NodeRole::Manager, false) => "Reachable",
                        (NodeRole::Worker, _) => "",
                    };
                    let self_mark = if n.id == me.node_id { " *" } else { "" };
                    (n, status, avail, manager, self_mark)
                })
                .collect();
            if is_json(format) {
                let items: Vec<_> = rows.iter().map(|(n, status, avail, manager, self_mark)| json!({
                    "ID": n.id, "Hostname": n.hostname, "Status": status, "Availability": avail,
                    "ManagerStatus": manager, "EngineVersion": n.engine_version, "Self": !self_mark.is_empty(),
                    "Addr": n.addr,
                })).collect();
                json_lines(&items);
            } else {
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|(n, status, avail, manager, self_mark)| {
                        vec![
                            format!("{}{}", n.id, self_mark),
                            n.hostname.clone(),
                            status.to_string(),
                            avail.to_string(),
                            manager.to_string(),
                            n.engine_version.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "HOSTNAME",
                        "STATUS",
                        "AVAILABILITY",
                        "MANAGER STATUS",
                        "ENGINE VERSION",
                    ],
                    &rows,
                );
            }
        }
    }
    Ok(())
}
