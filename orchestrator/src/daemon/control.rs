//! The control API across the daemon's generations. One socket and one
//! server live as long as the process; each call goes to the generation
//! running when it arrives, or waits for the next while one starts. A CLI
//! call never finds the socket gone because the node joined or left.

use super::Daemon;
use crate::api::pb::control_server::ControlServer;
use crate::api::server::ControlService;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tonic::body::BoxBody;
use tonic::codegen::http;
use tonic::server::NamedService;

/// How long a call waits for a generation to start.
const START_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Current {
    daemon: watch::Receiver<Option<Arc<Daemon>>>,
    /// `--socket-group`: its members may call too.
    group: Option<u32>,
}

impl Current {
    pub fn new(daemon: watch::Receiver<Option<Arc<Daemon>>>, group: Option<u32>) -> Current {
        Current { daemon, group }
    }
}

/// The groups of process `pid` (its primary one is in the credentials;
/// the supplementary ones are in /proc).
fn groups_of(pid: i32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A caller's credentials, as the kernel gives them for a unix socket.
#[derive(Clone, Copy, Debug)]
struct Peer {
    uid: u32,
    gid: u32,
    pid: Option<i32>,
}

/// Whether the peer may use the control API: root, the daemon's own user,
/// or a member of `group`. The socket's mode says the same (0600, or 0660
/// for the group); this holds even if someone widens the mode.
fn allowed(
    peer: Option<Peer>,
    me: u32,
    group: Option<u32>,
    groups: impl FnOnce(i32) -> Vec<u32>,
) -> Result<(), String> {
    let Some(peer) = peer else {
        return Err("the control socket could not tell who is calling".into());
    };
    let uid = peer.uid;
    let member = |g: u32| peer.gid == g || peer.pid.is_some_and(|p| groups(p).contains(&g));
    if uid == 0 || uid == me || group.is_some_and(member) {
        return Ok(());
    }
    Err(format!(
        "uid {uid} may not use this daemon's control socket: only root{} may",
        match group {
            Some(g) => format!(" and members of group {g} (--socket-group)"),
            None => String::new(),
        }
    ))
}

impl NamedService for Current {
    const NAME: &'static str = <ControlServer<ControlService> as NamedService>::NAME;
}

impl tower::Service<http::Request<BoxBody>> for Current {
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        let mut daemon = self.daemon.clone();
        let peer = req
            .extensions()
            .get::<tonic::transport::server::UdsConnectInfo>()
            .and_then(|c| c.peer_cred)
            .map(|c| Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            });
        // SAFETY: geteuid only reads the process's effective user ID.
        let me = unsafe { libc::geteuid() };
        let verdict = allowed(peer, me, self.group, groups_of);
        Box::pin(async move {
            if let Err(why) = verdict {
                return Ok(tonic::Status::permission_denied(why).into_http());
            }
            let current = tokio::time::timeout(START_WAIT, daemon.wait_for(Option::is_some))
                .await
                .ok()
                .and_then(|r| r.ok().map(|d| d.clone()))
                .flatten();
            match current {
                Some(d) => ControlService::new(d).into_server().call(req).await,
                None => Ok(tonic::Status::unavailable(format!(
                    "the daemon did not start within {START_WAIT:?}; see its log"
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{allowed, Peer};

    #[test]
    fn only_root_the_daemons_user_and_the_socket_group_may_call() {
        let peer = |uid, gid| {
            Some(Peer {
                uid,
                gid,
                pid: Some(42),
            })
        };
        let no_groups = |_| Vec::new();
        assert!(allowed(peer(0, 0), 0, None, no_groups).is_ok(), "root");
        assert!(
            allowed(peer(1000, 1000), 1000, None, no_groups).is_ok(),
            "the daemon's user"
        );
        let e = allowed(peer(65534, 65534), 0, None, no_groups).unwrap_err();
        assert_eq!(
            e,
            "uid 65534 may not use this daemon's control socket: only root may"
        );
        let e = allowed(peer(65534, 65534), 0, Some(998), no_groups).unwrap_err();
        assert!(e.contains("members of group 998"), "{e}");
        assert!(
            allowed(peer(1000, 998), 0, Some(998), no_groups).is_ok(),
            "primary group"
        );
        let supplementary = |pid| if pid == 42 { vec![5, 998] } else { Vec::new() };
        assert!(allowed(peer(1000, 1000), 0, Some(998), supplementary).is_ok());
        assert!(allowed(None, 0, None, no_groups).is_err(), "no credentials");
    }
}
