//! The agent's end of task I/O: work the leader's broker hands it (see
//! `crate::broker`). For logs it reads each task's container log from the
//! local engine and publishes it to the leader; for an exec it runs the
//! command in the task's container and attaches its input and output to
//! the leader. Every call goes to the leader that handed the work.

use super::engine::Engine;
use super::session::Work;
use crate::api::broker_pb::{
    broker_client::BrokerClient, exec_input, exec_output, ExecAssignment, ExecInput, ExecOutput,
    LogLine, LogsAssignment, LogsMessage, Stream as Std,
};
use crate::raft::network::Peers;
use bollard::container::{LogOutput, LogsOptions};
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use futures::StreamExt;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Take the broker's work until the daemon stops; each piece runs on its own.
pub async fn serve(
    engine: Engine,
    peers: Arc<Peers>,
    mut work: mpsc::UnboundedReceiver<Work>,
    stop: CancellationToken,
) {
    loop {
        let (leader, work) = tokio::select! {
            _ = stop.cancelled() => return,
            w = work.recv() => match w {
                Some(w) => w,
                None => return,
            },
        };
        let client = match peers.channel(&leader) {
            Ok(c) => BrokerClient::new(c),
            Err(e) => {
                tracing::warn!(%leader, error = %e, "cannot reach the leader for task I/O");
                continue;
            }
        };
        for logs in work.logs {
            let (engine, client) = (engine.clone(), client.clone());
            tokio::spawn(async move {
                let id = logs.subscription_id.clone();
                if let Err(e) = publish_logs(&engine, client, logs).await {
                    tracing::warn!(subscription = %id, error = %e, "publishing logs failed");
                }
            });
        }
        for exec in work.execs {
            let (engine, client) = (engine.clone(), client.clone());
            tokio::spawn(async move {
                let id = exec.exec_id.clone();
                if let Err(e) = run_exec(&engine, client, exec).await {
                    tracing::warn!(exec = %id, error = %e, "exec failed");
                }
            });
        }
    }
}

/// The application container of task `task_id` among `containers`.
fn container_of(containers: &Containers, task_id: &str) -> Result<String, String> {
    containers
        .get(task_id)
        .and_then(|c| c.app.as_ref())
        .and_then(|c| c.id.clone())
        .ok_or_else(|| format!("task {task_id} has no container on this node"))
}

type Containers = std::collections::HashMap<String, super::engine::TaskContainers>;

async fn containers(engine: &Engine) -> Result<Containers, String> {
    engine.task_containers().await.map_err(|e| e.to_string())
}

/// Send this node's part of one subscription: every task's log as Docker
/// has it, until each ends (or, with follow, until the asker goes).
async fn publish_logs(
    engine: &Engine,
    mut client: BrokerClient<tonic::transport::Channel>,
    logs: LogsAssignment,
) -> Result<(), tonic::Status> {
    let req = logs.request.unwrap_or_default();
    let (tx, rx) = mpsc::channel(64);
    let first = LogsMessage {
        subscription_id: logs.subscription_id,
        ..Default::default()
    };
    tx.send(first).await.expect("the receiver is held below");
    let found = containers(engine).await;
    // Dropped when publishing ends, which stops every task's reader.
    let mut readers = tokio::task::JoinSet::new();
    for task_id in req.task_ids.clone() {
        let (engine, tx) = (engine.clone(), tx.clone());
        let container = found
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| container_of(c, &task_id));
        let opts = LogsOptions::<String> {
            follow: req.follow,
            stdout: true,
            stderr: true,
            since: req.since,
            timestamps: req.timestamps,
            tail: req.tail.map_or_else(|| "all".into(), |n| n.to_string()),
            ..Default::default()
        };
        readers.spawn(async move {
            let container = match container {
                Ok(c) => c,
                Err(notice) => {
                    let msg = LogsMessage {
                        notice,
                        ..Default::default()
                    };
                    let _ = tx.send(msg).await;
                    return;
                }
            };
            let mut out = engine.docker.logs(&container, Some(opts));
            while let Some(item) = out.next().await {
                let msg = match item {
                    Ok(out) => {
                        let (stream, data) = split(out);
                        LogsMessage {
                            lines: vec![LogLine {
                                task_id: task_id.clone(),
                                stream: stream as i32,
                                data,
                            }],
                            ..Default::default()
                        }
                    }
                    Err(e) => LogsMessage {
                        notice: format!("reading the log of task {task_id}: {e}"),
                        ..Default::default()
                    },
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    client.publish_logs(ReceiverStream::new(rx)).await?;
    Ok(())
}

fn split(out: LogOutput) -> (Std, Vec<u8>) {
    match out {
        LogOutput::StdErr { message } => (Std::Stderr, message.to_vec()),
        LogOutput::StdOut { message }
        | LogOutput::Console { message }
        | LogOutput::StdIn { message } => (Std::Stdout, message.to_vec()),
    }
}

fn output(o: exec_output::Output) -> ExecOutput {
    ExecOutput { output: Some(o) }
}

/// Run one exec in its task's container, attached to the leader: the
/// caller's input in, the command's output and exit code out. A command
/// that cannot start still attaches, to tell the caller why.
async fn run_exec(
    engine: &Engine,
    mut client: BrokerClient<tonic::transport::Channel>,
    exec: ExecAssignment,
) -> Result<(), tonic::Status> {
    let start = exec.start.unwrap_or_default();
    let (tx, rx) = mpsc::channel(64);
    tx.send(output(exec_output::Output::Attach(exec.exec_id)))
        .await
        .expect("the receiver is held below");
    let mut inputs = client.attach(ReceiverStream::new(rx)).await?.into_inner();
    let started = async {
        let container = container_of(&containers(engine).await?, &start.task_id)?;
        let opts = CreateExecOptions::<String> {
            attach_stdin: Some(start.interactive),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(start.tty),
            env: Some(start.env.clone()),
            cmd: Some(start.cmd.clone()),
            user: (!start.user.is_empty()).then(|| start.user.clone()),
            working_dir: (!start.workdir.is_empty()).then(|| start.workdir.clone()),
            ..Default::default()
        };
        let created = engine
            .docker
            .create_exec(&container, opts)
            .await
            .map_err(|e| e.to_string())?;
        let opts = StartExecOptions {
            detach: false,
            tty: start.tty,
            output_capacity: None,
        };
        match engine.docker.start_exec(&created.id, Some(opts)).await {
            Ok(StartExecResults::Attached { output, input }) => Ok((created.id, output, input)),
            Ok(StartExecResults::Detached) => Err("the engine detached the exec".to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let (id, mut out, mut stdin) = match started.await {
        Ok(s) => s,
        Err(why) => {
            let text = format!("cannot run the command in task {}: {why}\n", start.task_id);
            let _ = tx
                .send(output(exec_output::Output::Stderr(text.into_bytes())))
                .await;
            let _ = tx.send(output(exec_output::Output::ExitCode(126))).await;
            return Ok(());
        }
    };
    if let (true, Some(size)) = (start.tty, start.size) {
        resize(engine, &id, size).await;
    }
    // The caller's input: stdin bytes, its end, terminal resizes.
    let mut feeder = {
        let engine = engine.clone();
        let id = id.clone();
        tokio::spawn(async move {
            while let Ok(Some(ExecInput { input: Some(i) })) = inputs.message().await {
                match i {
                    exec_input::Input::Stdin(data) => {
                        if stdin.write_all(&data).await.is_err() {
                            return;
                        }
                    }
                    exec_input::Input::StdinClosed(_) => {
                        let _ = stdin.shutdown().await;
                    }
                    exec_input::Input::Resize(size) => resize(&engine, &id, size).await,
                    exec_input::Input::Start(_) => {}
                }
            }
        })
    };
    while let Some(item) = out.next().await {
        let Ok(o) = item else { break };
        let msg = match split(o) {
            (Std::Stderr, data) => exec_output::Output::Stderr(data),
            (Std::Stdout, data) => exec_output::Output::Stdout(data),
        };
        if tx.send(output(msg)).await.is_err() {
            break; // the caller went away
        }
    }
    let code = match engine.docker.inspect_exec(&id).await {
        Ok(i) => i.exit_code.unwrap_or(0),
        Err(e) => {
            let text = format!("cannot read the command's exit code: {e}\n");
            let _ = tx
                .send(output(exec_output::Output::Stderr(text.into_bytes())))
                .await;
            1
        }
    };
    let _ = tx.send(output(exec_output::Output::ExitCode(code))).await;
    drop(tx);
    // The leader ends the input once it has the exit code; dropping the
    // call before then could cut that last message off.
    if tokio::time::timeout(LINGER, &mut feeder).await.is_err() {
        feeder.abort();
    }
    Ok(())
}

/// How long an ended exec waits for the leader to close its input.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

async fn resize(engine: &Engine, id: &str, size: crate::api::broker_pb::TerminalSize) {
    let opts = ResizeExecOptions {
        height: size.rows.min(u16::MAX.into()) as u16,
        width: size.cols.min(u16::MAX.into()) as u16,
    };
    if let Err(e) = engine.docker.resize_exec(id, opts).await {
        tracing::debug!(exec = %id, error = %e, "cannot resize an exec's terminal");
    }
}
