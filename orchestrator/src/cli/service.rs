//! `swarm service ...`

use super::format::{parse_duration, short, table};
use super::secret::parse_ref;
use super::tasks::{print_tasks, TableArgs};
use super::{print_inspected, print_items, progress, Format, FORMAT_HELP};
use crate::api::client::{connect, status_error, Client};
use crate::api::pb;
use crate::placement::{parse_bytes, parse_cpus, Placement, Resources};
use crate::ports;
use crate::types::{
    EndpointMode, Mode, Node, RestartCondition, RestartPolicy, SecretKind, Service, ServiceSpec,
    Task, TaskState,
};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use std::collections::HashMap;

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Create a new service.
    Create(Box<CreateArgs>),
    /// List services.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
        /// Filter output (id, label, mode, name), as KEY=VALUE; repeatable.
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
    },
    /// List the tasks of one or more services.
    Ps {
        #[arg(required = true)]
        services: Vec<String>,
        #[command(flatten)]
        out: TableArgs,
    },
    /// Display detailed information on one or more services.
    Inspect {
        #[arg(required = true)]
        services: Vec<String>,
        #[arg(long)]
        pretty: bool,
        #[arg(short, long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
        /// Read linearizably: after this manager has applied all the
        /// leader had committed when the read began (one round trip to a
        /// quorum). Without it, a manager answers from its own state,
        /// which may lag behind.
        #[arg(long)]
        consistent: bool,
    },
    /// Update a service: a rolling update when its tasks change.
    Update(Box<super::update::UpdateArgs>),
    /// Return a service to its spec before the latest update.
    Rollback {
        service: String,
        /// Exit immediately instead of waiting for the rollback to converge.
        #[arg(short, long)]
        detach: bool,
        /// Suppress progress output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Scale one or more replicated services: SERVICE=REPLICAS...
    Scale {
        #[arg(required = true, value_name = "SERVICE=REPLICAS")]
        targets: Vec<String>,
        /// Exit immediately instead of waiting for the service to converge.
        #[arg(short, long)]
        detach: bool,
    },
    /// Remove one or more services.
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Fetch the logs of a service's tasks, or of one task, from
    /// whichever nodes run them.
    Logs(super::task_io::LogsArgs),
    /// Run a command in a task of a service, on whichever node runs it.
    /// Exits with the command's exit code.
    Exec(super::task_io::ExecArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ModeArg {
    Replicated,
    Global,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum EndpointModeArg {
    Vip,
    Dnsrr,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ConditionArg {
    Any,
    OnFailure,
    None,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Service name.
    #[arg(long)]
    pub name: Option<String>,
    /// Number of tasks (replicated mode only).
    #[arg(long)]
    pub replicas: Option<u64>,
    #[arg(long, value_enum, default_value = "replicated")]
    pub mode: ModeArg,
    /// Set environment variables (KEY=VALUE).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Restart when a task ends: any, on-failure or none.
    #[arg(long, value_enum, default_value = "any")]
    pub restart_condition: ConditionArg,
    /// Delay between restart attempts (ms|s|m|h).
    #[arg(long, default_value = "5s")]
    pub restart_delay: String,
    /// Maximum number of restarts before giving up (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub restart_max_attempts: u64,
    /// Placement constraint (node.id|node.hostname|node.role|node.labels.NAME == or != VALUE).
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Service label (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Placement preference (spread=node.labels.NAME).
    #[arg(long = "placement-pref")]
    pub placement_prefs: Vec<String>,
    /// Maximum number of tasks per node (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub replicas_max_per_node: u64,
    /// Reserve CPUs (e.g. 0.5).
    #[arg(long)]
    pub reserve_cpu: Option<String>,
    /// Reserve memory (e.g. 512M).
    #[arg(long)]
    pub reserve_memory: Option<String>,
    /// Publish a port: [PUBLISHED:]TARGET[/PROTO] through the routing mesh, or
    /// published=PORT,target=PORT[,protocol=tcp|udp][,mode=ingress|host].
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Attach to a network: NAME, or name=NAME[,alias=ALIAS]...
    #[arg(long = "network")]
    pub networks: Vec<String>,
    /// How clients find the tasks: vip (a virtual IP) or dnsrr (DNS round robin).
    #[arg(long, value_enum, default_value = "vip")]
    pub endpoint_mode: EndpointModeArg,
    /// Give tasks a secret: NAME, or source=NAME[,target=FILE][,uid=N][,gid=N][,mode=0444].
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Give tasks a config: NAME, or source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0444].
    #[arg(long = "config")]
    pub configs: Vec<String>,
    #[command(flatten)]
    pub health: super::health::HealthArgs,
    #[command(flatten)]
    pub policy: super::update::PolicyArgs,
    /// Exit immediately instead of waiting for the service to converge.
    #[arg(short, long)]
    pub detach: bool,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
    pub image: String,
    /// Command and arguments for the container.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

impl CreateArgs {
    fn spec(&self) -> Result<ServiceSpec> {
        let mode = match self.mode {
            ModeArg::Replicated => Mode::Replicated,
            ModeArg::Global => Mode::Global,
        };
        if mode == Mode::Global && self.replicas.is_some() {
            bail!("--replicas can only be used with replicated mode");
        }
        for e in &self.env {
            if e.is_empty() || e.starts_with('=') {
                bail!("invalid environment variable {e:?}: expected KEY=VALUE");
            }
        }
        let delay = parse_duration(&self.restart_delay).context("--restart-delay")?;
        let placement = Placement {
            constraints: self.constraints.clone(),
            preferences: self.placement_prefs.clone(),
            max_replicas_per_node: self.replicas_max_per_node,
        };
        placement.validate().map_err(anyhow::Error::msg)?;
        let resources = Resources {
            reserve_nano_cpus: self
                .reserve_cpu
                .as_deref()
                .map(parse_cpus)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or(0),
            reserve_memory_bytes: self
                .reserve_memory
                .as_deref()
                .map(parse_bytes)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or(0),
        };
        let ports = parse_all(&self.publish, ports::parse)?;
        ports::validate(&ports).map_err(anyhow::Error::msg)?;
        let (update, rollback) = self.policy.patches()?;
        let (mut update_config, mut rollback_config) = Default::default();
        update.apply(&mut update_config);
        rollback.apply(&mut rollback_config);
        Ok(ServiceSpec {
            name: self.name.clone().unwrap_or_default(),
            image: self.image.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            mode,
            replicas: self.replicas.unwrap_or(1),
            restart: RestartPolicy {
                condition: match self.restart_condition {
                    ConditionArg::Any => RestartCondition::Any,
                    ConditionArg::OnFailure => RestartCondition::OnFailure,
                    ConditionArg::None => RestartCondition::None,
                },
                delay_ms: delay.as_millis() as u64,
                max_attempts: self.restart_max_attempts,
            },
            labels: super::network::parse_labels(&self.labels)?,
            healthcheck: self.health.config()?,
            placement,
            resources,
            ports,
            networks: parse_all(&self.networks, crate::network::parse_attachment)?,
            endpoint_mode: match self.endpoint_mode {
                EndpointModeArg::Vip => EndpointMode::Vip,
                EndpointModeArg::Dnsrr => EndpointMode::Dnsrr,
            },
            secrets: parse_all(&self.secrets, |a| parse_ref(SecretKind::Secret, a))?,
            configs: parse_all(&self.configs, |a| parse_ref(SecretKind::Config, a))?,
            update: update_config,
            rollback: rollback_config,
            force_update: 0,
            depends_on: Vec::new(),
            container: Default::default(),
        })
    }
}

/// Each value of a repeated flag (`--publish`, `--network`, `--secret`,
/// ...) parsed, or the first one's error.
pub(super) fn parse_all<T>(
    args: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>> {
    args.iter()
        .map(|a| parse(a).map_err(anyhow::Error::msg))
        .collect()
}

pub async fn run(host: &str, cmd: ServiceCmd) -> Result<()> {
    // Validate everything local before touching the daemon.
    if let ServiceCmd::Create(args) = &cmd {
        args.spec()?;
    }
    if let ServiceCmd::Update(args) = &cmd {
        args.patch()?;
    }
    let targets = match &cmd {
        ServiceCmd::Scale { targets, .. } => parse_scale_targets(targets)?,
        _ => Vec::new(),
    };
    let mut c = connect(host).await?;
    match cmd {
        ServiceCmd::Create(args) => create(&mut c, *args).await,
        ServiceCmd::Ls {
            quiet,
            format,
            filter,
        } => ls(&mut c, quiet, format, &filter, None).await,
        ServiceCmd::Ps { services, out } => ps(&mut c, &services, out).await,
        ServiceCmd::Inspect {
            services,
            pretty,
            format,
            consistent,
        } => inspect(&mut c, &services, pretty, format, consistent).await,
        ServiceCmd::Update(args) => super::update::update(&mut c, *args).await,
        ServiceCmd::Rollback {
            service,
            detach,
            quiet,
        } => super::update::rollback(&mut c, &service, detach, quiet).await,
        ServiceCmd::Scale { detach, .. } => scale(&mut c, targets, detach).await,
        ServiceCmd::Rm { services } => rm(&mut c, &services).await,
        ServiceCmd::Logs(args) => super::task_io::logs(&mut c, args).await,
        ServiceCmd::Exec(args) => {
            let code = super::task_io::exec(&mut c, args).await?;
            std::process::exit(code)
        }
    }
}

async fn create(c: &mut Client, args: CreateArgs) -> Result<()> {
    let spec = args.spec()?;
    let req = pb::CreateServiceRequest {
        spec_json: serde_json::to_string(&spec)?,
    };
    let resp = c
        .create_service(req)
        .await
        .map_err(status_error)?
        .into_inner();
    let svc: Service = serde_json::from_str(&resp.service_json)?;
    println!("{}", svc.id);
    if args.detach {
        return Ok(());
    }
    progress::wait_converged(c, &svc, args.quiet).await
}

/// `web=5 api=2` -> [("web", 5), ("api", 2)], refusing anything malformed.
pub fn parse_scale_targets(targets: &[String]) -> Result<Vec<(String, u64)>> {
    targets
        .iter()
        .map(|t| {
            let (name, n) = t
                .split_once('=')
                .ok_or_else(|| anyhow!("invalid scale specifier {t:?}: expected SERVICE=REPLICAS"))?;
            let n: u64 = n.parse().map_err(|_| {
                anyhow!("invalid replicas value {n:?} for service {name}: must be a non-negative integer")
            })?;
            if name.is_empty() {
                bail!("invalid scale specifier {t:?}: missing service name");
            }
            Ok((name.to_string(), n))
        })
        .collect()
}

async fn scale(c: &mut Client, targets: Vec<(String, u64)>, detach: bool) -> Result<()> {
    let mut failed = false;
    for (name, replicas) in targets {
        let req = pb::ScaleServiceRequest {
            service: name.clone(),
            replicas,
        };
        match c.scale_service(req).await {
            Ok(resp) => {
                println!("{name} scaled to {replicas}");
                let svc: Service = serde_json::from_str(&resp.into_inner().service_json)?;
                if !detach {
                    if let Err(e) = progress::wait_converged(c, &svc, false).await {
                        eprintln!("{e:#}");
                        failed = true;
                    }
                }
            }
            Err(s) => {
                eprintln!("{name}: {}", s.message());
                failed = true;
            }
        }
    }
    if failed {
        bail!("some services could not be scaled");
    }
    Ok(())
}

async fn rm(c: &mut Client, services: &[String]) -> Result<()> {
    let mut errors = Vec::new();
    for s in services {
        match c
            .remove_service(pb::RemoveServiceRequest { service: s.clone() })
            .await
        {
            Ok(_) => println!("{s}"),
            Err(e) => errors.push(e.message().to_string()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

pub async fn fetch_tasks(c: &mut Client, service: &str) -> Result<Vec<Task>> {
    let resp = c
        .list_tasks(pb::ListTasksRequest {
            service: service.into(),
        })
        .await
        .map_err(status_error)?;
    resp.into_inner()
        .items_json
        .iter()
        .map(|j| serde_json::from_str(j).context("decoding task"))
        .collect()
}

pub async fn fetch_nodes(c: &mut Client) -> Result<Vec<Node>> {
    let resp = c
        .list_nodes(pb::ListNodesRequest {})
        .await
        .map_err(status_error)?;
    resp.into_inner()
        .items_json
        .iter()
        .map(|j| serde_json::from_str(j).context("decoding node"))
        .collect()
}

pub async fn fetch_services(c: &mut Client) -> Result<Vec<Service>> {
    let resp = c
        .list_services(pb::ListServicesRequest {})
        .await
        .map_err(status_error)?;
    resp.into_inner()
        .items_json
        .iter()
        .map(|j| serde_json::from_str(j).context("decoding service"))
        .collect()
}

pub async fn fetch_service(c: &mut Client, key: &str) -> Result<Service> {
    let resp = c
        .get_service(pb::GetServiceRequest {
            service: key.to_string(),
            consistent: false,
        })
        .await
        .map_err(status_error)?;
    serde_json::from_str(&resp.into_inner().service_json).context("decoding service")
}

/// `service ls`, or `stack services STACK` when `stack` is given.
pub async fn ls(
    c: &mut Client,
    quiet: bool,
    format: Option<Format>,
    filter: &[String],
    stack: Option<&str>,
) -> Result<()> {
    let filters = super::filter::Filters::parse(filter, super::filter::SERVICE_KEYS)?;
    let services = match stack {
        Some(stack) => {
            let services = super::stack::fetch_stack_services(c, stack).await?;
            if services.is_empty() {
                bail!("nothing found in stack: {stack}");
            }
            services
        }
        None => {
            let mut all = fetch_services(c).await?;
            // Docker lists services by name.
            all.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
            all
        }
    };
    let tasks = fetch_tasks(c, "").await?;
    let mut rows = Vec::new();
    for s in services
        .iter()
        .filter(|s| super::filter::service(&filters, s))
    {
        let mine = tasks.iter().filter(|t| t.service_id == s.id);
        let running = mine
            .clone()
            .filter(|t| {
                t.status.state == TaskState::Running && t.desired_state == TaskState::Running
            })
            .count();
        let desired = match s.spec.mode {
            Mode::Replicated => s.spec.replicas as usize,
            Mode::Global => mine
                .filter(|t| t.desired_state <= TaskState::Running)
                .count(),
        };
        let mode = match s.spec.mode {
            Mode::Replicated => "replicated",
            Mode::Global => "global",
        };
        rows.push((s, mode, format!("{running}/{desired}")));
    }
    if quiet {
        rows.iter().for_each(|(s, ..)| println!("{}", short(&s.id)));
        return Ok(());
    }
    let items: Vec<_> = rows
        .iter()
        .map(|(s, mode, replicas)| {
            json!({"ID": s.id, "Name": s.spec.name, "Mode": mode, "Replicas": replicas, "Image": s.spec.image, "Ports": ports::display(&s.spec.ports)})
        })
        .collect();
    print_items(&format, &items, || {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|(s, mode, replicas)| {
                vec![
                    short(&s.id).into(),
                    s.spec.name.clone(),
                    mode.to_string(),
                    replicas.clone(),
                    s.spec.image.clone(),
                    ports::display(&s.spec.ports),
                ]
            })
            .collect();
        table(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], &rows);
    })
}

pub async fn ps(c: &mut Client, services: &[String], out: TableArgs) -> Result<()> {
    let nodes: HashMap<String, String> = fetch_nodes(c)
        .await?
        .into_iter()
        .map(|n| (n.id, n.hostname))
        .collect();
    let mut tasks = Vec::new();
    for s in services {
        tasks.extend(fetch_tasks(c, s).await?);
    }
    print_tasks(tasks, &nodes, out)
}

async fn inspect(
    c: &mut Client,
    services: &[String],
    pretty: bool,
    format: Option<Format>,
    consistent: bool,
) -> Result<()> {
    let mut out = Vec::new();
    for s in services {
        let resp = c
            .get_service(pb::GetServiceRequest {
                service: s.clone(),
                consistent,
            })
            .await
            .map_err(status_error)?;
        let svc: Service = serde_json::from_str(&resp.into_inner().service_json)?;
        out.push(svc);
    }
    if pretty {
        for s in &out {
            println!(
                "ID:\t\t{}\nName:\t\t{}\nMode:\t\t{:?}",
                s.id, s.spec.name, s.spec.mode
            );
            if s.spec.mode == Mode::Replicated {
                println!(" Replicas:\t{}", s.spec.replicas);
            }
            println!(
                "Image:\t\t{}\nArgs:\t\t{}\nEnv:\t\t{}",
                s.spec.image,
                s.spec.args.join(" "),
                s.spec.env.join(" ")
            );
            let r = &s.spec.restart;
            println!(
                "RestartPolicy:\n Condition:\t{:?}\n Delay:\t\t{}ms\n MaxAttempts:\t{}",
                r.condition, r.delay_ms, r.max_attempts
            );
        }
        Ok(())
    } else {
        // Docker writes a VIP with its network's prefix length.
        let prefixes: std::collections::HashMap<String, u8> = super::network::fetch_networks(c)
            .await?
            .into_iter()
            .map(|n| (n.id, n.subnet.prefix_len()))
            .collect();
        let shaped: Vec<_> = out
            .iter()
            .map(|s| super::engine_json::service(s, |id| prefixes.get(id).copied()))
            .collect();
        print_inspected(&format, &shaped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_targets_are_validated() {
        assert_eq!(
            parse_scale_targets(&["web=5".into()]).unwrap(),
            vec![("web".to_string(), 5)]
        );
        let err = parse_scale_targets(&["web=abc".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("abc") && err.contains("web"), "{err}");
        assert!(parse_scale_targets(&["web".into()]).is_err());
        assert!(parse_scale_targets(&["=3".into()]).is_err());
        assert!(parse_scale_targets(&["web=-1".into()]).is_err());
    }
}
