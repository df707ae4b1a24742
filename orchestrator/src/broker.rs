//! The leader's broker for task I/O, in SwarmKit's log broker shape. A
//! manager asks for a task's logs or an exec in it; the broker hands the
//! work to the task's agent down that node's dispatcher session; the agent
//! calls back (`PublishLogs`, `Attach`) and the broker joins its stream to
//! the asker's. Agents only ever dial the leader, which they already reach,
//! so no node has to reach a worker, and a CLI on any manager reaches a
//! task on any node.

use crate::api::broker_pb::{
    broker_server, exec_input, exec_output, ExecAssignment, ExecInput, ExecOutput, ExecStart,
    LogsAssignment, LogsMessage, LogsRequest, PublishLogsResponse, Work,
};
use crate::net::Peer;
use crate::store::Store;
use futures::{Stream, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How long an agent has to call back once handed work. Past it the asker
/// is told which node did not answer.
const CALLBACK_WAIT: Duration = Duration::from_secs(10);

pub type Outputs = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;
pub type Logs = ReceiverStream<Result<LogsMessage, Status>>;

#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Node ID → its dispatcher session's work queue, with the session's
    /// number (a reconnecting agent's new session replaces the old one).
    sessions: Mutex<HashMap<String, (u64, mpsc::UnboundedSender<Work>)>>,
    next: std::sync::atomic::AtomicU64,
    logs: Mutex<HashMap<String, WaitingLogs>>,
    execs: Mutex<HashMap<String, WaitingExec>>,
}

/// A subscription some nodes have not called back for yet.
struct WaitingLogs {
    to: mpsc::Sender<Result<LogsMessage, Status>>,
    nodes: BTreeSet<String>,
}

/// An exec whose agent has not attached yet.
struct WaitingExec {
    node: String,
    attached: oneshot::Sender<(Outputs, mpsc::Sender<ExecInput>)>,
}

/// A dispatcher session's registration; dropping it unregisters.
pub struct Registration {
    broker: Broker,
    node: String,
    number: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut sessions = self.broker.inner.sessions.lock().expect("sessions lock");
        if sessions
            .get(&self.node)
            .is_some_and(|(n, _)| *n == self.number)
        {
            sessions.remove(&self.node);
        }
    }
}

fn notice(text: String) -> Result<LogsMessage, Status> {
    Ok(LogsMessage {
        notice: text,
        ..Default::default()
    })
}

impl Broker {
    pub fn new(store: Store) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                store,
                sessions: Mutex::default(),
                next: Default::default(),
                logs: Mutex::default(),
                execs: Mutex::default(),
            }),
        }
    }

    /// Take work for `node` from now on, on the returned queue.
    pub fn register(&self, node: &str) -> (Registration, mpsc::UnboundedReceiver<Work>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let number = self
            .inner
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .sessions
            .lock()
            .expect("sessions lock")
            .insert(node.to_string(), (number, tx));
        let reg = Registration {
            broker: self.clone(),
            node: node.to_string(),
            number,
        };
        (reg, rx)
    }

    fn ensure_leader(&self) -> Result<(), Status> {
        let store = &self.inner.store;
        if store.is_leader() {
            return Ok(());
        }
        Err(crate::net::not_leader(store.leader_addr()))
    }

    /// Hand `work` to `node`'s agent; false when it has no session here.
    fn send(&self, node: &str, work: Work) -> bool {
        let sessions = self.inner.sessions.lock().expect("sessions lock");
        sessions
            .get(node)
            .is_some_and(|(_, tx)| tx.send(work).is_ok())
    }

    fn hostname(&self, node: &str) -> String {
        self.inner.store.state().node_name(node)
    }

    /// The logs of `req.task_ids`: each task's agent is asked for its part.
    /// Without follow, the stream ends once every agent has sent its part.
    pub fn logs(&self, req: LogsRequest) -> Result<Logs, Status> {
        self.ensure_leader()?;
        let st = self.inner.store.state();
        // Room for a notice per task on top, as those are sent at once.
        let (to, rx) = mpsc::channel(64 + req.task_ids.len());
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut notices = Vec::new();
        for id in &req.task_ids {
            match st.tasks.get(id).and_then(|t| t.node_id.clone()) {
                Some(node) => by_node.entry(node).or_default().push(id.clone()),
                None => notices.push(format!("task {id} is on no node: it has no logs")),
            }
        }
        let id = crate::types::new_id();
        // Registered before any agent is asked, so a quick one finds it.
        self.inner.logs.lock().expect("logs lock").insert(
            id.clone(),
            WaitingLogs {
                to: to.clone(),
                nodes: by_node.keys().cloned().collect(),
            },
        );
        for (node, task_ids) in by_node {
            let work = Work {
                logs: vec![LogsAssignment {
                    subscription_id: id.clone(),
                    request: Some(LogsRequest {
                        task_ids,
                        ..req.clone()
                    }),
                }],
                ..Default::default()
            };
            if !self.send(&node, work) {
                if let Some(w) = self.inner.logs.lock().expect("logs lock").get_mut(&id) {
                    w.nodes.remove(&node);
                }
                notices.push(format!(
                    "node {} is not connected to the leader: its tasks' logs are missing",
                    self.hostname(&node)
                ));
            }
        }
        for text in notices {
            let _ = to.try_send(notice(text));
        }
        {
            let mut logs = self.inner.logs.lock().expect("logs lock");
            if logs.get(&id).is_some_and(|w| w.nodes.is_empty()) {
                logs.remove(&id);
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CALLBACK_WAIT).await;
            me.give_up_logs(&id).await;
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Tell the asker which nodes never called back, and forget them.
    async fn give_up_logs(&self, id: &str) {
        let Some(w) = self.inner.logs.lock().expect("logs lock").remove(id) else {
            return;
        };
        for node in w.nodes {
            let text = format!(
                "node {} did not answer within {}s: its tasks' logs are missing",
                self.hostname(&node),
                CALLBACK_WAIT.as_secs()
            );
            let _ = w.to.send(notice(text)).await;
        }
    }

    /// An agent's answer to a subscription: relayed until it ends or the
    /// asker goes away.
    pub async fn publish(
        &self,
        node: &str,
        mut from: Streaming<LogsMessage>,
    ) -> Result<(), Status> {
        let Some(first) = from.message().await? else {
            return Ok(());
        };
        let to = {
            let mut logs = self.inner.logs.lock().expect("logs lock");
            let w = logs
                .get_mut(&first.subscription_id)
                .filter(|w| w.nodes.contains(node))
                .ok_or_else(|| Status::not_found("no such log subscription for this node"))?;
            w.nodes.remove(node);
            let to = w.to.clone();
            if w.nodes.is_empty() {
                logs.remove(&first.subscription_id);
            }
            to
        };
        let mut next = Some(first);
        loop {
            if let Some(mut msg) = next.take() {
                msg.subscription_id.clear();
                if to.send(Ok(msg)).await.is_err() {
                    return Ok(()); // the asker went away
                }
            }
            tokio::select! {
                m = from.message() => match m? {
                    Some(m) => next = Some(m),
                    None => return Ok(()),
                },
                _ = to.closed() => return Ok(()),
            }
        }
    }

    /// Run `start` in its task, wherever that runs; `inputs` go to the
    /// command, its outputs come back.
    pub async fn exec(
        &self,
        start: ExecStart,
        inputs: impl Stream<Item = Result<ExecInput, Status>> + Send + 'static,
    ) -> Result<Outputs, Status> {
        self.ensure_leader()?;
        let node = {
            let st = self.inner.store.state();
            let task = st
                .tasks
                .get(&start.task_id)
                .ok_or_else(|| Status::not_found(format!("task {} not found", start.task_id)))?;
            task.node_id.clone().ok_or_else(|| {
                Status::failed_precondition(format!("task {} is on no node", start.task_id))
            })?
        };
        let id = crate::types::new_id();
        let (attached, wait) = oneshot::channel();
        self.inner.execs.lock().expect("execs lock").insert(
            id.clone(),
            WaitingExec {
                node: node.clone(),
                attached,
            },
        );
        let work = Work {
            execs: vec![ExecAssignment {
                exec_id: id.clone(),
                start: Some(start),
            }],
            ..Default::default()
        };
        let forget = || self.inner.execs.lock().expect("execs lock").remove(&id);
        if !self.send(&node, work) {
            forget();
            return Err(Status::unavailable(format!(
                "node {} is not connected to the leader",
                self.hostname(&node)
            )));
        }
        let Ok(Ok((outputs, to_agent))) = tokio::time::timeout(CALLBACK_WAIT, wait).await else {
            forget();
            return Err(Status::deadline_exceeded(format!(
                "node {} did not answer within {}s",
                self.hostname(&node),
                CALLBACK_WAIT.as_secs()
            )));
        };
        // The caller's input goes on until it ends or the command does. The
        // agent's Attach ends once its input does: the leader closes it
        // only after the exit code came, so the agent never cuts the call
        // (and that last message) short.
        let done = tokio_util::sync::CancellationToken::new();
        let ended = done.clone();
        tokio::spawn(async move {
            let mut inputs = std::pin::pin!(inputs);
            loop {
                tokio::select! {
                    _ = ended.cancelled() => return,
                    input = inputs.next() => match input {
                        Some(Ok(input)) => if to_agent.send(input).await.is_err() { return },
                        _ => return,
                    },
                }
            }
        });
        // Also ended when the caller drops the outputs.
        let guard = done.clone().drop_guard();
        let outputs = outputs.inspect(move |o| {
            let _ = &guard;
            if let Ok(ExecOutput {
                output: Some(exec_output::Output::ExitCode(_)),
            }) = o
            {
                done.cancel();
            }
        });
        Ok(outputs.boxed())
    }

    /// An agent attaching to an exec it was handed: its outputs go to the
    /// caller, the caller's inputs come back on the returned stream.
    pub async fn attach(
        &self,
        node: &str,
        mut from: Streaming<ExecOutput>,
    ) -> Result<ReceiverStream<ExecInput>, Status> {
        let first = from.message().await?;
        let Some(ExecOutput {
            output: Some(exec_output::Output::Attach(id)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message of Attach names the exec",
            ));
        };
        let waiting = {
            let mut execs = self.inner.execs.lock().expect("execs lock");
            match execs.get(&id) {
                Some(w) if w.node == node => execs.remove(&id),
                _ => None,
            }
        }
        .ok_or_else(|| Status::not_found("no such exec for this node"))?;
        let (to_agent, inputs) = mpsc::channel(16);
        waiting
            .attached
            .send((from.boxed(), to_agent))
            .map_err(|_| Status::cancelled("the caller went away"))?;
        Ok(ReceiverStream::new(inputs))
    }
}

/// The broker served to other nodes: managers ask, agents answer.
pub struct BrokerService {
    broker: Broker,
}

impl BrokerService {
    pub fn server(
        broker: Broker,
        store: Store,
    ) -> tonic::service::interceptor::InterceptedService<
        broker_server::BrokerServer<BrokerService>,
        crate::cluster::access::Gate,
    > {
        use crate::cluster::access::{Gate, Need};
        let server = broker_server::BrokerServer::new(BrokerService { broker });
        tonic::service::interceptor::InterceptedService::new(server, Gate::new(store, Need::Node))
    }
}

type Inputs = Pin<Box<dyn Stream<Item = Result<ExecInput, Status>> + Send>>;

#[tonic::async_trait]
impl broker_server::Broker for BrokerService {
    type SubscribeLogsStream = Logs;
    type ExecStream = Outputs;
    type AttachStream = Inputs;

    async fn subscribe_logs(&self, req: Request<LogsRequest>) -> Result<Response<Logs>, Status> {
        Peer::require(&req, true)?;
        Ok(Response::new(self.broker.logs(req.into_inner())?))
    }

    async fn publish_logs(
        &self,
        req: Request<Streaming<LogsMessage>>,
    ) -> Result<Response<PublishLogsResponse>, Status> {
        let who = Peer::require(&req, false)?;
        self.broker.publish(&who.node_id, req.into_inner()).await?;
        Ok(Response::new(PublishLogsResponse {}))
    }

    async fn exec(&self, req: Request<Streaming<ExecInput>>) -> Result<Response<Outputs>, Status> {
        Peer::require(&req, true)?;
        let mut inputs = req.into_inner();
        let start = first_start(&mut inputs).await?;
        Ok(Response::new(self.broker.exec(start, inputs).await?))
    }

    async fn attach(
        &self,
        req: Request<Streaming<ExecOutput>>,
    ) -> Result<Response<Inputs>, Status> {
        let who = Peer::require(&req, false)?;
        let inputs = self.broker.attach(&who.node_id, req.into_inner()).await?;
        Ok(Response::new(Box::pin(inputs.map(Ok))))
    }
}

/// The `start` an exec's input stream must open with.
pub async fn first_start(inputs: &mut Streaming<ExecInput>) -> Result<ExecStart, Status> {
    match inputs.message().await? {
        Some(ExecInput {
            input: Some(exec_input::Input::Start(start)),
        }) => Ok(start),
        _ => Err(Status::invalid_argument(
            "an exec's first input must be its start",
        )),
    }
}
