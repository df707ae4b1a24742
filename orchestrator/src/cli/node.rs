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
use std::time::Duration;

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

pub async fn init(
    host: &str,
    advertise_addr: Option<String>,
    cert_expiry: Option<Duration>,
    heartbeat: Option<Duration>,
) -> Result<()> {
    let mut c = connect(host).await?;
    let req = pb::InitRequest {
        advertise_addr: advertise_addr.unwrap_or_default(),
        cert_expiry_ms: cert_expiry.map_or(0, |d| d.as_millis() as u64),
        heartbeat_ms: heartbeat.map_or(0, |d| d.as_millis() as u64),
    };
    let resp = c.init(req).await.map_err(status_error)?.into_inner();
    println!(
        "Swarm initialized: current node ({}) is now a manager.\n",
        resp.node_id
    );
    print_join_command(&mut c, "worker").await?;
    println!("To add a manager to this swarm, run 'swarm join-token manager' and follow the instructions.\n");
    Ok(())
}

async fn print_join_command(c: &mut crate::api::client::Client, role: &str) -> Result<()> {
    let t = c
        .join_token(pb::JoinTokenRequest {
            role: role.into(),
            rotate: false,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    println!(
        "To add a {role} to this swarm, run the following command:\n\n    swarm join --token {} {}\n",
        t.token, t.manager_addr
    );
    Ok(())
}

pub async fn join(
    host: &str,
    token: String,
    advertise_addr: Option<String>,
    remote: String,
) -> Result<()> {
    let mut c = connect(host).await?;
    let req = pb::JoinRequest {
        token,
        remote_addr: remote,
        advertise_addr: advertise_addr.unwrap_or_default(),
    };
    let resp = c.join(req).await.map_err(status_error)?.into_inner();
    match resp.role.as_str() {
        "manager" => println!("This node joined a swarm as a manager."),
        _ => println!("This node joined a swarm as a worker."),
    }
    Ok(())
}

pub async fn join_token(host: &str, role: &str, quiet: bool, rotate: bool) -> Result<()> {
    let mut c = connect(host).await?;
    if rotate {
        c.join_token(pb::JoinTokenRequest {
            role: role.into(),
            rotate: true,
        })
        .await
        .map_err(status_error)?;
        if !quiet {
            println!("Successfully rotated {role} join token.\n");
        }
    }
    if quiet {
        let t = c
            .join_token(pb::JoinTokenRequest {
                role: role.into(),
                rotate: false,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        println!("{}", t.token);
        return Ok(());
    }
    print_join_command(&mut c, role).await
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
