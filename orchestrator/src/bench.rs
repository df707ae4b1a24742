//! `swarm bench`: measurements of the control plane on this host, with the
//! real raft store on disk (fsync), real mutual TLS between managers on
//! loopback, and the real scheduler. Numbers, never pass/fail.
//!
//! - `raft`: commits per second from N concurrent writers against a group
//!   of 1, 3 or 5 managers in this process.
//! - `schedule`: a single manager with simulated ("hollow") nodes, which
//!   are node records only: how long until every task of a large service is
//!   placed and committed.

use crate::cluster::ClusterService;
use crate::net::{self, Tls};
use crate::pki::{self, RootCa};
use crate::raft::service::RaftService;
use crate::state::Command;
use crate::store::Store;
use crate::types::*;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Raft commits per second with fsync.
    Raft {
        #[arg(long, default_value_t = 3)]
        managers: usize,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Placement throughput with simulated nodes.
    Schedule {
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = 10_000)]
        tasks: u64,
    },
}

pub async fn run(cmd: BenchCmd) -> Result<()> {
    let dir = tempfile_dir()?;
    let result = match cmd {
        BenchCmd::Raft {
            managers,
            clients,
            seconds,
        } => raft(&dir, managers, clients, Duration::from_secs(seconds)).await,
        BenchCmd::Schedule { nodes, tasks } => schedule(&dir, nodes, tasks).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("swarm-bench-{}", new_id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn hollow_node(i: usize) -> Node {
    Node {
        id: format!("hollow{i:04}"),
        raft_id: 0,
        hostname: format!("hollow-{i}"),
        role: NodeRole::Worker,
        availability: Availability::Active,
        state: NodeState::Ready,
        addr: String::new(),
        engine_version: "hollow".into(),
        nano_cpus: 8_000_000_000,
        memory_bytes: 32 << 30,
        labels: BTreeMap::new(),
        gateway_subnet: None,
        attachments: Vec::new(),
        meta: Meta::default(),
    }
}

/// A raft group of `n` managers in this process, each with its own store
/// on disk and its own mutual-TLS node server on a loopback port.
async fn group(dir: &std::path::Path, n: usize, stop: &CancellationToken) -> Result<Vec<Store>> {
    let ca = RootCa::create("bench")?;
    let mut stores = Vec::new();
    let mut addrs = BTreeMap::new();
    for i in 0..n {
        let sub = dir.join(format!("m{i}"));
        std::fs::create_dir_all(&sub)?;
        let name = format!("m{i}");
        let store = Store::open(&sub, pki::raft_id_of(&name)).await?;
        let (key, csr) = pki::new_key_and_csr()?;
        let cert = ca.issue(
            &csr,
            &name,
            NodeRole::Manager,
            "bench",
            pki::DEFAULT_CERT_EXPIRY,
        )?;
        let tls = Tls::new(&ca.cert_pem, &cert, &key)?;
        store.peers().set_tls(tls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let server = tonic::transport::Server::builder()
            .add_service(RaftService::new(&store))
            .add_service(ClusterService::new(
                store.clone(),
                crate::keyring::Keyring::load(&sub)?,
            ))
            .serve_with_incoming_shutdown(
                net::incoming(
                    listener,
                    tls.server_config(),
                    net::Connections::default(),
                    stop.clone(),
                ),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        addrs.insert(pki::raft_id_of(&name), openraft::BasicNode::new(&addr));
        stores.push(store);
    }
    stores[0].raft().initialize(addrs.clone()).await?;
    for s in &stores {
        s.wait_for_leader(Duration::from_secs(10)).await?;
    }
    // The managers' own records, written on the leader: the node API lets
    // a manager forward writes only when the state knows it as one.
    let leader = stores
        .iter()
        .find(|s| s.is_leader())
        .context("no leader after the election")?;
    for (i, node) in addrs.values().enumerate() {
        let name = format!("m{i}");
        let mut record = hollow_node(i);
        (record.id, record.raft_id, record.role) =
            (name.clone(), pki::raft_id_of(&name), NodeRole::Manager);
        record.addr = node.addr.clone();
        leader.write(Command::PutNode(record)).await?;
    }
    Ok(stores)
}

async fn raft(
    dir: &std::path::Path,
    managers: usize,
    clients: usize,
    window: Duration,
) -> Result<()> {
    let stop = CancellationToken::new();
    let stores = group(dir, managers, &stop).await?;
    let leader = stores
        .iter()
        .find(|s| s.is_leader())
        .context("no leader elected")?
        .clone();
    let commits = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + window;
    let writers: Vec<_> = (0..clients)
        .map(|c| {
            let (store, commits) = (leader.clone(), commits.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    let mut node = hollow_node(c * 1_000_000 + i);
                    node.meta.updated_at = i as u64;
                    if store.write(Command::PutNode(node)).await.is_ok() {
                        commits.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    for w in writers {
        w.await?;
    }
    let rate = commits.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{{\"bench\":\"raft\",\"managers\":{managers},\"clients\":{clients},\"commits_per_sec\":{rate:.0}}}");
    stop.cancel();
    for s in stores {
        s.shutdown().await;
    }
    Ok(())
}

async fn schedule(dir: &std::path::Path, nodes: usize, tasks: u64) -> Result<()> {
    let stop = CancellationToken::new();
    let store = group(dir, 1, &stop).await?.remove(0);
    for i in 0..nodes {
        store.write(Command::PutNode(hollow_node(i))).await?;
    }
    crate::manager::spawn(store.clone(), stop.clone());
    let spec = ServiceSpec::new("hollow", "hollow", Mode::Replicated, tasks);
    let started = Instant::now();
    store
        .write(Command::CreateService(Service::new(
            new_id(),
            spec,
            now_ms(),
        )))
        .await?;
    // The three writes a task goes through, timed apart: the orchestrator
    // creates it, the allocator gives it addresses, the scheduler places it.
    let mut changes = store.subscribe();
    type Done = fn(&Task) -> bool;
    let count =
        |st: &crate::state::State, f: Done| st.tasks.values().filter(|t| f(t)).count() as u64;
    let mut phases = Vec::new();
    let steps: [(&str, Done); 3] = [
        ("created_ms", |_| true),
        ("allocated_ms", |t| t.networks.is_some()),
        ("placed_and_committed_ms", |t| {
            t.status.state == TaskState::Assigned
        }),
    ];
    for (name, done) in steps {
        tokio::time::timeout(
            Duration::from_secs(300),
            changes.wait_for(|st| count(st, done) >= tasks),
        )
        .await
        .with_context(|| format!("{name}: not every task within 300 s"))??;
        phases.push(format!("\"{name}\":{}", started.elapsed().as_millis()));
    }
    let st = store.state();
    let mut per_node: BTreeMap<&str, u64> = BTreeMap::new();
    for t in st.tasks.values() {
        *per_node
            .entry(t.node_id.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    let (min, max) = (
        per_node.values().min().copied().unwrap_or(0),
        per_node.values().max().copied().unwrap_or(0),
    );
    println!(
        "{{\"bench\":\"schedule\",\"nodes\":{nodes},\"tasks\":{tasks},{},\"tasks_per_node_min\":{min},\"tasks_per_node_max\":{max}}}",
        phases.join(",")
    );
    stop.cancel();
    store.shutdown().await;
    Ok(())
}
