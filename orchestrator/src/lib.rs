//! `swarm`: one binary for the node daemon and the command line. This
//! library is that binary, behind `run()`; it is a library so that the fuzz
//! targets (`fuzz/`) can reach the parsers and the state machine through
//! `fuzz`, the one public door besides `run`.

// openraft's StorageError and tonic's Status are the error types their traits
// demand; our helpers return them as-is rather than boxing and unboxing.
#![allow(clippy::result_large_err)]

/// This build's version, and the commit it was built from (`build.rs`):
/// what `swarm version` reports for the client and the daemon alike.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
pub(crate) const COMMIT: &str = env!("SWARM_COMMIT");

mod agent;
mod api;
mod bench;
mod broker;
mod cli;
mod cluster;
mod crash;
mod daemon;
mod dispatcher;
mod events;
mod files;
pub mod fuzz;
/// `--format`'s template engine, for the tests that hold it against
/// docker's own.
pub mod template {
    pub use crate::cli::template::{render, render_inspected, Format};
}
mod keyring;
mod limits;
mod manager;
mod metrics;
mod net;
mod network;
mod pki;
mod placement;
mod ports;
mod preflight;
mod raft;
mod stack;
mod state;
mod store;
mod types;
mod view;

use clap::Parser;
use cli::{Cli, Cmd};

/// Parse the command line and run it: the whole of `swarm`.
pub fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Deeply nested async calls (gRPC handlers forwarding into raft) make
    // large futures, above all in debug builds; 2 MiB worker stacks have
    // overflowed under leader changes, so give them room.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarm: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Daemon(args) => {
            init_logging(args.log_format);
            let hostname = match args.hostname {
                Some(h) => h,
                None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "localhost".into()),
            };
            daemon::run(daemon::DaemonConfig {
                data_dir: args.data_dir,
                socket: args.socket,
                advertise_addr: args.advertise_addr,
                hostname,
                gateway_subnet: args.gateway_subnet,
                pause_image: args.pause_image,
                dataplane: args.dataplane,
                pin_dir: args.pin_dir,
                secrets_dir: args.secrets_dir,
                socket_group: args
                    .socket_group
                    .as_deref()
                    .map(daemon::group_id)
                    .transpose()?,
                metrics_addr: args.metrics_addr,
            })
            .await
        }
        Cmd::Init(args) => cli::node::init(&cli.host, args).await,
        Cmd::Join {
            token,
            advertise_addr,
            remote,
        } => cli::node::join(&cli.host, token, advertise_addr, remote).await,
        Cmd::Leave { force } => cli::node::leave(&cli.host, force).await,
        Cmd::Update { autolock } => cli::autolock::update(&cli.host, autolock).await,
        Cmd::UnlockKey { quiet, rotate } => {
            cli::autolock::unlock_key(&cli.host, quiet, rotate).await
        }
        Cmd::Unlock => cli::autolock::unlock(&cli.host).await,
        Cmd::Ca {
            rotate,
            detach,
            quiet,
        } => cli::ca::run(&cli.host, rotate, detach, quiet).await,
        Cmd::JoinToken {
            quiet,
            rotate,
            role,
        } => cli::node::join_token(&cli.host, role, quiet, rotate).await,
        Cmd::Events(args) => cli::events::events(&cli.host, args).await,
        Cmd::Info { format } => cli::node::info(&cli.host, format).await,
        Cmd::Version { format } => cli::node::version(&cli.host, format).await,
        Cmd::Service(cmd) => cli::service::run(&cli.host, cmd).await,
        Cmd::Node(cmd) => cli::node::run(&cli.host, cmd).await,
        Cmd::Network(cmd) => cli::network::run(&cli.host, cmd).await,
        Cmd::Stack(cmd) => cli::stack::run(&cli.host, cmd).await,
        Cmd::Secret(cmd) => cli::secret::run(&cli.host, types::SecretKind::Secret, cmd).await,
        Cmd::Config(cmd) => cli::secret::run(&cli.host, types::SecretKind::Config, cmd).await,
        Cmd::Deploy(args) => cli::stack::deploy(&cli.host, args).await,
        Cmd::Mesh(cmd) => cli::mesh::run(&cli.host, cmd).await,
        Cmd::Bench(cmd) => {
            // Quiet unless asked: the bench's output is its JSON line.
            if std::env::var_os("SWARM_LOG").is_some() {
                init_logging(cli::LogFormat::Text);
            }
            bench::run(cmd).await
        }
        Cmd::Completion { shell } => cli::docs::completion(shell),
        Cmd::Check {
            format,
            advertise_addr,
            dataplane,
            pin_dir,
        } => {
            let host = preflight::Host {
                dataplane,
                pin_dir,
                underlay: preflight::underlay_iface(advertise_addr.as_deref()),
                ports: true,
                daemon_socket: cli.host.strip_prefix("unix://").map(Into::into),
            };
            let items = preflight::run(&host).await;
            match format {
                None | Some(cli::Format::Table) => print!("{}", preflight::render(&items)),
                _ => cli::print_inspected(&format, &items)?,
            }
            if preflight::worst(&items) == preflight::Level::Fail {
                anyhow::bail!(
                    "this host is not ready for the swarm daemon: fix the items marked fail"
                );
            }
            Ok(())
        }
        Cmd::Man { dir } => {
            let pages = cli::docs::man(&dir)?;
            println!("{} man pages in {}", pages.len(), dir.display());
            Ok(())
        }
    }
}

fn init_logging(format: cli::LogFormat) {
    // hickory-server logs every DNS query at info: at tens of thousands of
    // queries a second that logging alone would be the server's main cost.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWARM_LOG").unwrap_or_else(|_| {
        "info,openraft=warn,netlink_packet_route=error,hickory_server=warn,hickory_proto=warn"
            .into()
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        cli::LogFormat::Json => logs.json().init(),
        cli::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
