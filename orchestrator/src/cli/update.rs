//! `swarm service update` and `swarm service rollback`, and the
//! `--update-*` / `--rollback-*` flags that `service create` takes too.
//! The CLI turns flags into a `ServicePatch`; the daemon applies it to the
//! service as it is, and the updater rolls the tasks.

use super::format::parse_duration;
use super::health::HealthArgs;
use super::progress;
use super::secret::parse_ref;
use super::service::parse_all;
use crate::api::client::{status_error, Client};
use crate::api::pb;
use crate::types::{
    permille, FailureAction, SecretKind, Service, ServicePatch, UpdateConfigPatch, UpdateOrder,
};
use anyhow::{Context, Result};
use clap::Args;

/// How updates roll out and are undone; each flag left out keeps its value.
#[derive(Args, Debug, Default)]
pub struct PolicyArgs {
    /// Maximum number of tasks updated at once (0 to update all at once).
    #[arg(long)]
    pub update_parallelism: Option<u64>,
    /// Delay between updates (ns|us|ms|s|m|h).
    #[arg(long)]
    pub update_delay: Option<String>,
    /// What to do when an update fails: pause, continue or rollback.
    #[arg(long)]
    pub update_failure_action: Option<FailureAction>,
    /// How long after each task update to watch for its failure.
    #[arg(long)]
    pub update_monitor: Option<String>,
    /// Failure rate to tolerate during an update (0 to 1).
    #[arg(long)]
    pub update_max_failure_ratio: Option<f64>,
    /// stop-first (the old task stops first) or start-first (the new one
    /// runs first).
    #[arg(long)]
    pub update_order: Option<UpdateOrder>,
    /// Maximum number of tasks rolled back at once (0 for all at once).
    #[arg(long)]
    pub rollback_parallelism: Option<u64>,
    /// Delay between task rollbacks.
    #[arg(long)]
    pub rollback_delay: Option<String>,
    /// What to do when a rollback fails: pause or continue.
    #[arg(long)]
    pub rollback_failure_action: Option<FailureAction>,
    /// How long after each task rollback to watch for its failure.
    #[arg(long)]
    pub rollback_monitor: Option<String>,
    /// Failure rate to tolerate during a rollback (0 to 1).
    #[arg(long)]
    pub rollback_max_failure_ratio: Option<f64>,
    /// stop-first or start-first.
    #[arg(long)]
    pub rollback_order: Option<UpdateOrder>,
}

fn ms(v: &Option<String>, flag: &str) -> Result<Option<u64>> {
    v.as_deref()
        .map(|d| {
            parse_duration(d)
                .with_context(|| flag.to_string())
                .map(|d| d.as_millis() as u64)
        })
        .transpose()
}

fn ratio(v: Option<f64>, flag: &str) -> Result<Option<u32>> {
    v.map(|r| permille(r).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
        .transpose()
}

impl PolicyArgs {
    /// The update and rollback changes the flags ask for.
    pub fn patches(&self) -> Result<(UpdateConfigPatch, UpdateConfigPatch)> {
        if self.rollback_failure_action == Some(FailureAction::Rollback) {
            anyhow::bail!("--rollback-failure-action: use pause or continue");
        }
        let update = UpdateConfigPatch {
            parallelism: self.update_parallelism,
            delay_ms: ms(&self.update_delay, "--update-delay")?,
            failure_action: self.update_failure_action,
            monitor_ms: ms(&self.update_monitor, "--update-monitor")?,
            max_failure_permille: ratio(
                self.update_max_failure_ratio,
                "--update-max-failure-ratio",
            )?,
            order: self.update_order,
        };
        let rollback = UpdateConfigPatch {
            parallelism: self.rollback_parallelism,
            delay_ms: ms(&self.rollback_delay, "--rollback-delay")?,
            failure_action: self.rollback_failure_action,
            monitor_ms: ms(&self.rollback_monitor, "--rollback-monitor")?,
            max_failure_permille: ratio(
                self.rollback_max_failure_ratio,
                "--rollback-max-failure-ratio",
            )?,
            order: self.rollback_order,
        };
        Ok((update, rollback))
    }
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Service image tag.
    #[arg(long)]
    pub image: Option<String>,
    /// Number of tasks.
    #[arg(long)]
    pub replicas: Option<u64>,
    /// Service command args (replaces them).
    #[arg(long, num_args = 1.., allow_hyphen_values = true)]
    pub args: Option<Vec<String>>,
    /// Add or update an environment variable (KEY=VALUE).
    #[arg(long)]
    pub env_add: Vec<String>,
    /// Remove an environment variable (KEY).
    #[arg(long)]
    pub env_rm: Vec<String>,
    /// Add or update a service label (KEY=VALUE).
    #[arg(long)]
    pub label_add: Vec<String>,
    /// Remove a service label (KEY).
    #[arg(long)]
    pub label_rm: Vec<String>,
    /// Add a secret (NAME or source=NAME,target=...).
    #[arg(long)]
    pub secret_add: Vec<String>,
    /// Remove a secret (NAME).
    #[arg(long)]
    pub secret_rm: Vec<String>,
    /// Add a config (NAME or source=NAME,target=...).
    #[arg(long)]
    pub config_add: Vec<String>,
    /// Remove a config (NAME).
    #[arg(long)]
    pub config_rm: Vec<String>,
    /// Add or update a published port (as --publish takes it).
    #[arg(long)]
    pub publish_add: Vec<String>,
    /// Remove a published port (PORT[/PROTOCOL]).
    #[arg(long)]
    pub publish_rm: Vec<String>,
    /// Add a network (NAME or name=NAME,alias=...).
    #[arg(long)]
    pub network_add: Vec<String>,
    /// Remove a network.
    #[arg(long)]
    pub network_rm: Vec<String>,
    /// Update the tasks even if nothing else changed.
    #[arg(long)]
    pub force: bool,
    /// Roll back to the spec before the latest update.
    #[arg(long)]
    pub rollback: bool,
    #[command(flatten)]
    pub health: HealthArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Exit immediately instead of waiting for the update to converge.
    #[arg(short, long)]
    pub detach: bool,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
    pub service: String,
}

impl UpdateArgs {
    pub fn patch(&self) -> Result<ServicePatch> {
        let (update, rollback) = self.policy.patches()?;
        Ok(ServicePatch {
            image: self.image.clone(),
            replicas: self.replicas,
            args: self.args.clone(),
            env_add: self.env_add.clone(),
            env_rm: self.env_rm.clone(),
            label_add: self.label_add.clone(),
            label_rm: self.label_rm.clone(),
            secret_add: parse_all(&self.secret_add, |a| parse_ref(SecretKind::Secret, a))?,
            secret_rm: self.secret_rm.clone(),
            config_add: parse_all(&self.config_add, |a| parse_ref(SecretKind::Config, a))?,
            config_rm: self.config_rm.clone(),
            publish_add: parse_all(&self.publish_add, crate::ports::parse)?,
            publish_rm: self.publish_rm.clone(),
            network_add: parse_all(&self.network_add, crate::network::parse_attachment)?,
            network_rm: self.network_rm.clone(),
            healthcheck: self.health.config()?,
            update,
            rollback,
            force: self.force,
        })
    }
}

pub async fn update(c: &mut Client, args: UpdateArgs) -> Result<()> {
    if args.rollback {
        return rollback(c, &args.service, args.detach, args.quiet).await;
    }
    let patch = args.patch()?;
    let resp = c
        .update_service(pb::UpdateServiceRequest {
            service: args.service.clone(),
            patch_json: serde_json::to_string(&patch)?,
        })
        .await
        .map_err(status_error)?;
    let svc: Service = serde_json::from_str(&resp.into_inner().service_json)?;
    println!("{}", args.service);
    if args.detach {
        return Ok(());
    }
    progress::wait_converged(c, &svc, args.quiet).await
}

pub async fn rollback(c: &mut Client, service: &str, detach: bool, quiet: bool) -> Result<()> {
    let resp = c
        .rollback_service(pb::GetServiceRequest {
            service: service.to_string(),
            consistent: false,
        })
        .await
        .map_err(status_error)?;
    let svc: Service = serde_json::from_str(&resp.into_inner().service_json)?;
    println!("{service}");
    if detach {
        return Ok(());
    }
    progress::wait_converged(c, &svc, quiet).await
}
