//! The CLI side of the control API: finds the daemon's socket the way docker
//! finds its own (`-H` or `SWARM_HOST`) and turns transport failures into
//! advice.

use super::pb::control_client::ControlClient;
use anyhow::{anyhow, Result};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use tonic::transport::{Channel, Endpoint, Uri};

pub const DEFAULT_HOST: &str = "unix:///run/swarm/swarm.sock";

pub type Client = ControlClient<Channel>;

/// The socket path named by a host string: `unix:///path` or a bare path.
pub fn socket_path(host: &str) -> Result<PathBuf> {
    if let Some(p) = host.strip_prefix("unix://") {
        return Ok(PathBuf::from(p));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    Err(anyhow!(
        "unsupported host {host:?}: the CLI talks to its local daemon only, over unix://PATH"
    ))
}

pub async fn connect(host: &str) -> Result<Client> {
    let path = socket_path(host)?;
    // Probe first: tonic's own error for a missing socket says little.
    if let Err(e) = tokio::net::UnixStream::connect(&path).await {
        return Err(anyhow!(
            "cannot connect to the swarm daemon at {}: {e}. Is the daemon running? \
             Start it with `swarm daemon` (or `scripts/lab.sh up 1` in the lab), \
             or point -H/SWARM_HOST at its socket",
            path.display()
        ));
    }
    let channel = Endpoint::try_from("http://swarm.local")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(ControlClient::new(channel))
}

/// Turn an API error into the message a user should see.
pub fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow!("{}", s.message())
}
