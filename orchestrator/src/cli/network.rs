//! `swarm network ...`: overlay networks, as `docker network` shows them
//! for swarm-scoped networks.

use super::format::{short, table};
use super::{print_inspected, print_items, Format, FORMAT_HELP};
use crate::api::client::{connect, status_error, Client};
use crate::api::pb;
use crate::types::{Network, NetworkSpec};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::collections::BTreeMap;

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create an overlay network.
    Create {
        /// Driver to manage the network (only overlay).
        #[arg(short, long, default_value = "overlay")]
        driver: String,
        /// Subnet in CIDR format (from the address pool when omitted).
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address inside the subnet (its first address when omitted).
        #[arg(long)]
        gateway: Option<std::net::Ipv4Addr>,
        /// Allow standalone containers to attach.
        #[arg(long)]
        attachable: bool,
        /// Restrict external access to the network.
        #[arg(long)]
        internal: bool,
        /// Set metadata on the network (KEY=VALUE).
        #[arg(long = "label")]
        labels: Vec<String>,
        name: String,
    },
    /// List networks.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
    },
    /// Display detailed information on one or more networks.
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
        #[arg(short, long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
    },
    /// Remove one or more networks.
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

pub async fn run(host: &str, cmd: NetworkCmd) -> Result<()> {
    let mut c = connect(host).await?;
    match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            attachable,
            internal,
            labels,
            name,
        } => {
            let subnet = subnet
                .as_deref()
                .map(crate::network::parse_subnet)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let spec = NetworkSpec {
                name,
                driver,
                subnet,
                gateway,
                attachable,
                internal,
                ingress: false,
                labels: parse_labels(&labels)?,
            };
            let req = pb::CreateNetworkRequest {
                spec_json: serde_json::to_string(&spec)?,
            };
            let resp = c.create_network(req).await.map_err(status_error)?;
            let net: Network = serde_json::from_str(&resp.into_inner().network_json)?;
            println!("{}", net.id);
        }
        NetworkCmd::Ls { quiet, format } => {
            let mut nets = fetch_networks(&mut c).await?;
            nets.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
            if quiet {
                nets.iter().for_each(|n| println!("{}", short(&n.id)));
            } else {
                print_items(&format, &nets, || {
                    let rows: Vec<Vec<String>> = nets
                        .iter()
                        .map(|n| {
                            vec![
                                short(&n.id).to_string(),
                                n.spec.name.clone(),
                                n.spec.driver.clone(),
                                "swarm".into(),
                            ]
                        })
                        .collect();
                    table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows);
                })?;
            }
        }
        NetworkCmd::Inspect { networks, format } => {
            let mut out = Vec::new();
            for n in networks {
                let req = pb::GetNetworkRequest { network: n };
                let resp = c.get_network(req).await.map_err(status_error)?;
                let net: Network = serde_json::from_str(&resp.into_inner().network_json)?;
                out.push(super::engine_json::network(&net));
            }
            print_inspected(&format, &out)?;
        }
        NetworkCmd::Rm { networks } => {
            for n in networks {
                let req = pb::RemoveNetworkRequest { network: n.clone() };
                c.remove_network(req).await.map_err(status_error)?;
                println!("{n}");
            }
        }
    }
    Ok(())
}

pub async fn fetch_networks(c: &mut Client) -> Result<Vec<Network>> {
    let resp = c
        .list_networks(pb::ListNetworksRequest {})
        .await
        .map_err(status_error)?;
    resp.into_inner()
        .items_json
        .iter()
        .map(|j| serde_json::from_str(j).context("decoding network"))
        .collect()
}

pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|kv| crate::types::parse_label(kv).map_err(anyhow::Error::msg))
        .collect()
}
