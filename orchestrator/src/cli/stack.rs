//! `swarm stack ...` and `swarm deploy`: stacks from compose files. The
//! CLI reads the files (they are the user's, on this machine) and sends
//! the loaded document; the daemon converts it, plans and applies.

use super::format::table;
use super::service::fetch_services;
use super::tasks::TableArgs;
use super::{print_items, Format, FORMAT_HELP};
use crate::api::client::{connect, status_error, Client};
use crate::api::pb;
use crate::types::Service;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Compose file(s), merged in order.
    #[arg(short = 'c', long = "compose-file", required = true)]
    pub compose_files: Vec<PathBuf>,
    /// Remove services that are no longer in the compose files.
    #[arg(long)]
    pub prune: bool,
    /// Return once the deploy is accepted, without waiting for the services.
    #[arg(short, long)]
    pub detach: bool,
    /// Print nothing while waiting.
    #[arg(short, long)]
    pub quiet: bool,
    pub stack: String,
}

#[derive(Subcommand, Debug)]
pub enum StackCmd {
    /// Deploy a new stack or update an existing one.
    Deploy(DeployArgs),
    /// List stacks.
    Ls {
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
    },
    /// List the tasks of a stack.
    Ps {
        stack: String,
        #[command(flatten)]
        out: TableArgs,
    },
    /// List the services of a stack.
    Services {
        stack: String,
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
        /// Filter output (id, label, mode, name), as KEY=VALUE; repeatable.
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
    },
    /// Remove one or more stacks.
    Rm {
        #[arg(required = true)]
        stacks: Vec<String>,
    },
    /// Print the final document of the compose files, as deploy reads it.
    Config {
        /// Compose file(s), merged in order.
        #[arg(short = 'c', long = "compose-file", required = true)]
        compose_files: Vec<PathBuf>,
        /// Print `${VAR}` references as written.
        #[arg(long)]
        skip_interpolation: bool,
    },
}

fn load(files: &[PathBuf], skip_interpolation: bool) -> Result<serde_json::Value> {
    let opts = swarm_compose::Options { skip_interpolation };
    Ok(swarm_compose::load(files, &opts)?)
}

pub async fn run(host: &str, cmd: StackCmd) -> Result<()> {
    match cmd {
        StackCmd::Config {
            compose_files,
            skip_interpolation,
        } => {
            let doc = load(&compose_files, skip_interpolation)?;
            print!("{}", swarm_compose::emit::yaml(&doc));
            Ok(())
        }
        StackCmd::Deploy(args) => deploy(host, args).await,
        StackCmd::Ls { format } => ls(host, format).await,
        StackCmd::Ps { stack, out } => ps(host, &stack, out).await,
        StackCmd::Services {
            stack,
            quiet,
            format,
            filter,
        } => {
            let mut c = connect(host).await?;
            super::service::ls(&mut c, quiet, format, &filter, Some(&stack)).await
        }
        StackCmd::Rm { stacks } => rm(host, &stacks).await,
    }
}

/// The bytes of the files the document's own secrets and configs name:
/// they are on this machine, the user's, like the compose files.
fn data_files(doc: &serde_json::Value) -> Result<HashMap<String, Vec<u8>>> {
    let mut files = HashMap::new();
    for section in ["secrets", "configs"] {
        let Some(entries) = doc.get(section).and_then(|v| v.as_object()) else {
            continue;
        };
        for (key, d) in entries {
            if d.get("external") == Some(&serde_json::Value::Bool(true)) {
                continue;
            }
            if let Some(path) = d.get("file").and_then(|f| f.as_str()) {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("{section}.{key}: reading {path}"))?;
                files.insert(path.to_string(), bytes);
            }
        }
    }
    Ok(files)
}

/// A refusal about one key of the files (the daemon names it) points at
/// where that key stands, as the loader's own errors do.
fn deploy_error(files: &[PathBuf], s: tonic::Status) -> anyhow::Error {
    let key = s
        .metadata()
        .get(crate::stack::plan::COMPOSE_KEY)
        .and_then(|v| v.to_str().ok());
    let at = key.and_then(|k| swarm_compose::locate(files, &k.split('.').collect::<Vec<_>>()));
    match at {
        Some((file, pos)) => anyhow!(
            "{}:{}:{}: {}",
            file.display(),
            pos.line,
            pos.col,
            s.message()
        ),
        None => status_error(s),
    }
}

fn print_objects(verb: &str, list: &[pb::StackObject]) {
    for o in list {
        let kind = crate::api::secret::kind(o.kind).map_or("object", |k| k.as_str());
        println!("{verb} {kind} {}", o.name);
    }
}

pub async fn deploy(host: &str, args: DeployArgs) -> Result<()> {
    // A broken file stops here, before the daemon is asked anything.
    let doc = load(&args.compose_files, false)?;
    let files = data_files(&doc)?;
    let mut c = connect(host).await?;
    let resp = c
        .deploy_stack(pb::DeployStackRequest {
            stack: args.stack.clone(),
            compose_json: doc.to_string(),
            prune: args.prune,
            files,
        })
        .await
        .map_err(|s| deploy_error(&args.compose_files, s))?
        .into_inner();
    for w in &resp.warnings {
        eprintln!("{w}");
    }
    print_objects("Creating", &resp.data_created);
    print_objects("Updating", &resp.data_updated);
    for n in &resp.networks_created {
        println!("Creating network {n}");
    }
    for s in &resp.services_created {
        println!("Creating service {s}");
    }
    for s in &resp.services_updated {
        println!("Updating service {s}");
    }
    for s in &resp.services_removed {
        println!("Removing service {s}");
    }
    if args.detach {
        return Ok(());
    }
    super::progress::wait_stack(&mut c, &args.stack, args.quiet).await
}

async fn ls(host: &str, format: Option<Format>) -> Result<()> {
    let mut c = connect(host).await?;
    let mut stacks: BTreeMap<String, usize> = BTreeMap::new();
    for s in fetch_services(&mut c).await? {
        if let Some(stack) = crate::stack::stack_of(&s.spec.labels) {
            *stacks.entry(stack.to_string()).or_default() += 1;
        }
    }
    let items: Vec<_> = stacks
        .iter()
        .map(|(name, n)| json!({"Name": name, "Services": n.to_string(), "Orchestrator": "Swarm"}))
        .collect();
    print_items(&format, &items, || {
        let rows: Vec<Vec<String>> = stacks
            .iter()
            .map(|(name, n)| vec![name.clone(), n.to_string()])
            .collect();
        table(&["NAME", "SERVICES"], &rows);
    })
}

async fn ps(host: &str, stack: &str, out: TableArgs) -> Result<()> {
    let mut c = connect(host).await?;
    let ids: Vec<String> = fetch_stack_services(&mut c, stack)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    if ids.is_empty() {
        bail!("nothing found in stack: {stack}");
    }
    super::service::ps(&mut c, &ids, out).await
}

/// A stack's services, by name (none when there is no such stack).
pub async fn fetch_stack_services(c: &mut Client, stack: &str) -> Result<Vec<Service>> {
    let mut services = fetch_services(c).await?;
    services.retain(|s| crate::stack::stack_of(&s.spec.labels) == Some(stack));
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(services)
}

async fn rm(host: &str, stacks: &[String]) -> Result<()> {
    let mut c = connect(host).await?;
    let mut failed = Vec::new();
    for stack in stacks {
        println!("Removing stack {stack}");
        match c
            .remove_stack(pb::RemoveStackRequest {
                stack: stack.clone(),
            })
            .await
        {
            Ok(resp) => {
                let resp = resp.into_inner();
                for s in &resp.services_removed {
                    println!("Removing service {s}");
                }
                print_objects("Removing", &resp.data_removed);
                for n in &resp.networks_removed {
                    println!("Removing network {n}");
                }
            }
            Err(e) => {
                eprintln!("{}", status_error(e));
                failed.push(stack.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("failed to remove stack(s): {}", failed.join(", "));
    }
    Ok(())
}
