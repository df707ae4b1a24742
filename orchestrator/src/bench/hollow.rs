//! `swarm bench hollow`: managers in this process and simulated agents in
//! the manner of Kubernetes' kubemark. Each hollow agent joins with the
//! real worker token (a real certificate from the CA), holds a real
//! dispatcher session over mutual TLS through the agent's own session code
//! (heartbeats, assignments, per-node views, status reports), and reports
//! each task it is given through PREPARING, STARTING and RUNNING after a
//! delay, with no Docker. What it measures is the control plane at size.
//!
//! Everything runs in one process. Each manager has a runtime of its own,
//! so `leader_cpu_pct` is the leader's threads alone; `manager_rss_mb` is
//! the process's peak (managers and agents together), an upper bound on
//! the leader's own.

use super::{group, manager_thread, Group, Members};
use crate::agent::session::{self, Link};
use crate::api::cluster_pb::JoinRequest;
use crate::raft::network::Peers;
use crate::state::{Command, State};
use crate::store::Store;
use crate::types::*;
use anyhow::{bail, Context, Result};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long any one phase may take before the bench gives up on it.
const PHASE_LIMIT: Duration = Duration::from_secs(600);
/// Joins in flight at once (each is a CSR signed and a raft write).
const JOINS_IN_FLIGHT: usize = 32;
/// The published port of the probe service every node's view carries.
const PROBE_PORT: u16 = 30_999;

pub struct Size {
    pub nodes: usize,
    pub services: usize,
    pub tasks: u64,
    pub managers: usize,
    /// From a task's assignment to its RUNNING report (a third per step).
    pub delay: Duration,
}

/// One simulated node: its session's stop, and the views it was sent.
struct Hollow {
    id: String,
    stop: CancellationToken,
    views: watch::Receiver<Option<Arc<session::Assigned>>>,
}

pub async fn run(dir: &std::path::Path, size: Size) -> Result<()> {
    if size.services == 0 || size.nodes == 0 || size.managers == 0 {
        bail!("--nodes, --services and --managers must be at least 1");
    }
    progress("starting the managers");
    let stop = CancellationToken::new();
    let group = group(dir, size.managers, Members::Agents, &stop).await?;
    let hollows = join_all(&group, &size, &stop).await?;
    progress("every hollow node joined");
    let leader = group.leader()?.clone();
    wait(&leader, "every hollow node READY", |st| {
        let ready = |n: &&Node| n.role == NodeRole::Worker && n.state == NodeState::Ready;
        st.nodes.values().filter(ready).count() >= size.nodes
    })
    .await?;

    // The probe: one task, an ingress port, so every node's view has it.
    let mut probe = ServiceSpec::new("probe", "hollow", Mode::Replicated, 1);
    probe.ports.push(PortConfig {
        protocol: Proto::Tcp,
        published: PROBE_PORT,
        target: 80,
        mode: PublishMode::Ingress,
        force: false,
    });
    let probe_id = new_id();
    leader
        .write(Command::CreateService(Service::new(
            probe_id.clone(),
            probe,
            now_ms(),
        )))
        .await
        .context("creating the probe service")?;
    let total = size.tasks + 1;

    let started = Instant::now();
    let per = size.tasks / size.services as u64;
    for i in 0..size.services {
        let extra = u64::from((i as u64) < size.tasks % size.services as u64);
        let spec = ServiceSpec::new(
            &format!("hollow{i}"),
            "hollow",
            Mode::Replicated,
            per + extra,
        );
        let cmd = Command::CreateService(Service::new(new_id(), spec, now_ms()));
        leader.write(cmd).await.context("creating a service")?;
    }
    wait(&leader, "every task RUNNING", |st| running(st) >= total).await?;
    let converged_ms = started.elapsed().as_millis();
    let duplicates = duplicates(&leader.state());

    // Idle: heartbeats only. The leader's own threads.
    let threads = manager_thread(group.leader_index()?);
    let cpu = cpu_seconds(&threads)?;
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let leader_cpu_pct = (cpu_seconds(&threads)? - cpu) / window.as_secs_f64() * 100.0;

    // One service scaled: until every node's view has the new backend.
    let started = Instant::now();
    scale(&leader, &probe_id, 2)
        .await
        .context("scaling the probe")?;
    wait_views(&hollows, &probe_id, 2).await?;
    progress("every view has the new backend");
    let view_update_ms = started.elapsed().as_millis();

    // 1% of the nodes stop: until their tasks run elsewhere.
    let gone: BTreeSet<String> = hollows
        .iter()
        .take((size.nodes / 100).max(1))
        .map(|h| {
            h.stop.cancel();
            h.id.clone()
        })
        .collect();
    let total = total + 1;
    let started = Instant::now();
    wait(&leader, "the stopped nodes' tasks to run elsewhere", |st| {
        let on_live = |t: &&Task| t.node_id.as_ref().is_some_and(|n| !gone.contains(n));
        running_tasks(st).filter(on_live).count() as u64 >= total
    })
    .await?;
    let replace_ms = started.elapsed().as_millis();
    let manager_rss_mb = peak_rss_mb()?;

    let failover_ms = if size.managers > 1 {
        Some(failover(&group).await?)
    } else {
        None
    };
    let failover = failover_ms.map_or("null".to_string(), |ms| ms.to_string());
    println!(
        "{{\"bench\":\"hollow\",\"nodes\":{},\"services\":{},\"tasks\":{},\"managers\":{},\"converged_ms\":{converged_ms},\"duplicates\":{duplicates},\"manager_rss_mb\":{manager_rss_mb},\"leader_cpu_pct\":{leader_cpu_pct:.1},\"replace_ms\":{replace_ms},\"failover_ms\":{failover},\"view_update_ms\":{view_update_ms}}}",
        size.nodes, size.services, size.tasks, size.managers
    );
    stop.cancel();
    group.shutdown().await;
    Ok(())
}

/// Join `size.nodes` hollow agents, a few at a time.
async fn join_all(group: &Group, size: &Size, stop: &CancellationToken) -> Result<Vec<Hollow>> {
    let addr = group.addrs[group.leader_index()?].clone();
    let joins = futures::stream::iter(0..size.nodes)
        .map(|i| {
            join(
                i,
                &group.worker_token,
                &addr,
                size.delay,
                stop.child_token(),
            )
        })
        .buffer_unordered(JOINS_IN_FLIGHT);
    let hollows: Vec<Result<Hollow>> = joins.collect().await;
    hollows.into_iter().collect()
}

async fn join(
    i: usize,
    token: &crate::pki::token::JoinToken,
    manager: &str,
    delay: Duration,
    stop: CancellationToken,
) -> Result<Hollow> {
    let (key, csr_pem) = crate::pki::new_key_and_csr()?;
    let resp = crate::cluster::join::request(
        token,
        manager,
        JoinRequest {
            csr_pem,
            hostname: format!("hollow-{i}"),
            // Never dialled: managers do not reach workers.
            addr: format!("127.1.{}.{}:2377", i / 250, i % 250 + 1),
            engine_version: "hollow".into(),
            nano_cpus: 8_000_000_000,
            memory_bytes: 32 << 30,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("hollow node {i} joining"))?;
    let tls = crate::net::Tls::new(&resp.ca_pem, &resp.cert_pem, &key)?;
    let peers = Arc::new(Peers::default());
    peers.set_tls(tls);
    let (managers, _) = watch::channel(resp.managers);
    let (standing, _) = watch::channel(Default::default());
    // Hollow agents take no task I/O: work sent to them is dropped.
    let (work, _) = tokio::sync::mpsc::unbounded_channel();
    let link = session::spawn(peers, managers, standing, work, stop.clone());
    let views = link.assigned.clone();
    tokio::spawn(run_tasks(link, delay, stop.clone()));
    Ok(Hollow {
        id: resp.node_id,
        stop,
        views,
    })
}

/// The hollow agent's "engine": each task assigned to run is reported
/// through PREPARING, STARTING and RUNNING; each told to stop, SHUTDOWN.
async fn run_tasks(mut link: Link, delay: Duration, stop: CancellationToken) {
    let mut started: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = link.assigned.changed() => if changed.is_err() { return },
        }
        let Some(assigned) = link.assigned.borrow_and_update().clone() else {
            continue;
        };
        let mut new = Vec::new();
        let mut stopped = Vec::new();
        for t in &assigned.tasks {
            let live = !t.status.state.is_terminal();
            if t.desired_state <= TaskState::Running && live && started.insert(t.id.clone()) {
                new.push(t.id.clone());
            } else if t.desired_state >= TaskState::Shutdown && live {
                stopped.push((
                    t.id.clone(),
                    TaskStatus::new(TaskState::Shutdown, "shutdown"),
                ));
            }
        }
        if !stopped.is_empty() {
            let _ = link.reports.send(stopped);
        }
        if new.is_empty() {
            continue;
        }
        let reports = link.reports.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let steps = [
                (TaskState::Preparing, "preparing"),
                (TaskState::Starting, "starting"),
                (TaskState::Running, "started"),
            ];
            for (state, message) in steps {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay / 3) => {}
                }
                let report = new
                    .iter()
                    .map(|id| {
                        let mut st = TaskStatus::new(state, message);
                        st.container_id = (state == TaskState::Running).then(|| "hollow".into());
                        (id.clone(), st)
                    })
                    .collect();
                if reports.send(report).is_err() {
                    return;
                }
            }
        });
    }
}

fn running_tasks(st: &State) -> impl Iterator<Item = &Task> {
    st.tasks
        .values()
        .map(|t| &**t)
        .filter(|t| t.desired_state == TaskState::Running && t.status.state == TaskState::Running)
}

fn running(st: &State) -> u64 {
    running_tasks(st).count() as u64
}

/// Slots with more than one running task.
fn duplicates(st: &State) -> usize {
    let mut per_slot: BTreeMap<(&str, u64), usize> = BTreeMap::new();
    for t in running_tasks(st) {
        *per_slot.entry((&t.service_id, t.slot)).or_default() += 1;
    }
    per_slot.values().filter(|n| **n > 1).count()
}

/// When the bench began, for its progress lines.
static BEGAN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// A progress line on stderr (stdout carries the result alone): at the
/// larger sizes a phase takes minutes.
fn progress(what: &str) {
    let since = BEGAN.get_or_init(Instant::now).elapsed();
    eprintln!("hollow: {what} ({:.1} s)", since.as_secs_f64());
}

async fn wait(store: &Store, what: &str, f: impl Fn(&State) -> bool) -> Result<()> {
    let mut changes = store.subscribe();
    let waited = tokio::time::timeout(PHASE_LIMIT, changes.wait_for(|st| f(st))).await;
    match waited {
        Err(_) => bail!("{what}: not within {PHASE_LIMIT:?}"),
        Ok(Err(_)) => bail!("{what}: the store stopped"),
        Ok(Ok(_)) => {
            progress(what);
            Ok(())
        }
    }
}

async fn scale(store: &Store, id: &str, replicas: u64) -> Result<()> {
    let mut service = Service::clone(store.state().services.get(id).context("the probe")?);
    let expected_version = service.meta.version;
    service.spec.replicas = replicas;
    store
        .write(Command::UpdateService {
            service,
            expected_version,
        })
        .await?;
    Ok(())
}

/// Until every live hollow node's view shows `backends` for `service`.
async fn wait_views(hollows: &[Hollow], service: &str, backends: usize) -> Result<()> {
    let has = |a: &Option<Arc<session::Assigned>>| {
        a.as_ref().is_some_and(|a| {
            a.view
                .services
                .iter()
                .any(|s| s.id == service && s.backends.len() == backends)
        })
    };
    for h in hollows {
        let mut views = h.views.clone();
        tokio::time::timeout(PHASE_LIMIT, views.wait_for(has))
            .await
            .with_context(|| format!("{}: the view not within {PHASE_LIMIT:?}", h.id))?
            .with_context(|| format!("{}: its session ended", h.id))?;
    }
    Ok(())
}

/// Stop the leader; time until another manager takes a write.
async fn failover(group: &Group) -> Result<u128> {
    let i = group.leader_index()?;
    let started = Instant::now();
    group.stops[i].cancel();
    group.stores[i].shutdown().await;
    let deadline = started + PHASE_LIMIT;
    let mut n = 0;
    loop {
        for (j, s) in group.stores.iter().enumerate() {
            if j == i || !s.is_leader() {
                continue;
            }
            let mut probe = super::hollow_node(1_000_000 + n);
            probe.state = NodeState::Down;
            if s.write(Command::PutNode(probe)).await.is_ok() {
                return Ok(started.elapsed().as_millis());
            }
            n += 1;
        }
        if Instant::now() > deadline {
            bail!("no manager took a write within {PHASE_LIMIT:?} of the leader's stop");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The user and system CPU time of this process's threads named
/// `threads`, in seconds.
fn cpu_seconds(threads: &str) -> Result<f64> {
    let mut ticks = 0.0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?.path();
        // A thread that ended between the listing and the read counts nothing.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue;
        };
        if comm.trim_end() != threads {
            continue;
        }
        // Fields after the command name, which ends at the last ')'.
        let rest = stat.rsplit_once(')').context("a thread's stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    }
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// This process's peak resident set (VmHWM), in MB.
fn peak_rss_mb() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024)
}
