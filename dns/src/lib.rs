//! The embedded DNS server: answers service, alias and `tasks.` names from
//! the names the cluster state gives this node, and forwards every other
//! name to the node's upstream resolvers.
//!
//! Each task gets its own listener, on 127.0.0.11:53 inside the task's
//! network namespace (the agent opens the socket there, as Docker does),
//! so a listener knows exactly which task asks and answers only names on
//! that task's networks. This crate holds no state of its own but counters
//! (`stats.rs`): the names are replaced wholesale whenever the node's view
//! changes.

mod forward;
mod stats;

pub use stats::{Outcome, Snapshot, Stats, LATENCY_BUCKETS};

use hickory_proto::op::{Metadata, ResponseCode};
use hickory_proto::rr::{rdata::A, Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

/// Answers live as long as the state they came from may be cached: a
/// second, so a change is seen within one.
pub const TTL: u32 = 1;

/// Names per network: network ID → name (lowercase, no trailing dot) →
/// addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names(HashMap<String, HashMap<String, Vec<Ipv4Addr>>>);

impl Names {
    /// Build from `(network, name, addresses)` triples.
    pub fn new(records: impl IntoIterator<Item = (String, String, Vec<Ipv4Addr>)>) -> Names {
        let mut table: HashMap<String, HashMap<String, Vec<Ipv4Addr>>> = HashMap::new();
        for (net, name, addrs) in records {
            table
                .entry(net)
                .or_default()
                .entry(name.to_ascii_lowercase())
                .or_default()
                .extend(addrs);
        }
        Names(table)
    }

    /// The addresses of `name` on any of the `scope` networks; `None` when
    /// no such network knows the name (it is then not a cluster name).
    pub fn lookup(&self, scope: &[String], name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = name.trim_end_matches('.');
        // Queries are almost always lowercase already: copy only if not.
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(name.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(name)
        };
        let mut found: Option<Vec<Ipv4Addr>> = None;
        for net in scope {
            if let Some(addrs) = self.0.get(net).and_then(|t| t.get(name.as_ref())) {
                let all = found.get_or_insert_with(Vec::new);
                all.extend(
                    addrs
                        .iter()
                        .filter(|a| !all.contains(a))
                        .copied()
                        .collect::<Vec<_>>(),
                );
            }
        }
        found
    }
}

/// The node's DNS service: the current names, the upstream resolvers, and
/// the thread every listener runs on.
#[derive(Clone)]
pub struct Resolver {
    answers: Answers,
    thread: Arc<DnsThread>,
    stats: Arc<Stats>,
}

/// What a listener answers from.
#[derive(Clone)]
struct Answers {
    names: Arc<RwLock<Arc<Names>>>,
    upstreams: Arc<Vec<SocketAddr>>,
}

/// A single-threaded runtime of its own for every listener. On the
/// daemon's work-stealing runtime each query hopped between worker threads
/// (receive loop, per-query task, send), and the wake-ups between them
/// cost more than the answers. One thread answering in turn did more
/// queries at a lower p99, and so did it against two threads reading the
/// same socket (docs/benchmarks.md).
struct DnsThread {
    handle: tokio::runtime::Handle,
    // Dropping the sender ends the thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl DnsThread {
    fn start() -> std::io::Result<DnsThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("swarm-dns".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(DnsThread {
            handle,
            _stop: stop,
        })
    }
}

impl Resolver {
    /// Fails only when the DNS thread cannot be started.
    pub fn new(upstreams: Vec<SocketAddr>) -> std::io::Result<Resolver> {
        Ok(Resolver {
            answers: Answers {
                names: Arc::default(),
                upstreams: Arc::new(upstreams),
            },
            thread: Arc::new(DnsThread::start()?),
            stats: Arc::default(),
        })
    }

    /// What every listener of this resolver answered so far.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Replace every name (a new view of the cluster).
    pub fn set_names(&self, names: Names) {
        *self.answers.names.write().expect("names lock") = Arc::new(names);
    }

    /// Answer queries arriving on `socket` (bound, non-blocking) for a task
    /// on the `scope` networks, until the listener is dropped.
    pub fn serve(
        &self,
        socket: std::net::UdpSocket,
        scope: Vec<String>,
    ) -> std::io::Result<Listener> {
        // Entering the DNS runtime registers the socket with its reactor
        // and spawns the server's tasks there.
        let _in_dns_thread = self.thread.handle.enter();
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let handler = Handler {
            answers: self.answers.clone(),
            scope,
            stats: self.stats.clone(),
        };
        let mut server = hickory_server::Server::new(handler);
        server.register_socket(socket);
        Ok(Listener { server })
    }
}

/// One task's DNS listener. Dropping it stops the listener.
pub struct Listener {
    server: hickory_server::Server<Handler>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

/// The nameservers of a resolv.conf that a task can use through the node:
/// loopback ones are the node's own stub and are left out.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .filter(|a| !a.is_loopback())
        .map(|a| SocketAddr::new(a, 53))
        .collect()
}

struct Handler {
    answers: Answers,
    scope: Vec<String>,
    stats: Arc<Stats>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        let started = std::time::Instant::now();
        let (info, outcome) = self.answer(request, response).await;
        self.stats.record(outcome, started.elapsed());
        info
    }
}

impl Handler {
    async fn answer<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> (ResponseInfo, Outcome) {
        let mut meta = Metadata::response_from_request(&request.metadata);
        let builder = MessageResponseBuilder::from_message_request(request);
        let Some(query) = request.queries.queries().first() else {
            let info = send(
                &mut response,
                &request.metadata,
                builder.error_msg(&request.metadata, ResponseCode::FormErr),
            )
            .await;
            return (info, Outcome::Failed);
        };
        let qname = query.name().to_string();
        let names = self.answers.names.read().expect("names lock").clone();
        match names.lookup(&self.scope, &qname) {
            Some(addrs) => {
                meta.authoritative = true;
                meta.recursion_available = true;
                let name: Name = query.original().name().clone();
                let answers: Vec<Record> = match query.query_type() {
                    RecordType::A | RecordType::ANY => addrs
                        .iter()
                        .map(|a| Record::from_rdata(name.clone(), TTL, RData::A(A(*a))))
                        .collect(),
                    // A cluster name has IPv4 addresses only: other types
                    // get an empty NOERROR, never a trip upstream.
                    _ => Vec::new(),
                };
                let info = send(
                    &mut response,
                    &request.metadata,
                    builder.build(meta, answers.iter(), [], [], []),
                )
                .await;
                (info, Outcome::Cluster)
            }
            None => match forward::ask(&self.answers.upstreams, request.as_slice()).await {
                Some(reply) => {
                    meta.recursion_available = true;
                    meta.response_code = reply.metadata.response_code;
                    let info = send(
                        &mut response,
                        &request.metadata,
                        builder.build(meta, reply.answers.iter(), reply.authorities.iter(), [], []),
                    )
                    .await;
                    (info, Outcome::Forwarded)
                }
                // No upstream, or none answered: say so at once.
                None => {
                    let info = send(
                        &mut response,
                        &request.metadata,
                        builder.error_msg(&request.metadata, ResponseCode::ServFail),
                    )
                    .await;
                    (info, Outcome::Failed)
                }
            },
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    request: &Metadata,
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "cannot send a DNS response");
            let mut meta = Metadata::response_from_request(request);
            meta.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata: meta,
                counts: Default::default(),
            }
            .into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        Names::new([
            ("back".into(), "web".into(), vec![a("10.0.1.2")]),
            (
                "back".into(),
                "Tasks.Web".into(),
                vec![a("10.0.1.5"), a("10.0.1.6")],
            ),
            ("front".into(), "web".into(), vec![a("10.0.2.2")]),
            ("front".into(), "nginx".into(), vec![a("10.0.2.9")]),
            ("other".into(), "secret".into(), vec![a("10.0.3.3")]),
        ])
    }

    #[test]
    fn a_task_sees_only_names_on_its_own_networks() {
        let n = names();
        let scope = vec!["back".to_string(), "front".to_string()];
        let web = n.lookup(&scope, "web.").unwrap();
        assert_eq!(web.len(), 2, "the VIP on each of the task's networks");
        assert_eq!(n.lookup(&scope, "TASKS.web").unwrap().len(), 2);
        assert_eq!(n.lookup(&scope, "secret"), None);
        assert_eq!(n.lookup(&["back".into()], "nginx"), None);
    }

    #[test]
    fn loopback_resolvers_are_not_upstreams() {
        let conf =
            "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch x\nnameserver ::1\n";
        let up = upstreams_from_resolv_conf(conf);
        assert_eq!(up, vec!["192.0.2.1:53".parse().unwrap()]);
    }
}
