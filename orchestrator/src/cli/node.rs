//! `swarm init`, `swarm info` and `swarm node ...`

use super::format::table;
use super::service::{fetch_nodes, fetch_tasks};
use super::tasks::{print_tasks, TableArgs};
use super::{print_inspected, print_items, Format, FORMAT_HELP};
use crate::api::client::{connect, status_error, Client};
use crate::api::pb;
use crate::types::{Availability, Node, NodeRole, NodeState};
use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List nodes in the swarm.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
        /// Filter output (id, label, membership, name, role), as
        /// KEY=VALUE; repeatable.
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
    },
    /// Display detailed information on one or more nodes ("self" is this node).
    Inspect {
        #[arg(required = true)]
        nodes: Vec<String>,
        #[arg(long)]
        pretty: bool,
        #[arg(short, long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
    },
    /// List tasks running on one or more nodes (default: this node).
    Ps {
        nodes: Vec<String>,
        #[command(flatten)]
        out: TableArgs,
    },
    /// Update a node.
    Update {
        /// Availability of the node: active, pause or drain.
        #[arg(long, value_parser = ["active", "pause", "drain"])]
        availability: Option<String>,
        /// Add or update a node label (KEY=VALUE).
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        /// Remove a node label if it exists.
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        /// Role of the node: worker or manager.
        #[arg(long)]
        role: Option<NodeRole>,
        node: String,
    },
    /// Promote one or more nodes to manager in the swarm.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Demote one or more nodes from manager in the swarm.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove one or more nodes from the swarm.
    Rm {
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Force remove a node from the swarm.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Address other nodes use to reach this one (ADDR[:PORT]).
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Validity period for node certificates (e.g. 2160h, 10m, 90s).
    #[arg(long, value_parser = super::parse_duration)]
    cert_expiry: Option<Duration>,
    /// Dispatcher heartbeat period (e.g. 1s, 500ms).
    #[arg(long, value_parser = super::parse_duration)]
    dispatcher_heartbeat: Option<Duration>,
    /// Address pool that networks get their subnets from (CIDR; repeatable;
    /// 10.0.0.0/8 by default).
    #[arg(long)]
    default_addr_pool: Vec<String>,
    /// Prefix length of the subnets carved from the pool (24 by default).
    #[arg(long)]
    default_addr_pool_mask_length: Option<u32>,
    /// Seal the managers' keys on disk with an unlock key: a restarted
    /// manager waits for `swarm unlock`.
    #[arg(long)]
    autolock: bool,
}

pub async fn init(host: &str, args: InitArgs) -> Result<()> {
    let mut c = connect(host).await?;
    let req = pb::InitRequest {
        advertise_addr: args.advertise_addr.unwrap_or_default(),
        cert_expiry_ms: args.cert_expiry.map_or(0, |d| d.as_millis() as u64),
        heartbeat_ms: args
            .dispatcher_heartbeat
            .map_or(0, |d| d.as_millis() as u64),
        default_addr_pool: args.default_addr_pool,
        default_addr_pool_mask_length: args.default_addr_pool_mask_length.unwrap_or(0),
        autolock: args.autolock,
    };
    let resp = c.init(req).await.map_err(status_error)?.into_inner();
    println!(
        "Swarm initialized: current node ({}) is now a manager.\n",
        resp.node_id
    );
    print_join_command(&mut c, NodeRole::Worker).await?;
    println!("To add a manager to this swarm, run 'swarm join-token manager' and follow the instructions.\n");
    if !resp.unlock_key.is_empty() {
        super::autolock::print_unlock_key(&resp.unlock_key);
    }
    Ok(())
}

/// The join token of `role`, rotated first when `rotate` is set.
async fn fetch_token(
    c: &mut Client,
    role: NodeRole,
    rotate: bool,
) -> Result<pb::JoinTokenResponse> {
    let req = pb::JoinTokenRequest {
        role: role.as_str().into(),
        rotate,
    };
    Ok(c.join_token(req).await.map_err(status_error)?.into_inner())
}

async fn print_join_command(c: &mut Client, role: NodeRole) -> Result<()> {
    let t = fetch_token(c, role, false).await?;
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
    let role: NodeRole = resp.role.parse().map_err(anyhow::Error::msg)?;
    println!("This node joined a swarm as a {role}.");
    Ok(())
}

pub async fn leave(host: &str, force: bool) -> Result<()> {
    let mut c = connect(host).await?;
    c.leave(pb::LeaveRequest { force })
        .await
        .map_err(status_error)?;
    // The daemon starts afresh as a new node once this connection closes
    // (its server drains open connections first); return when it answers.
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut c) = connect(host).await {
            if c.info(pb::InfoRequest {}).await.is_ok() {
                break;
            }
        }
        if std::time::Instant::now() > deadline {
            bail!("left the swarm, but the daemon did not come back within 15s; check its log");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Node left the swarm.");
    Ok(())
}

pub async fn join_token(host: &str, role: NodeRole, quiet: bool, rotate: bool) -> Result<()> {
    let mut c = connect(host).await?;
    if rotate {
        fetch_token(&mut c, role, true).await?;
        if !quiet {
            println!("Successfully rotated {role} join token.\n");
        }
    }
    if quiet {
        println!("{}", fetch_token(&mut c, role, false).await?.token);
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
    let ca_expiry = (i.ca_expiry > 0).then(|| super::format::utc_date(i.ca_expiry));
    let item = json!({
        "NodeID": i.node_id, "Hostname": i.hostname, "Swarm": i.swarm_state,
        "ClusterID": i.cluster_id, "IsLeader": i.is_leader, "AdvertiseAddr": i.advertise_addr,
        "RaftTerm": i.raft_term, "Dataplane": i.dataplane, "ServerVersion": i.version,
        "Nodes": i.nodes, "Managers": i.managers, "CAExpiry": ca_expiry,
        "Autolock": i.autolock,
    });
    print_items(&format, &[item], || {
        println!(
            "Node ID:   {}\nHostname:  {}\nSwarm:     {}",
            i.node_id, i.hostname, i.swarm_state
        );
        if !i.cluster_id.is_empty() {
            println!(
                "Cluster:   {}\nLeader:    {}\nAddress:   {}\nRaft term: {}\nNodes:     {}\nManagers:  {}\nCA expiry: {}\nAutolock:  {}",
                i.cluster_id,
                i.is_leader,
                i.advertise_addr,
                i.raft_term,
                i.nodes,
                i.managers,
                ca_expiry.as_deref().unwrap_or("unknown"),
                i.autolock
            );
        }
        // Workers too run a data plane.
        if !i.dataplane.is_empty() {
            println!("Dataplane: {}", i.dataplane);
        }
        println!("Version:   {} ({})", i.version, i.commit);
    })
}

/// `swarm version`: this client's version and commit, then the daemon's
/// with its data plane (or why the daemon could not be asked).
pub async fn version(host: &str, format: Option<Format>) -> Result<()> {
    let client = (crate::VERSION, crate::COMMIT);
    let server = async {
        let mut c = connect(host).await?;
        let info = c.info(pb::InfoRequest {}).await.map_err(status_error)?;
        anyhow::Ok(info.into_inner())
    }
    .await;
    let item = json!({
        "Client": {"Version": client.0, "GitCommit": client.1},
        "Server": server.as_ref().ok().map(
            |i| json!({"Version": i.version, "GitCommit": i.commit, "Dataplane": i.dataplane}),
        ),
    });
    print_items(&format, &[item], || {
        println!(
            "Client:\n Version:    {}\n Git commit: {}",
            client.0, client.1
        );
        if let Ok(i) = &server {
            let dataplane = if i.dataplane.is_empty() {
                "none (not in a swarm)"
            } else {
                &i.dataplane
            };
            println!(
                "\nServer:\n Version:    {}\n Git commit: {}\n Data plane: {}",
                i.version, i.commit, dataplane
            );
        }
    })?;
    server.map(drop)
}

pub async fn run(host: &str, cmd: NodeCmd) -> Result<()> {
    let mut c = connect(host).await?;
    match cmd {
        NodeCmd::Inspect {
            nodes,
            pretty,
            format,
        } => inspect(&mut c, &nodes, pretty, format).await?,
        NodeCmd::Ps { nodes, out } => ps(&mut c, nodes, out).await?,
        NodeCmd::Update {
            availability,
            label_add,
            label_rm,
            role,
            node,
        } => {
            let req = pb::UpdateNodeRequest {
                node: node.clone(),
                availability: availability.unwrap_or_default(),
                label_add,
                label_rm,
                role: role.map(|r| r.as_str().to_string()).unwrap_or_default(),
            };
            c.update_node(req).await.map_err(status_error)?;
            println!("{node}");
        }
        NodeCmd::Promote { nodes } => set_role(&mut c, &nodes, NodeRole::Manager).await?,
        NodeCmd::Demote { nodes } => set_role(&mut c, &nodes, NodeRole::Worker).await?,
        NodeCmd::Rm { nodes, force } => {
            for node in nodes {
                let req = pb::RemoveNodeRequest {
                    node: node.clone(),
                    force,
                };
                c.remove_node(req).await.map_err(status_error)?;
                println!("{node}");
            }
        }
        NodeCmd::Ls {
            quiet,
            format,
            filter,
        } => {
            let filters = super::filter::Filters::parse(&filter, super::filter::NODE_KEYS)?;
            let me = c
                .info(pb::InfoRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            let mut nodes = fetch_nodes(&mut c).await?;
            nodes.retain(|n| super::filter::node(&filters, n));
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
                        // Down: its heartbeats stopped, as raft's would.
                        (NodeRole::Manager, false) if n.state == NodeState::Down => "Unreachable",
                        (NodeRole::Manager, false) => "Reachable",
                        (NodeRole::Worker, _) => "",
                    };
                    let self_mark = if n.id == me.node_id { " *" } else { "" };
                    (n, status, avail, manager, self_mark)
                })
                .collect();
            let items: Vec<_> = rows.iter().map(|(n, status, avail, manager, self_mark)| json!({
                "ID": n.id, "Hostname": n.hostname, "Status": status, "Availability": avail,
                "ManagerStatus": manager, "EngineVersion": n.engine_version, "Self": !self_mark.is_empty(),
                "Addr": n.addr,
            })).collect();
            print_items(&format, &items, || {
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
                )
            })?;
        }
    }
    Ok(())
}

/// "self" names the node the CLI's daemon runs on.
async fn resolve_self(c: &mut Client, key: &str) -> Result<String> {
    if key != "self" {
        return Ok(key.to_string());
    }
    let me = c.info(pb::InfoRequest {}).await.map_err(status_error)?;
    Ok(me.into_inner().node_id)
}

/// The node a user named: ID, hostname or unique ID prefix.
fn find<'a>(nodes: &'a [Node], key: &str) -> Result<&'a Node> {
    if let Some(n) = nodes.iter().find(|n| n.id == key || n.hostname == key) {
        return Ok(n);
    }
    let mut matches = nodes.iter().filter(|n| n.id.starts_with(key));
    match (matches.next(), matches.next()) {
        (Some(n), None) => Ok(n),
        (None, _) => bail!("node {key} not found"),
        _ => bail!("node {key} is ambiguous: use its full ID"),
    }
}

async fn inspect(
    c: &mut Client,
    keys: &[String],
    pretty: bool,
    format: Option<Format>,
) -> Result<()> {
    let all = fetch_nodes(c).await?;
    let mut out = Vec::new();
    for key in keys {
        let key = resolve_self(c, key).await?;
        out.push(find(&all, &key)?.clone());
    }
    if pretty {
        for n in &out {
            println!("ID:\t\t\t{}", n.id);
            println!("Hostname:\t\t{}", n.hostname);
            println!(
                "Status:\n State:\t\t\t{:?}\n Availability:\t\t{:?}\n Address:\t\t{}",
                n.state, n.availability, n.addr
            );
            println!("Role:\t\t\t{:?}", n.role);
            if !n.labels.is_empty() {
                println!("Labels:");
                for (k, v) in &n.labels {
                    println!(" - {k}={v}");
                }
            }
            println!(
                "Resources:\n CPUs:\t\t\t{}\n Memory:\t\t{} bytes",
                n.nano_cpus / 1_000_000_000,
                n.memory_bytes
            );
            println!("Engine Version:\t\t{}\n", n.engine_version);
        }
        Ok(())
    } else {
        let me = c.info(pb::InfoRequest {}).await.map_err(status_error)?;
        let leader = me.into_inner().leader_raft_id;
        let shaped: Vec<_> = out
            .iter()
            .map(|n| super::engine_json::node(n, n.raft_id == leader))
            .collect();
        print_inspected(&format, &shaped)
    }
}

async fn ps(c: &mut Client, keys: Vec<String>, out: TableArgs) -> Result<()> {
    let all = fetch_nodes(c).await?;
    let keys = if keys.is_empty() {
        vec!["self".to_string()]
    } else {
        keys
    };
    let mut ids = Vec::new();
    for key in &keys {
        let key = resolve_self(c, key).await?;
        ids.push(find(&all, &key)?.id.clone());
    }
    let tasks = fetch_tasks(c, "")
        .await?
        .into_iter()
        .filter(|t| t.node_id.as_ref().is_some_and(|n| ids.contains(n)))
        .collect();
    let names: HashMap<String, String> = all.into_iter().map(|n| (n.id, n.hostname)).collect();
    print_tasks(tasks, &names, out)
}

async fn set_role(c: &mut Client, nodes: &[String], role: NodeRole) -> Result<()> {
    for node in nodes {
        let req = pb::UpdateNodeRequest {
            node: node.clone(),
            role: role.as_str().into(),
            ..Default::default()
        };
        let resp = c.update_node(req).await.map_err(status_error)?.into_inner();
        let n: Node = serde_json::from_str(&resp.node_json)?;
        match role {
            NodeRole::Manager => {
                println!("Node {} promoted to a manager in the swarm.", n.hostname)
            }
            _ => println!("Manager {} demoted in the swarm.", n.hostname),
        }
    }
    Ok(())
}
