//! `service logs` and `service exec` on the daemon: the task is resolved
//! here, from this manager's state, and the I/O goes through the leader's
//! broker (this daemon's own when it leads), which reaches the task's
//! agent on whichever node runs it.

use super::broker_pb::{broker_client::BrokerClient, ExecInput, LogsMessage, LogsRequest};
use super::pb::{LogSource, ServiceLogsMessage};
use crate::broker::{Broker, Outputs};
use crate::daemon::Daemon;
use crate::state::State;
use crate::store::Store;
use crate::types::{Task, TaskState};
use futures::{Stream, StreamExt};
use std::collections::HashSet;
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

pub type LogStream = Pin<Box<dyn Stream<Item = Result<ServiceLogsMessage, Status>> + Send>>;

/// The tasks `target` names that have had a container: every such task
/// of a service, or the one task.
fn log_tasks<'a>(st: &'a State, target: &str) -> Result<Vec<&'a Task>, Status> {
    let tasks: Vec<&Task> = if let Some(svc) = st.find_service(target) {
        st.tasks_of(&svc.id).collect()
    } else if let Some(t) = st.find_task(target) {
        vec![t]
    } else {
        return Err(Status::not_found(format!(
            "no such service or task: {target}"
        )));
    };
    let mut tasks: Vec<&Task> = tasks.into_iter().filter(|t| has_logs(t)).collect();
    tasks.sort_by(|a, b| (a.slot, &a.meta.created_at).cmp(&(b.slot, &b.meta.created_at)));
    Ok(tasks)
}

/// A task has logs once it has had a container on a node.
fn has_logs(t: &Task) -> bool {
    t.node_id.is_some() && t.status.container_id.is_some()
}

/// The running task `target` names: a task ID, `SERVICE.SLOT`, or a
/// service (its running task of the lowest slot).
fn exec_task<'a>(st: &'a State, target: &str) -> Result<&'a Task, Status> {
    let running = |t: &&Task| t.status.state == TaskState::Running;
    if let Some(svc) = st.find_service(target) {
        return st
            .tasks_of(&svc.id)
            .filter(running)
            .min_by_key(|t| t.slot)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "service {} has no running task",
                    svc.spec.name
                ))
            });
    }
    if let Some((name, slot)) = target.rsplit_once('.') {
        if let (Some(svc), Ok(slot)) = (st.find_service(name), slot.parse::<u64>()) {
            return st
                .tasks_of(&svc.id)
                .filter(running)
                .find(|t| t.slot == slot)
                .ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "service {} has no running task in slot {slot}",
                        svc.spec.name
                    ))
                });
        }
    }
    let task = st
        .find_task(target)
        .ok_or_else(|| Status::not_found(format!("no such service, slot or task: {target}")))?;
    if task.status.state != TaskState::Running {
        return Err(Status::failed_precondition(format!(
            "task {} is {}, not running",
            task.id,
            task.status.state.as_str()
        )));
    }
    Ok(task)
}

fn source(st: &State, t: &Task) -> LogSource {
    LogSource {
        task_id: t.id.clone(),
        task_name: t.name(),
        node: st.node_name(t.node_id.as_deref().unwrap_or_default()),
    }
}

/// `service logs TARGET`: the sources first, then the lines as they come.
/// Following a service, tasks that start later join the stream, as in
/// docker's (the task list is not fixed when the command starts).
pub async fn logs(
    daemon: &Daemon,
    st: &State,
    target: &str,
    options: LogsRequest,
) -> Result<LogStream, Status> {
    let tasks = log_tasks(st, target)?;
    let first = subscribe(&daemon.store, &daemon.broker, st, &tasks, options.clone()).await?;
    let service = match st.find_service(target) {
        Some(svc) if options.follow => svc.id.clone(),
        _ => return Ok(first),
    };
    let (to, rx) = mpsc::channel(64);
    let follow = Follow {
        store: daemon.store.clone(),
        broker: daemon.broker.clone(),
        service,
        known: tasks.iter().map(|t| t.id.clone()).collect(),
        // A new task's container is new: all of its lines, from `since`.
        options: LogsRequest {
            tail: None,
            ..options
        },
    };
    tokio::spawn(follow.run(first, to));
    Ok(ReceiverStream::new(rx).boxed())
}

/// One subscription for `tasks`: their sources, then their lines.
async fn subscribe(
    store: &Store,
    broker: &Broker,
    st: &State,
    tasks: &[&Task],
    options: LogsRequest,
) -> Result<LogStream, Status> {
    let req = LogsRequest {
        task_ids: tasks.iter().map(|t| t.id.clone()).collect(),
        ..options
    };
    let head = ServiceLogsMessage {
        sources: tasks.iter().map(|t| source(st, t)).collect(),
        logs: None,
    };
    let lines: Pin<Box<dyn Stream<Item = Result<LogsMessage, Status>> + Send>> =
        if store.is_leader() {
            broker.logs(req)?.boxed()
        } else {
            let channel = store.leader_channel().map_err(Status::from)?;
            let mut client = BrokerClient::new(channel);
            client.subscribe_logs(req).await?.into_inner().boxed()
        };
    let rest = lines.map(|m| {
        m.map(|logs| ServiceLogsMessage {
            sources: Vec::new(),
            logs: Some(logs),
        })
    });
    Ok(futures::stream::once(async { Ok(head) })
        .chain(rest)
        .boxed())
}

/// `service logs -f SERVICE`, extended by each task of the service that
/// gets a container after it started, until the caller goes away or the
/// service is removed.
struct Follow {
    store: Store,
    broker: Broker,
    service: String,
    known: HashSet<String>,
    options: LogsRequest,
}

impl Follow {
    async fn run(mut self, first: LogStream, to: mpsc::Sender<Result<ServiceLogsMessage, Status>>) {
        let mut states = self.store.subscribe();
        let mut streams = futures::stream::SelectAll::new();
        streams.push(first);
        loop {
            tokio::select! {
                m = streams.next(), if !streams.is_empty() => {
                    if let Some(m) = m {
                        if to.send(m).await.is_err() {
                            return;
                        }
                    }
                }
                changed = states.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let st = states.borrow_and_update().clone();
                    if !st.services.contains_key(&self.service) {
                        return;
                    }
                    match self.newcomers(&st).await {
                        Ok(Some(s)) => streams.push(s),
                        Ok(None) => {}
                        Err(e) => {
                            let _ = to.send(Err(e)).await;
                            return;
                        }
                    }
                }
                _ = to.closed() => return,
            }
        }
    }

    /// A subscription for the service's tasks not followed yet, if any.
    async fn newcomers(&mut self, st: &State) -> Result<Option<LogStream>, Status> {
        let new: Vec<&Task> = st
            .tasks_of(&self.service)
            .filter(|t| has_logs(t) && !self.known.contains(&t.id))
            .collect();
        if new.is_empty() {
            return Ok(None);
        }
        self.known.extend(new.iter().map(|t| t.id.clone()));
        let s = subscribe(&self.store, &self.broker, st, &new, self.options.clone()).await?;
        Ok(Some(s))
    }
}

/// `service exec TARGET CMD`: the first input names the target; the rest
/// go to the command as they come.
pub async fn exec(
    daemon: &Daemon,
    st: &State,
    mut inputs: Streaming<ExecInput>,
) -> Result<Outputs, Status> {
    let mut start = crate::broker::first_start(&mut inputs).await?;
    if start.cmd.is_empty() {
        return Err(Status::invalid_argument("exec needs a command to run"));
    }
    start.task_id = exec_task(st, &start.target)?.id.clone();
    // Inputs end at the caller's first error (it went away).
    let inputs = inputs.scan((), |_, r| futures::future::ready(r.ok()));
    if daemon.store.is_leader() {
        return daemon.broker.exec(start, inputs.map(Ok)).await;
    }
    let channel = daemon.store.leader_channel().map_err(Status::from)?;
    let first = ExecInput {
        input: Some(super::broker_pb::exec_input::Input::Start(start)),
    };
    let all = futures::stream::once(async { first }).chain(inputs);
    let outputs = BrokerClient::new(channel).exec(all).await?.into_inner();
    Ok(outputs.boxed())
}
