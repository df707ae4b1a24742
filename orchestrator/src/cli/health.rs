//! The healthcheck flags of `service create` (and, later, `update`):
//! docker's `--health-*` and `--no-healthcheck`.

use super::format::parse_duration;
use crate::types::HealthConfig;
use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args, Debug, Default)]
pub struct HealthArgs {
    /// Command to run to check health (run by /bin/sh in the container).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h).
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h).
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long)]
    pub health_retries: Option<u64>,
    /// Start period for the container to initialize before counting
    /// retries towards unstable (ms|s|m|h).
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
}

impl HealthArgs {
    /// `None` when no flag is given: the image's own check applies.
    pub fn config(&self) -> Result<Option<HealthConfig>> {
        let ms = |v: &Option<String>, flag: &str| -> Result<u64> {
            v.as_deref()
                .map(|d| parse_duration(d).with_context(|| flag.to_string()))
                .transpose()
                .map(|d| d.map_or(0, |d| d.as_millis() as u64))
        };
        let any = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some();
        if self.no_healthcheck {
            if any {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(HealthConfig::disabled()));
        }
        if !any {
            return Ok(None);
        }
        Ok(Some(HealthConfig {
            test: self
                .health_cmd
                .iter()
                .flat_map(|c| ["CMD-SHELL".to_string(), c.clone()])
                .collect(),
            interval_ms: ms(&self.health_interval, "--health-interval")?,
            timeout_ms: ms(&self.health_timeout, "--health-timeout")?,
            start_period_ms: ms(&self.health_start_period, "--health-start-period")?,
            retries: self.health_retries.unwrap_or(0),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_a_docker_healthcheck() {
        assert_eq!(HealthArgs::default().config().unwrap(), None);
        let h = HealthArgs {
            health_cmd: Some("curl -f localhost".into()),
            health_interval: Some("2s".into()),
            health_retries: Some(3),
            ..Default::default()
        };
        let c = h.config().unwrap().unwrap();
        assert_eq!(c.test, ["CMD-SHELL", "curl -f localhost"]);
        assert_eq!((c.interval_ms, c.timeout_ms, c.retries), (2000, 0, 3));
        let off = HealthArgs {
            no_healthcheck: true,
            ..Default::default()
        };
        assert_eq!(off.config().unwrap(), Some(HealthConfig::disabled()));
        let both = HealthArgs {
            no_healthcheck: true,
            health_retries: Some(1),
            ..Default::default()
        };
        assert!(both.config().is_err());
    }
}
