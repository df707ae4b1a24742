//! The `swarm` command line: docker's verbs, flags and table output.

pub mod autolock;
pub mod ca;
pub mod docs;
pub mod engine_json;
pub mod events;
pub mod filter;
pub mod format;
pub mod health;
pub mod mesh;
pub mod network;
pub mod node;
pub mod progress;
pub mod secret;
pub mod service;
pub mod stack;
pub mod task_io;
pub mod tasks;
pub mod template;
pub mod update;

use crate::api::client::DEFAULT_HOST;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "swarm",
    version,
    about = "A Docker-Swarm-compatible orchestrator with a kernel data plane"
)]
pub struct Cli {
    /// Daemon socket to talk to.
    #[arg(short = 'H', long = "host", env = "SWARM_HOST", default_value = DEFAULT_HOST, global = true)]
    pub host: String,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the node daemon (one per host).
    Daemon(DaemonArgs),
    /// Create a new swarm with this node as its manager.
    Init(node::InitArgs),
    /// Join a swarm as a node and/or manager.
    Join {
        /// Token for entry into the swarm.
        #[arg(long)]
        token: String,
        /// Address other nodes use to reach this one (ADDR[:PORT]).
        #[arg(long)]
        advertise_addr: Option<String>,
        /// A manager's address, HOST[:PORT] (port 2377 by default).
        remote: String,
    },
    /// Leave the swarm.
    Leave {
        /// Leave even if this breaks the managers' quorum, or is the last manager.
        #[arg(short, long)]
        force: bool,
    },
    /// Manage join tokens.
    JoinToken {
        /// Only display the token.
        #[arg(short, long)]
        quiet: bool,
        /// Rotate the join token.
        #[arg(long)]
        rotate: bool,
        /// worker or manager.
        role: crate::types::NodeRole,
    },
    /// Update the swarm (autolock).
    Update {
        /// Change manager autolocking setting (true|false).
        #[arg(long, action = clap::ArgAction::Set)]
        autolock: Option<bool>,
    },
    /// Manage the unlock key.
    UnlockKey {
        /// Only display the key.
        #[arg(short, long)]
        quiet: bool,
        /// Rotate the unlock key.
        #[arg(long)]
        rotate: bool,
    },
    /// Unlock a locked manager (the key is read from standard input).
    Unlock,
    /// Show the root CA, or rotate it (`--rotate`): a new root, cross-signed
    /// by the old one, then every node's certificate reissued from it.
    Ca {
        /// Move to a new root CA.
        #[arg(long)]
        rotate: bool,
        /// Do not wait for every node to have a certificate from it.
        #[arg(short, long)]
        detach: bool,
        /// Do not print progress.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the client's and the daemon's versions and the data plane.
    Version {
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
    },
    /// Stream the cluster's events (services, nodes, tasks, networks,
    /// secrets, configs) as docker events shows them.
    Events(events::EventsArgs),
    /// Show this daemon's node and swarm status.
    Info {
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
    },
    /// Manage services.
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// Manage nodes.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Manage overlay networks.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Manage secrets.
    #[command(subcommand)]
    Secret(secret::SecretCmd),
    /// Manage configs.
    #[command(subcommand)]
    Config(secret::SecretCmd),
    /// Manage stacks (compose files).
    #[command(subcommand)]
    Stack(stack::StackCmd),
    /// Deploy a new stack or update an existing one (`stack deploy`).
    Deploy(stack::DeployArgs),
    /// Measure the control plane on this host (raft commits, scheduling).
    #[command(subcommand)]
    Bench(crate::bench::BenchCmd),
    /// Inspect and drive this host's data plane.
    #[command(subcommand)]
    Mesh(mesh::MeshCmd),
    /// Print a shell completion script (for example
    /// `swarm completion bash > /etc/bash_completion.d/swarm`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Check this host for what the daemon needs: kernel, BPF, capabilities,
    /// iptables, forwarding, ports and Docker (ok, warn or fail, with the fix).
    Check {
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
        /// The address the daemon will advertise: its interface is probed
        /// for native XDP (default: the default route's interface).
        #[arg(long)]
        advertise_addr: Option<String>,
        /// The data plane the daemon will run.
        #[arg(long, value_enum, default_value = "xdp")]
        dataplane: crate::agent::mesh::Mode,
        /// Where the XDP data plane pins its maps and links.
        #[arg(long, default_value = swarm_mesh::xdp::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Write man pages, one per command, into DIR.
    Man {
        /// Directory for the pages (created if missing).
        dir: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Where the node keeps its identity and raft state.
    #[arg(long, default_value = "/var/lib/swarm")]
    pub data_dir: PathBuf,
    /// Control socket for the CLI (created with mode 0600).
    #[arg(long, default_value = "/run/swarm/swarm.sock")]
    pub socket: PathBuf,
    /// A group (name or ID) whose members may use the control socket too:
    /// it is then 0660, owned by that group.
    #[arg(long)]
    pub socket_group: Option<String>,
    /// Address other nodes use to reach this one.
    #[arg(long, default_value = "127.0.0.1")]
    pub advertise_addr: String,
    /// Node name shown in `node ls` (default: the host's name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Subnet of this node's gateway bridge, from which tasks get addresses.
    #[arg(long, default_value = "172.18.0.0/16")]
    pub gateway_subnet: ipnet::Ipv4Net,
    /// Image of the container that holds each task's network namespace.
    /// The default is carried in this binary and imported into Docker
    /// when missing; another is used as it is.
    #[arg(long, default_value = crate::agent::pause::DEFAULT_IMAGE)]
    pub pause_image: String,
    /// The routing mesh and VIP load balancer: BPF programs (xdp), or nat
    /// rules (iptables). xdp falls back to iptables where BPF is unavailable.
    #[arg(long, value_enum, default_value = "xdp")]
    pub dataplane: crate::agent::mesh::Mode,
    /// Where the XDP data plane pins its maps and links.
    #[arg(long, default_value = swarm_mesh::xdp::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Log lines as text, or as one JSON object per line (for log
    /// collectors). `SWARM_LOG` sets the filter (`info`, `debug`, or per
    /// module: `info,swarm_orchestrator::dispatcher=debug`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where tasks' secret and config files are written, in a directory
    /// per node: a tmpfs (one is mounted there when it is not), which the
    /// Docker Engine must see too.
    #[arg(long, default_value = "/run/swarm/secrets")]
    pub secrets_dir: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics (raft, tasks and
    /// nodes, the scheduler, the dispatcher, the data plane, DNS). Off
    /// unless given, e.g. 0.0.0.0:9323.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub use template::Format;

/// `--format`'s help, the same on every command that takes it.
pub const FORMAT_HELP: &str = "Output: table, json, or a Go template \
    ('{{.Name}}', 'table {{.ID}}\\t{{.Name}}'; the fields are those json prints)";

/// Print `items` (the objects `--format json` prints) as `format` asks;
/// `table` is the command's own table.
pub fn print_items<T: serde::Serialize>(
    format: &Option<Format>,
    items: &[T],
    table: impl FnOnce(),
) -> anyhow::Result<()> {
    match format {
        Some(Format::Json) => format::json_lines(items),
        Some(Format::Template { source, table }) => {
            print!("{}", template::render(source, *table, &values(items)?)?)
        }
        None | Some(Format::Table) => table(),
    }
    Ok(())
}

/// clap adapter for `format::parse_duration`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    format::parse_duration(s).map_err(|e| e.to_string())
}

/// Print what `inspect` found: the objects as a JSON array, or a template's
/// line per object.
pub fn print_inspected<T: serde::Serialize>(
    format: &Option<Format>,
    items: &[T],
) -> anyhow::Result<()> {
    match format {
        Some(Format::Template { source, .. }) => {
            print!("{}", template::render_inspected(source, &values(items)?)?)
        }
        _ => println!("{}", serde_json::to_string_pretty(items)?),
    }
    Ok(())
}

fn values<T: serde::Serialize>(items: &[T]) -> serde_json::Result<Vec<serde_json::Value>> {
    items.iter().map(serde_json::to_value).collect()
}

pub fn is_json(f: &Option<Format>) -> bool {
    *f == Some(Format::Json)
}
