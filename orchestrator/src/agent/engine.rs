//! The agent's view of the Docker Engine: the containers that make up a task
//! (a pause container holding the network namespace, and the application
//! container joined to it), found again by their labels after any restart.

use crate::types::Task;
use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::models::{ContainerSummary, HostConfig};
use bollard::Docker;
use std::collections::HashMap;

pub const LABEL_NODE: &str = "swarm.node.id";
pub const LABEL_DATA_DIR: &str = "swarm.data-dir";
pub const LABEL_SERVICE_ID: &str = "swarm.service.id";
pub const LABEL_SERVICE_NAME: &str = "swarm.service.name";
pub const LABEL_TASK_ID: &str = "swarm.task.id";
pub const LABEL_TASK_NAME: &str = "swarm.task.name";
pub const LABEL_SLOT: &str = "swarm.task.slot";
pub const LABEL_ROLE: &str = "swarm.role";
pub const LABEL_ADDR: &str = "swarm.task.addr";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker Engine: {0}. Is dockerd running and is /var/run/docker.sock accessible?")]
    Connect(bollard::errors::Error),
    #[error("{0}")]
    Docker(#[from] bollard::errors::Error),
}

/// The containers Docker holds for one task.
#[derive(Debug, Default, Clone)]
pub struct TaskContainers {
    pub pause: Option<ContainerSummary>,
    pub app: Option<ContainerSummary>,
}

impl TaskContainers {
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        // The app goes first: it must stop before its namespace holder.
        [&self.app, &self.pause]
            .into_iter()
            .flatten()
            .filter_map(|c| c.id.as_deref())
    }
}

pub fn is_running(c: &ContainerSummary) -> bool {
    c.state.as_deref() == Some("running")
}

/// An image reference as the pull API takes it: `name` and `tag`, the tag
/// `latest` when none is given (an empty tag would pull every tag), or a
/// digest kept in the name.
pub fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => (&image[..image.len() - tag.len() - 1], tag),
        None => (image, "latest"),
    }
}

/// Follow an image pull or import to its end: Docker reports failures in
/// the stream as well as in the status code.
async fn drain(
    mut stream: impl futures::Stream<Item = Result<bollard::models::CreateImageInfo, bollard::errors::Error>>
        + Unpin,
    mut progress: impl FnMut(String),
) -> Result<(), String> {
    use futures::StreamExt;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(err) = info.error {
                    return Err(err);
                }
                let line = [info.status, info.progress]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                if !line.is_empty() {
                    progress(line);
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                return Err(message)
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// A running container's healthcheck state, from the container list's
/// status text (`Up 5 seconds (health: starting)`): no inspect per task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// No healthcheck: running is all there is.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

pub fn health(c: &ContainerSummary) -> Health {
    let status = c.status.as_deref().unwrap_or_default();
    if status.contains("(health: starting)") {
        Health::Starting
    } else if status.contains("(unhealthy)") {
        Health::Unhealthy
    } else if status.contains("(healthy)") {
        Health::Healthy
    } else {
        Health::None
    }
}

/// Docker's container healthcheck for a service's (durations in ns).
fn health_config(h: &crate::types::HealthConfig) -> bollard::models::HealthConfig {
    let ns = |ms: u64| (ms > 0).then_some(ms as i64 * 1_000_000);
    bollard::models::HealthConfig {
        test: (!h.test.is_empty()).then(|| h.test.clone()),
        interval: ns(h.interval_ms),
        timeout: ns(h.timeout_ms),
        start_period: ns(h.start_period_ms),
        retries: (h.retries > 0).then_some(h.retries as i64),
        ..Default::default()
    }
}

/// The container ran and stopped (as opposed to never having started).
pub fn has_exited(c: &ContainerSummary) -> bool {
    matches!(c.state.as_deref(), Some("exited" | "dead"))
}

pub fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

/// The task's hostname, unique per task: `web-1-<short id>`. Docker would
/// split a dotted name into host and domain, so dots become dashes.
pub use super::options::hostname;

#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    node_id: String,
    data_dir: String,
}

impl Engine {
    pub async fn connect(node_id: &str, data_dir: &str) -> Result<Engine, EngineError> {
        let docker = Docker::connect_with_local_defaults().map_err(EngineError::Connect)?;
        // The engine may be older than bollard's default API version.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(EngineError::Connect)?;
        Ok(Engine {
            docker,
            node_id: node_id.to_string(),
            data_dir: data_dir.to_string(),
        })
    }

    pub async fn version(&self) -> Result<String, EngineError> {
        Ok(self.docker.version().await?.version.unwrap_or_default())
    }

    /// Every container this node's agent made, grouped by task ID.
    pub async fn task_containers(&self) -> Result<HashMap<String, TaskContainers>, EngineError> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_NODE}={}", self.node_id)])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: filters
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                ..Default::default()
            }))
            .await?;
        let mut by_task: HashMap<String, TaskContainers> = HashMap::new();
        for c in list {
            let Some(task) = label(&c, LABEL_TASK_ID).map(str::to_string) else {
                continue;
            };
            let entry = by_task.entry(task).or_default();
            if label(&c, LABEL_ROLE) == Some("pause") {
                entry.pause = Some(c);
            } else {
                entry.app = Some(c);
            }
        }
        Ok(by_task)
    }

    fn labels(&self, task: &Task, role: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_NODE.into(), self.node_id.clone()),
            (LABEL_DATA_DIR.into(), self.data_dir.clone()),
            (LABEL_SERVICE_ID.into(), task.service_id.clone()),
            (LABEL_SERVICE_NAME.into(), task.service_name.clone()),
            (LABEL_TASK_ID.into(), task.id.clone()),
            (LABEL_TASK_NAME.into(), task.name()),
            (LABEL_SLOT.into(), task.slot.to_string()),
            (LABEL_ROLE.into(), role.into()),
        ])
    }

    /// The labels Docker Swarm puts on a task's container, which tools that
    /// discover Swarm tasks read (Traefik, cAdvisor, Prometheus' docker
    /// service discovery). Only on the application container: the pause
    /// container would show them a second container per task.
    fn docker_labels(&self, task: &Task) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            ("com.docker.swarm.node.id".into(), self.node_id.clone()),
            (
                "com.docker.swarm.service.id".into(),
                task.service_id.clone(),
            ),
            (
                "com.docker.swarm.service.name".into(),
                task.service_name.clone(),
            ),
            ("com.docker.swarm.task".into(), String::new()),
            ("com.docker.swarm.task.id".into(), task.id.clone()),
            (
                "com.docker.swarm.task.name".into(),
                Self::container_name(task),
            ),
        ]);
        if let Some(stack) = crate::stack::stack_of(&task.spec.labels) {
            labels.insert(crate::types::STACK_NAMESPACE.into(), stack.into());
        }
        labels
    }

    /// Docker's container name for a task: `web.1.<task id>`.
    pub fn container_name(task: &Task) -> String {
        format!("{}.{}", task.name(), task.id)
    }

    /// Pull `image` from its registry, calling `progress` with Docker's
    /// status lines (`Downloading [==>   ] 1.2MB/3.4MB`) as they come.
    /// Docker's message when the pull fails.
    pub async fn pull(&self, image: &str, progress: impl FnMut(String)) -> Result<(), String> {
        use bollard::image::CreateImageOptions;
        let (name, tag) = split_tag(image);
        let opts = CreateImageOptions {
            from_image: name,
            tag,
            ..Default::default()
        };
        drain(self.docker.create_image(Some(opts), None, None), progress).await
    }

    /// Import a root filesystem (a tar) as image `image`, with Dockerfile
    /// instructions (`ENTRYPOINT`, `LABEL`) applied, as `docker import` does.
    pub async fn import(
        &self,
        image: &str,
        rootfs: Vec<u8>,
        changes: &[&str],
    ) -> Result<(), String> {
        use bollard::image::CreateImageOptions;
        let (repo, tag) = split_tag(image);
        let opts = CreateImageOptions {
            from_src: "-",
            repo,
            tag,
            changes: changes.to_vec(),
            ..Default::default()
        };
        let body = Some(rootfs.into());
        drain(self.docker.create_image(Some(opts), body, None), |_| {}).await
    }

    /// A local image's labels; Docker's message if it is missing.
    pub async fn image_labels(&self, image: &str) -> Result<HashMap<String, String>, String> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.config.and_then(|c| c.labels).unwrap_or_default()),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => Err(message),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether the image is present locally; Docker's message if not.
    pub async fn check_image(&self, image: &str) -> Result<(), String> {
        self.image_labels(image).await.map(|_| ())
    }

    /// Create and start the pause container, returning its ID and PID.
    pub async fn start_pause(
        &self,
        task: &Task,
        image: &str,
        addr: &str,
    ) -> Result<(String, u32), EngineError> {
        let mut labels = self.labels(task, "pause");
        labels.insert(LABEL_ADDR.into(), addr.into());
        let extra_hosts = &task.spec.container.extra_hosts;
        let config = Config {
            image: Some(image.to_string()),
            hostname: Some(hostname(task)),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                extra_hosts: (!extra_hosts.is_empty()).then(|| extra_hosts.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("{}.pause", Self::container_name(task));
        let id = self.create(&name, config).await?;
        self.docker.start_container::<String>(&id, None).await?;
        let pid = self.pid(&id).await?;
        Ok((id, pid))
    }

    pub async fn pid(&self, id: &str) -> Result<u32, EngineError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        Ok(info.state.and_then(|s| s.pid).unwrap_or(0) as u32)
    }

    /// Create (not start) the application container inside the pause
    /// container's network namespace, with `files` (host path, container
    /// path) bound read-only: its resolv.conf, secrets and configs.
    pub async fn create_app(
        &self,
        task: &Task,
        pause_id: &str,
        files: &[(String, String)],
    ) -> Result<String, EngineError> {
        let spec = &task.spec;
        let c = &spec.container;
        // The service's container labels, under Docker's and ours (which
        // find the task).
        let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
        labels.extend(self.docker_labels(task));
        labels.extend(self.labels(task, "task"));
        let config = Config {
            image: Some(spec.image.clone()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            entrypoint: c.entrypoint.clone(),
            env: Some(spec.env.clone()),
            user: c.user.clone(),
            working_dir: c.working_dir.clone(),
            tty: Some(c.tty),
            open_stdin: Some(c.stdin_open),
            stop_signal: c.stop_signal.clone(),
            stop_timeout: Some(super::options::stop_grace_secs(task)),
            labels: Some(labels),
            healthcheck: spec.healthcheck.as_ref().map(health_config),
            host_config: Some(HostConfig {
                readonly_rootfs: Some(c.read_only),
                init: c.init,
                mounts: Some(super::options::mounts(c)),
                ulimits: super::options::ulimits(c),
                log_config: super::options::log_config(c),
                network_mode: Some(format!("container:{pause_id}")),
                binds: Some(
                    files
                        .iter()
                        .map(|(host, container)| format!("{host}:{container}:ro"))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create(&Self::container_name(task), config).await
    }

    async fn create(&self, name: &str, config: Config<String>) -> Result<String, EngineError> {
        let opts = CreateContainerOptions {
            name: name.to_string(),
            platform: None,
        };
        Ok(self.docker.create_container(Some(opts), config).await?.id)
    }

    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        Ok(self.docker.start_container::<String>(id, None).await?)
    }

    /// Whether a container runs, asked of the container itself rather than
    /// the (briefly stale) container list.
    pub async fn is_running(&self, id: &str) -> Result<bool, EngineError> {
        match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => Ok(info.state.and_then(|s| s.running).unwrap_or(false)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a container has a healthcheck (its own or its image's).
    pub async fn has_healthcheck(&self, id: &str) -> Result<bool, EngineError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        let test = info.config.and_then(|c| c.healthcheck).and_then(|h| h.test);
        Ok(test.is_some_and(|t| t.first().is_some_and(|f| f != "NONE")))
    }

    /// The exit code of a stopped container.
    pub async fn exit_code(&self, id: &str) -> Result<i64, EngineError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        Ok(info.state.and_then(|s| s.exit_code).unwrap_or(-1))
    }

    /// Stop a container, giving it `grace` seconds before SIGKILL.
    pub async fn stop(&self, id: &str, grace: i64) -> Result<(), EngineError> {
        match self
            .docker
            .stop_container(id, Some(StopContainerOptions { t: grace }))
            .await
        {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: already gone. Both are the goal.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn image_references_split_into_name_and_tag() {
        assert_eq!(split_tag("redis"), ("redis", "latest"));
        assert_eq!(split_tag("redis:7"), ("redis", "7"));
        assert_eq!(
            split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/app:v2"),
            ("127.0.0.1:5000/app", "v2")
        );
        assert_eq!(split_tag("app@sha256:ab"), ("app@sha256:ab", ""));
    }
}
