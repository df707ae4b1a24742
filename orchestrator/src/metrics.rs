//! Prometheus metrics on `--metrics-addr` (off unless given): raft, the
//! objects, the scheduler, the dispatcher, the data plane and DNS.
//!
//! Two kinds. Events (a proposal's latency, a leader change, a missed
//! heartbeat, an open session) are counted where they happen, in `EVENTS`.
//! Everything else is state that exists anyway (raft's indexes, the tasks,
//! the BPF counters, the DNS counts) and is read when Prometheus scrapes, so
//! nothing is kept twice and nothing goes stale between scrapes.

use crate::daemon::Daemon;
use crate::types::{NodeState, TaskState};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Metrics counted as things happen, for the life of the process.
pub struct Events {
    registry: Registry,
    pub proposal_seconds: Histogram,
    pub leader_changes: IntCounter,
    pub heartbeat_misses: IntCounter,
    sessions: IntGauge,
}

pub static EVENTS: LazyLock<Events> = LazyLock::new(|| {
    let registry = Registry::new();
    let proposal_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "swarm_raft_proposal_seconds",
            "Time from proposing a write to raft until it is committed and applied.",
        )
        .buckets(prometheus::exponential_buckets(0.000_25, 2.0, 14).expect("valid buckets")),
    )
    .expect("valid histogram");
    let leader_changes = IntCounter::new(
        "swarm_raft_leader_changes_total",
        "Times this manager saw the raft leader change (including to none).",
    )
    .expect("valid counter");
    let heartbeat_misses = IntCounter::new(
        "swarm_dispatcher_heartbeat_misses_total",
        "Nodes this leader marked down because their heartbeats stopped.",
    )
    .expect("valid counter");
    let sessions = IntGauge::new(
        "swarm_dispatcher_sessions",
        "Agent sessions this manager's dispatcher holds open.",
    )
    .expect("valid gauge");
    let all: [Box<dyn Collector>; 4] = [
        Box::new(proposal_seconds.clone()),
        Box::new(leader_changes.clone()),
        Box::new(heartbeat_misses.clone()),
        Box::new(sessions.clone()),
    ];
    for c in all {
        registry.register(c).expect("names are unique");
    }
    Events {
        registry,
        proposal_seconds,
        leader_changes,
        heartbeat_misses,
        sessions,
    }
});

/// Counts one open dispatcher session while it lives.
pub struct SessionOpen(());

impl Events {
    pub fn session_opened(&self) -> SessionOpen {
        self.sessions.inc();
        SessionOpen(())
    }
}

impl Drop for SessionOpen {
    fn drop(&mut self) {
        EVENTS.sessions.dec();
    }
}

/// Serve `/metrics` on `addr` until `stop`, for whichever generation of the
/// daemon is current (`current`). Fails only if `addr` cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    current: watch::Receiver<Option<Arc<Daemon>>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-addr {addr}: cannot listen there"))?;
    tokio::spawn(count_leader_changes(current.clone(), stop.clone()));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let daemon = current.borrow().clone();
            // Reading the BPF maps blocks: off the async workers, as the
            // control API's `mesh dump` does.
            async move {
                tokio::task::spawn_blocking(move || scrape(daemon.as_deref()))
                    .await
                    .unwrap_or_default()
            }
        }),
    );
    tracing::info!(%addr, "metrics listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

fn scrape(daemon: Option<&Daemon>) -> (axum::http::HeaderMap, String) {
    let mut families = EVENTS.registry.gather();
    if let Some(d) = daemon {
        match state_families(d) {
            Ok(f) => families.extend(f),
            Err(e) => tracing::warn!(error = %e, "cannot gather metrics"),
        }
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = encoder.encode(&families, &mut body) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(v) = encoder.format_type().parse() {
        headers.insert(axum::http::header::CONTENT_TYPE, v);
    }
    (headers, String::from_utf8_lossy(&body).into_owned())
}

/// Each generation's store has its own raft: follow the current one.
async fn count_leader_changes(
    mut current: watch::Receiver<Option<Arc<Daemon>>>,
    stop: CancellationToken,
) {
    loop {
        let daemon = current.borrow_and_update().clone();
        if let Some(d) = daemon {
            let mut raft = d.store.raft_metrics();
            let mut leader = raft.borrow_and_update().current_leader;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = current.changed() => break,
                    r = raft.changed() => {
                        if r.is_err() {
                            break;
                        }
                        let now = raft.borrow_and_update().current_leader;
                        if now != leader {
                            EVENTS.leader_changes.inc();
                            leader = now;
                        }
                    }
                }
            }
        } else {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = current.changed() => if r.is_err() { return },
            }
        }
    }
}

/// A registry made for one scrape, filled from the daemon's state.
struct Snapshot(Registry);

impl Snapshot {
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// A gauge without labels, set to `v`.
    fn value(&self, name: &str, help: &str, v: i64) -> prometheus::Result<()> {
        let g = IntGauge::new(name, help)?;
        g.set(v);
        self.0.register(Box::new(g))
    }

    /// A counter whose count is kept elsewhere (BPF maps, the DNS server).
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

fn state_families(d: &Daemon) -> prometheus::Result<Vec<MetricFamily>> {
    let s = Snapshot(Registry::new());
    raft(&s, d)?;
    objects(&s, d)?;
    dataplane(&s, d)?;
    let mut families = s.0.gather();
    if let Some(stats) = d.dns_stats.get() {
        families.extend(dns(&stats.snapshot()));
    }
    Ok(families)
}

fn raft(s: &Snapshot, d: &Daemon) -> prometheus::Result<()> {
    let m = d.store.raft_metrics().borrow().clone();
    // A worker keeps no raft log: nothing to say.
    if m.membership_config.membership().get_node(&m.id).is_none() {
        return Ok(());
    }
    let last_log = m.last_log_index.unwrap_or(0);
    let applied = m.last_applied.map_or(0, |l| l.index);
    let one = |name: &str, help: &str, v: u64| s.value(name, help, v as i64);
    one(
        "swarm_raft_term",
        "The raft term this manager is in.",
        m.current_term,
    )?;
    one(
        "swarm_raft_last_log_index",
        "Index of the last entry in this manager's raft log.",
        last_log,
    )?;
    one(
        "swarm_raft_applied_index",
        "Index of the last raft entry applied to this manager's state.",
        applied,
    )?;
    one(
        "swarm_raft_apply_lag",
        "Entries in this manager's log not yet applied to its state.",
        last_log.saturating_sub(applied),
    )?;
    one(
        "swarm_raft_is_leader",
        "1 on the raft leader, 0 elsewhere.",
        u64::from(m.current_leader == Some(m.id)),
    )?;
    if let Some(commit) = commit_index(&m) {
        one(
            "swarm_raft_commit_index",
            "Highest index a quorum of voters holds (on the leader, which knows it).",
            commit,
        )?;
    }
    Ok(())
}

/// On the leader: the index a majority of voters has, from its replication
/// progress. A follower learns it only by applying, so it has none here.
fn commit_index(
    m: &openraft::RaftMetrics<crate::raft::NodeId, openraft::BasicNode>,
) -> Option<u64> {
    let progress = m.replication.as_ref()?;
    let mut held: Vec<u64> = m
        .membership_config
        .membership()
        .voter_ids()
        .map(|v| match progress.get(&v) {
            _ if v == m.id => m.last_log_index.unwrap_or(0),
            Some(Some(log)) => log.index,
            _ => 0,
        })
        .collect();
    // Highest first: the entry at n/2 is held by n/2 + 1 voters, a majority.
    held.sort_unstable_by(|a, b| b.cmp(a));
    held.get(held.len() / 2).copied()
}

fn objects(s: &Snapshot, d: &Daemon) -> prometheus::Result<()> {
    let st = d.store.state();
    let tasks = s.gauge(
        "swarm_tasks",
        "Tasks in this manager's state, by current state.",
        &["state"],
    )?;
    let mut pending = 0;
    let mut by_state = std::collections::BTreeMap::<String, i64>::new();
    for t in st.tasks.values() {
        *by_state
            .entry(t.status.state.to_string().to_lowercase())
            .or_default() += 1;
        if t.status.state == TaskState::Pending && t.desired_state == TaskState::Running {
            pending += 1;
        }
    }
    for (state, n) in by_state {
        tasks.with_label_values(&[state.as_str()]).set(n);
    }
    s.value(
        "swarm_scheduler_pending_tasks",
        "Tasks meant to run that the scheduler has not placed yet.",
        pending,
    )?;
    let nodes = s.gauge("swarm_nodes", "Nodes in the swarm, by state.", &["state"])?;
    for state in [NodeState::Ready, NodeState::Down, NodeState::Unknown] {
        let n = st.nodes.values().filter(|n| n.state == state).count();
        nodes
            .with_label_values(&[format!("{state:?}").to_lowercase().as_str()])
            .set(n as i64);
    }
    s.value(
        "swarm_services",
        "Services in the swarm.",
        st.services.len() as i64,
    )?;
    Ok(())
}

fn dataplane(s: &Snapshot, d: &Daemon) -> prometheus::Result<()> {
    let Some(mesh) = d.mesh.get() else {
        return Ok(());
    };
    // A read of the pinned maps: no change to the data plane, and short.
    let dump = match mesh.lock().expect("mesh lock").dump() {
        Ok(dump) => dump,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the data plane's counters");
            return Ok(());
        }
    };
    let frontend = ["frontend"];
    let packets = s.counter(
        "swarm_dataplane_packets_total",
        "Packets the data plane load-balanced, by frontend (service and port).",
        &frontend,
    )?;
    let bytes = s.counter(
        "swarm_dataplane_bytes_total",
        "Bytes the data plane load-balanced, by frontend.",
        &frontend,
    )?;
    let flows = s.counter(
        "swarm_dataplane_new_flows_total",
        "Flows the data plane gave a backend, by frontend.",
        &frontend,
    )?;
    for svc in &dump.services {
        let name = if svc.name.is_empty() {
            svc.id.to_string()
        } else {
            svc.name.clone()
        };
        let l = [name.as_str()];
        packets.with_label_values(&l).inc_by(svc.packets);
        bytes.with_label_values(&l).inc_by(svc.bytes);
        flows.with_label_values(&l).inc_by(svc.new_flows);
    }
    let drops = s.counter(
        "swarm_dataplane_drops_total",
        "Packets the data plane dropped, by reason.",
        &["reason"],
    )?;
    for (reason, n) in &dump.drops {
        drops.with_label_values(&[reason.as_str()]).inc_by(*n);
    }
    Ok(())
}

/// The DNS server's counts, as a counter by outcome and a latency
/// histogram (built from its buckets: the histogram type cannot be set).
fn dns(snap: &swarm_dns::Snapshot) -> Vec<MetricFamily> {
    use prometheus::proto::{Bucket, Counter, LabelPair, Metric, MetricType};
    let label = |name: &str, value: &str| {
        let mut l = LabelPair::default();
        l.set_name(name.into());
        l.set_value(value.into());
        l
    };
    let family = |name: &str, help: &str, kind, metrics| {
        let mut f = MetricFamily::default();
        f.set_name(name.into());
        f.set_help(help.into());
        f.set_field_type(kind);
        f.set_metric(metrics);
        f
    };
    let queries = snap
        .answered
        .iter()
        .map(|(outcome, n)| {
            let mut c = Counter::default();
            c.set_value(*n as f64);
            let mut m = Metric::default();
            m.set_label(vec![label("outcome", outcome.name())]);
            m.set_counter(c);
            m
        })
        .collect();
    let mut h = prometheus::proto::Histogram::default();
    h.set_sample_count(snap.answered.iter().map(|(_, n)| n).sum());
    h.set_sample_sum(snap.sum_seconds);
    h.set_bucket(
        snap.buckets
            .iter()
            .map(|(bound, n)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(*n);
                b
            })
            .collect(),
    );
    let mut latency = Metric::default();
    latency.set_histogram(h);
    vec![
        family(
            "swarm_dns_queries_total",
            "DNS queries tasks asked this node, by how they were answered.",
            MetricType::COUNTER,
            queries,
        ),
        family(
            "swarm_dns_query_seconds",
            "Time to answer a DNS query.",
            MetricType::HISTOGRAM,
            vec![latency],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(families: &[MetricFamily]) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(families, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dns_counts_become_a_counter_and_a_histogram() {
        let snap = swarm_dns::Snapshot {
            answered: vec![
                (swarm_dns::Outcome::Cluster, 3),
                (swarm_dns::Outcome::Forwarded, 1),
                (swarm_dns::Outcome::Failed, 0),
            ],
            buckets: vec![(0.001, 3), (1.0, 4)],
            sum_seconds: 0.25,
        };
        let t = text(&dns(&snap));
        assert!(t.contains("# TYPE swarm_dns_queries_total counter"), "{t}");
        assert!(
            t.contains("swarm_dns_queries_total{outcome=\"cluster\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("swarm_dns_query_seconds_bucket{le=\"0.001\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("swarm_dns_query_seconds_bucket{le=\"+Inf\"} 4"),
            "{t}"
        );
        assert!(t.contains("swarm_dns_query_seconds_count 4"), "{t}");
    }

    #[test]
    fn events_are_registered_once_under_their_names() {
        let _open = EVENTS.session_opened();
        let names: Vec<String> = EVENTS
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "swarm_dispatcher_heartbeat_misses_total",
                "swarm_dispatcher_sessions",
                "swarm_raft_leader_changes_total",
                "swarm_raft_proposal_seconds",
            ]
        );
    }
}
