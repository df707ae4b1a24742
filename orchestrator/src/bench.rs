//! `swarm bench`: measurements of the control plane on this host, with the
//! real raft store on disk (fsync), real mutual TLS between managers on
//! loopback, and the real scheduler. Numbers, never pass/fail.
//!
//! - `raft`: commits per second from N concurrent writers against a group
//!   of 1, 3 or 5 managers in this process.
//! - `hollow`: managers and simulated agents with real sessions
//!   (`hollow.rs`).
//! - `schedule`: a single manager with simulated ("hollow") nodes, which
//!   are node records only: how long until every task of a large service is
//!   placed and committed.

mod hollow;

use crate::cluster::{ClusterService, JoinService};
use crate::dispatcher::Dispatcher;
use crate::keyring::{Field, Keyring};
use crate::net::{self, Tls};
use crate::pki::token::{self, JoinToken};
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
    /// Managers and simulated agents with real joins, mutual-TLS
    /// dispatcher sessions, heartbeats and status reports (no Docker):
    /// convergence, memory, idle CPU, replacement, failover and view fan-out.
    Hollow {
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        #[arg(long, default_value_t = 10)]
        services: usize,
        #[arg(long, default_value_t = 2_000)]
        tasks: u64,
        #[arg(long, default_value_t = 3)]
        managers: usize,
        /// From a task's assignment to its RUNNING report (ms|s).
        #[arg(long, default_value = "300ms", value_parser = crate::cli::format::parse_duration)]
        delay: Duration,
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
        BenchCmd::Hollow {
            nodes,
            services,
            tasks,
            managers,
            delay,
        } => {
            let size = hollow::Size {
                nodes,
                services,
                tasks,
                managers,
                delay,
            };
            hollow::run(&dir, size).await
        }
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

/// A raft group of managers in this process, each with its own store on
/// disk and its own mutual-TLS node server on a loopback port, which
/// serves what a daemon's does: raft, the cluster and join APIs, the
/// dispatcher and the broker. The leader holds a real cluster record, so
/// nodes join with a real token.
pub(crate) struct Group {
    pub stores: Vec<Store>,
    pub addrs: Vec<String>,
    /// Each manager's: cancelling one stops its servers (a killed manager).
    pub stops: Vec<CancellationToken>,
    /// Each manager's own (see `manager_thread`).
    runtimes: Vec<tokio::runtime::Runtime>,
    pub worker_token: JoinToken,
}

impl Group {
    /// Which of the managers still running leads.
    pub fn leader_index(&self) -> Result<usize> {
        self.stores
            .iter()
            .zip(&self.stops)
            .position(|(s, stop)| !stop.is_cancelled() && s.is_leader())
            .context("no leader")
    }

    pub fn leader(&self) -> Result<&Store> {
        Ok(&self.stores[self.leader_index()?])
    }

    pub async fn shutdown(&self) {
        for (s, stop) in self.stores.iter().zip(&self.stops) {
            stop.cancel();
            s.shutdown().await;
        }
    }
}

impl Drop for Group {
    /// Also when a bench fails half-way: a runtime may not be dropped
    /// inside another, which is where a bench runs.
    fn drop(&mut self) {
        for runtime in self.runtimes.drain(..) {
            runtime.shutdown_background();
        }
    }
}

/// What stands behind the group's node records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Members {
    /// Nothing: records that no agent beats for (judged by heartbeats,
    /// they would all go DOWN), and no manager loops unless a bench
    /// starts its own.
    Records,
    /// Hollow agents with sessions: the managers run as a daemon's do.
    Agents,
}

async fn group(
    dir: &std::path::Path,
    n: usize,
    mode: Members,
    stop: &CancellationToken,
) -> Result<Group> {
    let cluster_id = "bench";
    let ca = RootCa::create(cluster_id)?;
    // One swarm key for every manager, as joining managers receive it.
    let keyrings: Vec<Keyring> = (0..n)
        .map(|i| {
            let sub = dir.join(format!("m{i}"));
            std::fs::create_dir_all(&sub)?;
            Keyring::load(&sub)
        })
        .collect::<Result<_>>()?;
    keyrings[0].create()?;
    let key = keyrings[0].export().context("the swarm key just made")?;
    for k in &keyrings[1..] {
        k.install(&key)?;
    }
    let (mut stores, mut addrs, mut stops, mut runtimes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut members = BTreeMap::new();
    for (i, keyring) in keyrings.iter().enumerate() {
        let name = format!("m{i}");
        let (key, csr) = pki::new_key_and_csr()?;
        let cert = ca.issue(
            &csr,
            &name,
            NodeRole::Manager,
            cluster_id,
            pki::DEFAULT_CERT_EXPIRY,
        )?;
        let tls = Tls::new(&ca.cert_pem, &cert, &key)?;
        // Its own runtime, as if a process of its own: one manager's disk
        // writes or busy loops stall only it, and its CPU can be read
        // from its threads.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(manager_thread(i))
            .enable_all()
            .build()
            .context("a manager's runtime")?;
        let mine = stop.child_token();
        let serve = serve_manager(
            dir.join(&name),
            pki::raft_id_of(&name),
            tls,
            keyring.clone(),
            mode,
            mine.clone(),
        );
        let (store, addr) = runtime.spawn(serve).await??;
        members.insert(pki::raft_id_of(&name), openraft::BasicNode::new(&addr));
        stores.push(store);
        addrs.push(addr);
        stops.push(mine);
        runtimes.push(runtime);
    }
    stores[0].raft().initialize(members).await?;
    for s in &stores {
        s.wait_for_leader(Duration::from_secs(10)).await?;
    }
    let leader = stores
        .iter()
        .find(|s| s.is_leader())
        .context("no leader after the election")?;
    // Every manager holds the one swarm key: any seals for all.
    let swarm_key = &keyrings[0];
    let record = |i: usize| {
        let name = format!("m{i}");
        let mut record = hollow_node(i);
        (record.id, record.raft_id, record.role) =
            (name.clone(), pki::raft_id_of(&name), NodeRole::Manager);
        record.addr = addrs[i].clone();
        // With agents about, tasks go to them: these managers run none.
        if mode == Members::Agents {
            record.availability = Availability::Drain;
        }
        record
    };
    let seal = |field, plain: &str| swarm_key.seal_field(field, plain.as_bytes());
    let worker_secret = token::new_secret();
    let cluster = ClusterInfo {
        id: cluster_id.into(),
        created_at: now_ms(),
        ca_cert_pem: ca.cert_pem.clone(),
        ca_key: seal(Field::CaKey, &ca.key_pem)?,
        worker_secret: seal(Field::JoinSecret(NodeRole::Worker), &worker_secret)?,
        manager_secret: seal(Field::JoinSecret(NodeRole::Manager), &token::new_secret())?,
        unlock_key: None,
        cert_expiry_ms: pki::DEFAULT_CERT_EXPIRY.as_millis() as u64,
        heartbeat_ms: 1_000,
        addr_pool: default_addr_pool(),
        // Every node takes an address on ingress: a /24, the default (as
        // Docker's), holds 254 nodes. An operator of a larger swarm sets
        // `--default-addr-pool-mask-length` as this does.
        pool_mask_len: match mode {
            Members::Records => DEFAULT_POOL_MASK_LEN,
            Members::Agents => 16,
        },
        rotation: None,
    };
    leader
        .write(Command::InitCluster {
            cluster,
            node: record(0),
            ingress_id: new_id(),
        })
        .await
        .context("writing the cluster record")?;
    // The node API lets a manager forward writes only when the state knows
    // it as one.
    for i in 1..n {
        leader
            .write(Command::PutNode(record(i)))
            .await
            .context("writing a manager's record")?;
    }
    let worker_token = JoinToken {
        ca_digest: pki::ca_digest(&ca.cert_pem)?,
        secret: worker_secret,
    };
    Ok(Group {
        stores,
        addrs,
        stops,
        runtimes,
        worker_token,
    })
}

/// The name of manager `i`'s runtime threads (at most 15 bytes).
fn manager_thread(i: usize) -> String {
    format!("bench-m{i}")
}

/// Open a manager's store and serve its node API on a loopback port.
async fn serve_manager(
    dir: std::path::PathBuf,
    raft_id: u64,
    tls: Arc<Tls>,
    keyring: Keyring,
    mode: Members,
    stop: CancellationToken,
) -> Result<(Store, String)> {
    let store = Store::open(&dir, raft_id).await?;
    store.peers().set_tls(tls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    serve_node_api(&store, &keyring, mode, listener, stop);
    Ok((store, addr))
}

/// What a daemon's node server serves: raft, the cluster and join APIs,
/// the dispatcher and the broker, until `stop`. With agents about, the
/// manager also judges nodes by their heartbeats and runs its loops, as a
/// daemon does.
fn serve_node_api(
    store: &Store,
    keyring: &Keyring,
    mode: Members,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) {
    let tls = store.peers().tls().expect("a manager's credentials");
    let broker = crate::broker::Broker::new(store.clone());
    let dispatcher = Dispatcher::new(store.clone(), keyring.clone(), broker.clone());
    if mode == Members::Agents {
        tokio::spawn(dispatcher.clone().run_liveness(stop.clone()));
        crate::manager::spawn(store.clone(), stop.clone());
    }
    let server = tonic::transport::Server::builder()
        .add_service(RaftService::new(store))
        .add_service(ClusterService::new(store.clone(), keyring.clone()))
        .add_service(JoinService::new(store.clone(), keyring.clone()))
        .add_service(dispatcher.into_server())
        .add_service(crate::broker::BrokerService::server(broker, store.clone()))
        .serve_with_incoming_shutdown(
            net::incoming(
                listener,
                tls.server_config(),
                net::Connections::default(),
                stop.clone(),
            ),
            stop.cancelled_owned(),
        );
    tokio::spawn(server);
}

async fn raft(
    dir: &std::path::Path,
    managers: usize,
    clients: usize,
    window: Duration,
) -> Result<()> {
    let stop = CancellationToken::new();
    let group = group(dir, managers, Members::Records, &stop).await?;
    let leader = group.leader()?.clone();
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
    group.shutdown().await;
    Ok(())
}

async fn schedule(dir: &std::path::Path, nodes: usize, tasks: u64) -> Result<()> {
    let stop = CancellationToken::new();
    let group = group(dir, 1, Members::Records, &stop).await?;
    let store = group.stores[0].clone();
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
    group.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower away while the log grew by megabytes, far more than one
    /// append may carry in openraft's 100 ms, catches up when it is back:
    /// each append takes a prefix (`raft/network.rs`). Sent whole, the
    /// backlog timed out on every try.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_away_while_megabytes_were_written_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let group = group(dir.path(), 3, Members::Records, &stop).await.unwrap();
        let leader = group.leader_index().unwrap();
        let away = (leader + 1) % 3;
        group.stops[away].cancel();
        let pad = "x".repeat(200_000);
        for i in 0..100 {
            let mut node = hollow_node(i);
            node.labels.insert("pad".into(), pad.clone());
            group.stores[leader]
                .write(Command::PutNode(node))
                .await
                .expect("two of three managers commit");
        }
        let want = group.stores[leader].state().nodes.len();
        assert!(group.stores[away].state().nodes.len() < want, "it was away");

        // Back, on the address the others know it by.
        let listener = tokio::net::TcpListener::bind(&group.addrs[away])
            .await
            .unwrap();
        let keyring = Keyring::load(&dir.path().join(format!("m{away}"))).unwrap();
        let back = stop.child_token();
        serve_node_api(
            &group.stores[away],
            &keyring,
            Members::Records,
            listener,
            back.clone(),
        );
        let mut changes = group.stores[away].subscribe();
        tokio::time::timeout(
            Duration::from_secs(60),
            changes.wait_for(|st| st.nodes.len() == want),
        )
        .await
        .expect("the follower caught up within 60 s")
        .unwrap();
        back.cancel();
        group.shutdown().await;
    }
}
