//! `swarm service logs` and `swarm service exec`: a task's output and a
//! command run in it, from whichever node runs it (through the daemon and
//! the leader's broker; see `crate::broker`).

use super::format::{parse_time, short};
use crate::api::broker_pb::{
    exec_input, exec_output, ExecInput, ExecStart, LogsRequest, TerminalSize,
};
use crate::api::client::{status_error, Client};
use crate::api::pb::{self, LogSource};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures::StreamExt;
use std::collections::HashMap;
use std::io::Write;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// A service (name or ID) or a task ID.
    #[arg(value_name = "SERVICE|TASK")]
    pub target: String,
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since a timestamp (e.g. "2013-01-02T13:23:37Z", or Unix
    /// seconds) or a relative time (e.g. "42m" for 42 minutes ago).
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of each task's log.
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Do not include task IDs in the prefix.
    #[arg(long)]
    pub no_task_ids: bool,
    /// Do not truncate task IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Do not neatly format logs: the lines only, with no prefix.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// SERVICE (its running task of the lowest slot), SERVICE.SLOT, or a
    /// task ID.
    #[arg(value_name = "SERVICE[.SLOT]|TASK")]
    pub target: String,
    /// Keep stdin open and send it to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE); repeatable.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Run as this user (name or UID[:GID]).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Run in this directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

fn parse_tail(s: &str) -> Result<Option<u64>> {
    match s {
        "all" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("invalid --tail {n:?}: expected a number or \"all\"")),
    }
}

/// Docker's prefix for a task's lines: `web.1.<id>@node`, padded so that
/// lines of one- and two-digit slots line up.
fn prefix(src: &LogSource, args: &LogsArgs, slot_width: usize) -> String {
    let mut name = src.task_name.clone();
    if !args.no_task_ids {
        let id = if args.no_trunc {
            src.task_id.as_str()
        } else {
            short(&src.task_id)
        };
        name = format!("{name}.{id}");
    }
    let width = slot_of(src).len();
    let pad = " ".repeat(slot_width.saturating_sub(width));
    format!("{name}@{}{pad}", src.node)
}

fn slot_of(src: &LogSource) -> &str {
    src.task_name.rsplit('.').next().unwrap_or_default()
}

pub async fn logs(c: &mut Client, args: LogsArgs) -> Result<()> {
    let now = chrono::Utc::now().timestamp();
    let options = LogsRequest {
        task_ids: Vec::new(),
        follow: args.follow,
        tail: parse_tail(&args.tail)?,
        since: args
            .since
            .as_deref()
            .map(|s| parse_time("--since", s, now))
            .transpose()?
            .unwrap_or(0),
        timestamps: args.timestamps,
    };
    let req = pb::ServiceLogsRequest {
        target: args.target.clone(),
        options: Some(options),
    };
    let mut stream = c
        .service_logs(req)
        .await
        .map_err(status_error)?
        .into_inner();
    let mut prefixes: HashMap<String, String> = HashMap::new();
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(status_error)?;
        if !msg.sources.is_empty() {
            let width = msg
                .sources
                .iter()
                .map(|s| slot_of(s).len())
                .max()
                .unwrap_or(0);
            for src in &msg.sources {
                prefixes.insert(src.task_id.clone(), prefix(src, &args, width));
            }
        }
        let Some(logs) = msg.logs else { continue };
        if !logs.notice.is_empty() {
            writeln!(stderr, "swarm: {}", logs.notice)?;
        }
        for line in logs.lines {
            let text = String::from_utf8_lossy(&line.data);
            if args.raw {
                stdout.write_all(&line.data)?;
                continue;
            }
            let prefix = prefixes.get(&line.task_id).map_or("", String::as_str);
            for l in text.lines() {
                // Docker puts the engine's timestamp before the prefix.
                match (args.timestamps, l.split_once(' ')) {
                    (true, Some((ts, rest))) => writeln!(stdout, "{ts} {prefix}    | {rest}")?,
                    _ => writeln!(stdout, "{prefix}    | {l}")?,
                }
            }
        }
        stdout.flush()?;
    }
    Ok(())
}

/// The terminal put in raw mode for a `-t` exec, and put back on drop.
struct RawTerminal(libc::termios);

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios they fill.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::isatty(0) != 1 || libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            (libc::tcsetattr(0, libc::TCSANOW, &t) == 0).then_some(RawTerminal(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}

/// The size of the terminal on stdout, if it is one.
fn terminal_size() -> Option<TerminalSize> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0).then(|| TerminalSize {
        rows: ws.ws_row.into(),
        cols: ws.ws_col.into(),
    })
}

fn input(i: exec_input::Input) -> ExecInput {
    ExecInput { input: Some(i) }
}

/// Run the command; returns its exit code.
pub async fn exec(c: &mut Client, args: ExecArgs) -> Result<i32> {
    let start = ExecStart {
        task_id: String::new(),
        cmd: args.cmd,
        interactive: args.interactive,
        tty: args.tty,
        env: args.env,
        user: args.user.unwrap_or_default(),
        workdir: args.workdir.unwrap_or_default(),
        size: args.tty.then(terminal_size).flatten(),
        target: args.target,
    };
    let (tx, rx) = mpsc::channel(16);
    tx.send(input(exec_input::Input::Start(start))).await?;
    if args.interactive {
        // A thread, as reading stdin blocks; it ends with the process.
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 16 << 10];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send(input(exec_input::Input::StdinClosed(true)));
                        return;
                    }
                    Ok(n) => {
                        let data = buf[..n].to_vec();
                        if tx
                            .blocking_send(input(exec_input::Input::Stdin(data)))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    }
    if args.tty {
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut winch) = signal(SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size() {
                    if tx
                        .send(input(exec_input::Input::Resize(size)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let mut outputs = c
        .service_exec(ReceiverStream::new(rx))
        .await
        .map_err(status_error)?
        .into_inner();
    let _raw = if args.tty { RawTerminal::enter() } else { None };
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    while let Some(out) = outputs.next().await {
        let out = out.map_err(status_error)?;
        match out.output {
            Some(exec_output::Output::Stdout(d)) => {
                stdout.write_all(&d)?;
                stdout.flush()?;
            }
            Some(exec_output::Output::Stderr(d)) => stderr.write_all(&d)?,
            Some(exec_output::Output::ExitCode(code)) => {
                return i32::try_from(code).context("the command's exit code");
            }
            Some(exec_output::Output::Attach(_)) | None => {}
        }
    }
    bail!("the exec ended without an exit code: the task's node or the leader went away")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_dockers() {
        let src = LogSource {
            task_id: "abcdefghijklmnopqrstuvwxy".into(),
            task_name: "demo_web.3".into(),
            node: "n2".into(),
        };
        let args = |no_task_ids, no_trunc| LogsArgs {
            target: "web".into(),
            follow: false,
            since: None,
            tail: "all".into(),
            timestamps: false,
            no_task_ids,
            no_trunc,
            raw: false,
        };
        assert_eq!(
            prefix(&src, &args(false, false), 1),
            "demo_web.3.abcdefghijkl@n2"
        );
        assert_eq!(prefix(&src, &args(true, false), 2), "demo_web.3@n2 ");
        assert_eq!(
            prefix(&src, &args(false, true), 1),
            "demo_web.3.abcdefghijklmnopqrstuvwxy@n2"
        );
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("0").unwrap(), Some(0));
        assert!(parse_tail("-1").is_err());
    }
}
