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
}

impl Current {
    pub fn new(daemon: watch::Receiver<Option<Arc<Daemon>>>) -> Current {
        Current { daemon }
    }
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
        Box::pin(async move {
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
