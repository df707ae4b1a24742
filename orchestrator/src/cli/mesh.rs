//! `swarm mesh ...`: drive this host's data plane directly. `attach` loads
//! and attaches it, `sync` programs it from a JSON list of services, `dump`
//! shows what it holds, `detach` removes it. These work without a daemon,
//! on the maps pinned under `--pin-dir`.

use super::format::table;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use swarm_mesh::dataplane::{Dataplane, Dump, LbService, LocalEndpoint};
use swarm_mesh::iptables::IptablesDataplane;
use swarm_mesh::xdp::{self, XdpDataplane, DEFAULT_PIN_DIR};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// BPF programs at the interface (XDP and tc).
    Xdp,
    /// nat-table rules, for hosts without BPF and for comparison.
    Iptables,
}

/// Which data plane, and where XDP mode pins its maps.
#[derive(clap::Args, Debug)]
pub struct Target {
    #[arg(long, value_enum, default_value = "xdp")]
    mode: Mode,
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
}

impl Target {
    fn open(&self) -> Result<Box<dyn Dataplane>> {
        Ok(match self.mode {
            Mode::Xdp => Box::new(XdpDataplane::open(&self.pin_dir)?),
            Mode::Iptables => Box::new(IptablesDataplane::default()),
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum MeshCmd {
    /// Load the data plane and attach it to the underlay interface.
    Attach {
        #[arg(long)]
        iface: String,
        /// This node's underlay address (published ports answer on it).
        #[arg(long)]
        node_addr: Ipv4Addr,
        #[command(flatten)]
        target: Target,
    },
    /// Attach the east-west load balancer to a task's port (the node end of
    /// the task's veth), so the task reaches services by VIP.
    AttachTask {
        #[arg(long)]
        iface: String,
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Give the XDP fast path a local backend's port: packets balanced to
    /// ADDR go straight to IFACE (the node end of the task's veth), framed
    /// for the task's MAC. The daemon does this for every task it starts.
    Endpoint {
        #[arg(long)]
        addr: Ipv4Addr,
        #[arg(long, required_unless_present = "remove")]
        iface: Option<String>,
        /// The task interface's MAC, as aa:bb:cc:dd:ee:ff.
        #[arg(long, value_parser = parse_mac, required_unless_present = "remove")]
        mac: Option<[u8; 6]>,
        /// Forget the endpoint for ADDR instead.
        #[arg(long)]
        remove: bool,
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Lab helper: attach a pass-everything XDP program to the host end of a
    /// node's veth, which the kernel needs before it accepts XDP_TX frames.
    AttachPeerPass {
        #[arg(long)]
        iface: String,
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Program exactly the services in FILE (JSON array; "-" for stdin).
    Sync {
        file: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show the mode, attach points, services, flows and counters (XDP), or
    /// the rules this program owns (iptables).
    /// With a daemon (the default): the cluster's services by name, as
    /// the daemon programmed them. With --local: this host's pinned maps
    /// (or owned rules), read directly.
    Dump {
        #[arg(long)]
        json: bool,
        #[arg(long, value_parser = super::Format::parse, help = super::FORMAT_HELP)]
        format: Option<super::Format>,
        /// Read the data plane directly instead of asking the daemon.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Detach the programs and remove every pinned map (XDP), or remove the
    /// owned chains (iptables).
    Detach {
        #[command(flatten)]
        target: Target,
    },
}

pub async fn run(host: &str, cmd: MeshCmd) -> Result<()> {
    match cmd {
        MeshCmd::Attach {
            iface,
            node_addr,
            target,
        } => match target.mode {
            Mode::Xdp => {
                for point in xdp::attach(&iface, node_addr, &target.pin_dir)? {
                    println!("attached {point}");
                }
            }
            Mode::Iptables => {
                IptablesDataplane::attach(&iface)?;
                println!("attached iptables nat chains");
            }
        },
        MeshCmd::AttachTask { iface, pin_dir } => {
            xdp::attach_task(&iface, &pin_dir)?;
            println!("attached the east-west load balancer to {iface}");
        }
        MeshCmd::Endpoint {
            addr,
            iface,
            mac,
            remove,
            pin_dir,
        } => {
            let mut dp = XdpDataplane::open(&pin_dir)?;
            match (remove, iface, mac) {
                (true, _, _) => {
                    dp.remove_endpoint(addr)?;
                    println!("forgot the endpoint of {addr}");
                }
                (false, Some(iface), Some(mac)) => {
                    dp.add_endpoint(&LocalEndpoint::of_port(addr, &iface, mac)?)?;
                    println!("packets for {addr} go straight to {iface}");
                }
                _ => unreachable!("clap requires --iface and --mac without --remove"),
            }
        }
        MeshCmd::AttachPeerPass { iface, pin_dir } => {
            xdp::attach_peer_pass(&iface, &pin_dir)?;
            println!("attached pass program to {iface}");
        }
        MeshCmd::Sync { file, target } => {
            let mut text = String::new();
            if file == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            }
            let services: Vec<LbService> = serde_json::from_str(&text)
                .with_context(|| format!("{file}: not a JSON array of services"))?;
            target.open()?.sync(&services)?;
            println!("{} services programmed", services.len());
        }
        MeshCmd::Dump {
            json,
            format,
            local,
            target,
        } => {
            let dump = if local {
                target.open()?.dump()?
            } else {
                let mut c = crate::api::client::connect(host).await?;
                let resp = c
                    .mesh_dump(crate::api::pb::MeshDumpRequest {})
                    .await
                    .map_err(crate::api::client::status_error)?;
                serde_json::from_str(&resp.into_inner().dump_json)?
            };
            if let Some(super::Format::Template { .. }) = format {
                super::print_inspected(&format, &[&dump])?;
            } else if json || super::is_json(&format) {
                println!("{}", serde_json::to_string_pretty(&dump)?);
            } else {
                print_dump(&dump);
            }
        }
        MeshCmd::Detach { target } => match target.mode {
            Mode::Xdp => {
                xdp::detach(&target.pin_dir)?;
                println!("detached; removed {}", target.pin_dir.display());
            }
            Mode::Iptables => {
                IptablesDataplane::detach()?;
                println!("removed the iptables nat chains");
            }
        },
    }
    Ok(())
}

fn parse_mac(s: &str) -> std::result::Result<[u8; 6], String> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{s:?} is not a MAC address: it needs 6 bytes"))
}

fn print_dump(d: &Dump) {
    println!("mode: {}", d.mode);
    println!("attach points: {}", d.attach_points.join(", "));
    println!();
    for s in &d.services {
        let name = if s.name.is_empty() {
            s.id.to_string()
        } else {
            s.name.clone()
        };
        println!(
            "service {}  frontends {}  table {}  packets {}  bytes {}  new flows {}",
            name,
            s.frontends.join(" "),
            s.table_size,
            s.packets,
            s.bytes,
            s.new_flows
        );
        let rows: Vec<Vec<String>> = s
            .backends
            .iter()
            .map(|b| {
                vec![
                    format!("  {}", b.addr),
                    b.node.clone(),
                    b.state.clone(),
                    format!("{:.1}%", b.share * 100.0),
                ]
            })
            .collect();
        table(&["  BACKEND", "NODE", "STATE", "SHARE"], &rows);
    }
    println!();
    let rows: Vec<Vec<String>> = d
        .flows
        .iter()
        .map(|f| {
            vec![
                f.proto.clone(),
                f.client.clone(),
                f.frontend.clone(),
                f.backend.clone(),
                format!("{}s", f.age_ms / 1000),
            ]
        })
        .collect();
    println!("flows: {}", d.flows.len());
    table(&["PROTO", "CLIENT", "FRONTEND", "BACKEND", "AGE"], &rows);
    for r in &d.rules {
        println!("{r}");
    }
    println!();
    let drops: Vec<String> = d.drops.iter().map(|(n, c)| format!("{n}={c}")).collect();
    println!("drops: {}", drops.join(" "));
}
