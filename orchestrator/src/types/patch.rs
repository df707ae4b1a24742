//! `service update`'s changes, as the CLI sends them: what to add, remove
//! or set, applied by the daemon to the service's current spec (so two
//! updates of different fields never undo each other). Names (networks,
//! secrets) are resolved against the state afterwards, as for a new spec.

use super::{
    parse_label, HealthConfig, NetworkAttachmentSpec, PortConfig, SecretRef, ServiceSpec,
    UpdateConfig,
};
use serde::{Deserialize, Serialize};

/// Partial `--update-*` / `--rollback-*` settings: `None` keeps the value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfigPatch {
    pub parallelism: Option<u64>,
    pub delay_ms: Option<u64>,
    pub failure_action: Option<super::FailureAction>,
    pub monitor_ms: Option<u64>,
    pub max_failure_permille: Option<u32>,
    pub order: Option<super::UpdateOrder>,
}

impl UpdateConfigPatch {
    pub fn apply(&self, c: &mut UpdateConfig) {
        let UpdateConfigPatch {
            parallelism,
            delay_ms,
            failure_action,
            monitor_ms,
            max_failure_permille,
            order,
        } = self.clone();
        c.parallelism = parallelism.unwrap_or(c.parallelism);
        c.delay_ms = delay_ms.unwrap_or(c.delay_ms);
        c.failure_action = failure_action.unwrap_or(c.failure_action);
        c.monitor_ms = monitor_ms.unwrap_or(c.monitor_ms);
        c.max_failure_permille = max_failure_permille.unwrap_or(c.max_failure_permille);
        c.order = order.unwrap_or(c.order);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServicePatch {
    pub image: Option<String>,
    pub replicas: Option<u64>,
    /// `--args`: replaces the command's arguments.
    pub args: Option<Vec<String>>,
    /// `KEY=VALUE`, replacing an entry with the same key.
    #[serde(default)]
    pub env_add: Vec<String>,
    /// Keys.
    #[serde(default)]
    pub env_rm: Vec<String>,
    #[serde(default)]
    pub label_add: Vec<String>,
    #[serde(default)]
    pub label_rm: Vec<String>,
    #[serde(default)]
    pub secret_add: Vec<SecretRef>,
    /// Secret names (or targets).
    #[serde(default)]
    pub secret_rm: Vec<String>,
    #[serde(default)]
    pub config_add: Vec<SecretRef>,
    #[serde(default)]
    pub config_rm: Vec<String>,
    #[serde(default)]
    pub publish_add: Vec<PortConfig>,
    /// Published ports (`8080` or `8080/udp`).
    #[serde(default)]
    pub publish_rm: Vec<String>,
    #[serde(default)]
    pub network_add: Vec<NetworkAttachmentSpec>,
    /// Network IDs (the daemon turns the names the user gave into IDs).
    #[serde(default)]
    pub network_rm: Vec<String>,
    /// Fields of the check to set; `test: ["NONE"]` turns it off.
    pub healthcheck: Option<HealthConfig>,
    #[serde(default)]
    pub update: UpdateConfigPatch,
    #[serde(default)]
    pub rollback: UpdateConfigPatch,
    /// Replace every task even if nothing else changes.
    #[serde(default)]
    pub force: bool,
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

impl ServicePatch {
    /// The spec with the changes made. An error names the change at fault.
    pub fn apply(&self, spec: &ServiceSpec) -> Result<ServiceSpec, String> {
        let mut s = spec.clone();
        if let Some(i) = &self.image {
            s.image = i.clone();
        }
        if let Some(r) = self.replicas {
            if s.mode != super::Mode::Replicated {
                return Err("--replicas can only be used with replicated mode".into());
            }
            s.replicas = r;
        }
        if let Some(a) = &self.args {
            s.args = a.clone();
        }
        s.env
            .retain(|e| !self.env_rm.iter().any(|k| k == env_key(e)));
        for e in &self.env_add {
            if env_key(e).is_empty() {
                return Err(format!(
                    "invalid environment variable {e:?}: expected KEY=VALUE"
                ));
            }
            s.env.retain(|x| env_key(x) != env_key(e));
            s.env.push(e.clone());
        }
        for k in &self.label_rm {
            s.labels.remove(k);
        }
        for kv in &self.label_add {
            let (k, v) = parse_label(kv)?;
            s.labels.insert(k, v);
        }
        let rm_refs = |refs: &mut Vec<SecretRef>, names: &[String]| {
            refs.retain(|r| !names.iter().any(|n| *n == r.name || *n == r.target))
        };
        rm_refs(&mut s.secrets, &self.secret_rm);
        rm_refs(&mut s.configs, &self.config_rm);
        s.secrets.extend(self.secret_add.iter().cloned());
        s.configs.extend(self.config_add.iter().cloned());
        for p in &self.publish_rm {
            let (port, proto) = p.split_once('/').unwrap_or((p, ""));
            let port: u16 = port
                .parse()
                .map_err(|_| format!("--publish-rm {p:?}: expected PORT[/PROTOCOL]"))?;
            let before = s.ports.len();
            s.ports.retain(|q| {
                !(q.published == port && (proto.is_empty() || q.protocol.name() == proto))
            });
            if s.ports.len() == before {
                return Err(format!(
                    "--publish-rm {p}: the service publishes no such port"
                ));
            }
        }
        for p in &self.publish_add {
            s.ports.retain(|q| {
                !(q.published == p.published && q.protocol == p.protocol && p.published != 0)
            });
            s.ports.push(p.clone());
        }
        s.networks.retain(|a| !self.network_rm.contains(&a.target));
        s.networks.extend(self.network_add.iter().cloned());
        if let Some(h) = &self.healthcheck {
            s.healthcheck = Some(merge_health(s.healthcheck.take(), h));
        }
        self.update.apply(&mut s.update);
        self.rollback.apply(&mut s.rollback);
        if self.force {
            s.force_update += 1;
        }
        Ok(s)
    }
}

/// Docker's merge of the `--health-*` flags into the current check: the
/// fields given replace theirs; `--no-healthcheck` replaces it all.
fn merge_health(cur: Option<HealthConfig>, new: &HealthConfig) -> HealthConfig {
    let disabled = new.test.first().is_some_and(|t| t == "NONE");
    let mut h = match cur {
        Some(c) if !disabled && c.test.first().is_none_or(|t| t != "NONE") => c,
        _ => HealthConfig::default(),
    };
    if !new.test.is_empty() {
        h.test = new.test.clone();
    }
    let pick = |n: u64, c: u64| if n != 0 { n } else { c };
    h.interval_ms = pick(new.interval_ms, h.interval_ms);
    h.timeout_ms = pick(new.timeout_ms, h.timeout_ms);
    h.start_period_ms = pick(new.start_period_ms, h.start_period_ms);
    h.retries = pick(new.retries, h.retries);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        serde_json::from_value(serde_json::json!({
            "name": "web", "image": "img:1", "mode": "replicated", "replicas": 2,
            "env": ["A=1", "B=2"],
            "ports": [{"protocol": "tcp", "published": 8000, "target": 80, "mode": "ingress"}],
            "labels": {"keep": "x", "drop": "y"},
            "secrets": [{"name": "db", "target": "db"}],
            "healthcheck": {"test": ["CMD-SHELL", "true"], "interval_ms": 1000}
        }))
        .unwrap()
    }

    #[test]
    fn each_flag_changes_only_its_field() {
        let p = ServicePatch {
            image: Some("img:2".into()),
            env_add: vec!["B=3".into(), "C=4".into()],
            env_rm: vec!["A".into()],
            label_add: vec!["new=z".into()],
            label_rm: vec!["drop".into()],
            secret_rm: vec!["db".into()],
            secret_add: vec![SecretRef::named("other")],
            publish_rm: vec!["8000".into()],
            healthcheck: Some(HealthConfig {
                retries: 3,
                ..Default::default()
            }),
            update: UpdateConfigPatch {
                parallelism: Some(2),
                ..Default::default()
            },
            force: true,
            ..Default::default()
        };
        let s = p.apply(&spec()).unwrap();
        assert_eq!(s.image, "img:2");
        assert_eq!(s.env, ["B=3", "C=4"]);
        assert_eq!(s.labels.keys().collect::<Vec<_>>(), ["keep", "new"]);
        assert_eq!(
            s.secrets
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["other"]
        );
        assert!(s.ports.is_empty());
        let h = s.healthcheck.unwrap();
        assert_eq!(
            (h.test[1].as_str(), h.interval_ms, h.retries),
            ("true", 1000, 3)
        );
        assert_eq!((s.update.parallelism, s.update.monitor_ms), (2, 5000));
        assert_eq!(s.force_update, 1);
        assert_eq!(s.replicas, 2, "untouched");
    }

    #[test]
    fn a_change_that_cannot_apply_says_which() {
        let bad = ServicePatch {
            publish_rm: vec!["9999".into()],
            ..Default::default()
        };
        assert!(bad
            .apply(&spec())
            .unwrap_err()
            .contains("--publish-rm 9999"));
        let env = ServicePatch {
            env_add: vec!["=x".into()],
            ..Default::default()
        };
        assert!(env.apply(&spec()).is_err());
    }
}
