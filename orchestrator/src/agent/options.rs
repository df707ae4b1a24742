//! A service's container options in the Docker Engine's terms: what the
//! application container is created with, and the two options (hostname,
//! extra hosts) that belong to the sandbox, whose UTS name and /etc/hosts
//! a container joined to its network shares.

use crate::types::{ContainerOptions, MountKind, Task};
use bollard::models::{
    HostConfigLogConfig, Mount, MountTmpfsOptions, MountTypeEnum, ResourcesUlimits,
};

pub fn mounts(c: &ContainerOptions) -> Vec<Mount> {
    c.mounts
        .iter()
        .map(|m| Mount {
            typ: Some(match m.kind {
                MountKind::Bind => MountTypeEnum::BIND,
                MountKind::Volume => MountTypeEnum::VOLUME,
                MountKind::Tmpfs => MountTypeEnum::TMPFS,
            }),
            source: (!m.source.is_empty()).then(|| m.source.clone()),
            target: Some(m.target.clone()),
            read_only: Some(m.read_only),
            tmpfs_options: (m.kind == MountKind::Tmpfs && m.tmpfs_size_bytes > 0).then(|| {
                MountTmpfsOptions {
                    size_bytes: Some(m.tmpfs_size_bytes),
                    ..Default::default()
                }
            }),
            ..Default::default()
        })
        .collect()
}

pub fn ulimits(c: &ContainerOptions) -> Option<Vec<ResourcesUlimits>> {
    (!c.ulimits.is_empty()).then(|| {
        c.ulimits
            .iter()
            .map(|(name, u)| ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(u.soft),
                hard: Some(u.hard),
            })
            .collect()
    })
}

pub fn log_config(c: &ContainerOptions) -> Option<HostConfigLogConfig> {
    c.logging.as_ref().map(|l| HostConfigLogConfig {
        typ: (!l.driver.is_empty()).then(|| l.driver.clone()),
        config: Some(l.options.clone().into_iter().collect()),
    })
}

/// Seconds between the stop signal and SIGKILL.
pub fn stop_grace_secs(task: &Task) -> i64 {
    let ms = task.spec.container.stop_grace_period_ms.unwrap_or(10_000);
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

/// The sandbox's hostname: the service's, or docker's `NAME-SLOT-TASKID`.
pub fn hostname(task: &Task) -> String {
    if let Some(h) = &task.spec.container.hostname {
        return h.clone();
    }
    let short = &task.id[..task.id.len().min(12)];
    let mut name = format!("{}-{short}", task.name().replace('.', "-"));
    name.truncate(63);
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{service, task};
    use crate::types::{Mode, Mount as SpecMount, TaskState};

    #[test]
    fn options_become_the_engines_own() {
        let mut svc = service("s", Mode::Replicated, 1);
        svc.spec.container.mounts = vec![
            SpecMount {
                kind: MountKind::Tmpfs,
                target: "/cache".into(),
                tmpfs_size_bytes: 1000,
                ..Default::default()
            },
            SpecMount {
                kind: MountKind::Bind,
                source: "/etc/hosts".into(),
                target: "/h".into(),
                read_only: true,
                ..Default::default()
            },
        ];
        svc.spec.container.stop_grace_period_ms = Some(1_500);
        let t = task("abcdefghijklmnop", &svc, 1, TaskState::New);
        let m = mounts(&t.spec.container);
        assert_eq!(m[0].typ, Some(MountTypeEnum::TMPFS));
        assert_eq!(m[0].tmpfs_options.as_ref().unwrap().size_bytes, Some(1000));
        assert_eq!(
            (m[1].source.as_deref(), m[1].read_only),
            (Some("/etc/hosts"), Some(true))
        );
        assert_eq!(stop_grace_secs(&t), 2);
        assert_eq!(hostname(&t), "svc-s-1-abcdefghijkl");
        svc.spec.container.hostname = Some("web-host".into());
        let t = task("x", &svc, 1, TaskState::New);
        assert_eq!(hostname(&t), "web-host");
    }
}
