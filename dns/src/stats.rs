//! What the server answered and how long each answer took, counted for the
//! daemon's metrics (which turns them into Prometheus families: this crate
//! does not depend on a metrics library).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds, in seconds, of the latency histogram's buckets: a cluster
/// name is answered in tens of microseconds, a forwarded one in
/// milliseconds, a failed upstream after its timeout.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.05, 0.25, 1.0,
];

/// How a query was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// From the cluster's names.
    Cluster,
    /// By an upstream resolver.
    Forwarded,
    /// With an error: a malformed query, or no upstream answered.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Cluster, Outcome::Forwarded, Outcome::Failed];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Cluster => "cluster",
            Outcome::Forwarded => "forwarded",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Default)]
pub struct Stats {
    answered: [AtomicU64; 3],
    /// Queries at or under each bound (not cumulative here).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    sum_ns: AtomicU64,
}

/// A copy of the counts at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub answered: Vec<(Outcome, u64)>,
    /// (upper bound in seconds, queries at or under it), cumulative as
    /// Prometheus' histograms are; the total count is the sum of `answered`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
}

impl Stats {
    pub(crate) fn record(&self, outcome: Outcome, took: Duration) {
        self.answered[outcome as usize].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                total += n.load(Relaxed);
                (*b, total)
            })
            .collect();
        Snapshot {
            answered: Outcome::ALL
                .iter()
                .map(|o| (*o, self.answered[*o as usize].load(Relaxed)))
                .collect(),
            buckets,
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_slow_fall_only_in_the_sum() {
        let s = Stats::default();
        s.record(Outcome::Cluster, Duration::from_micros(30));
        s.record(Outcome::Cluster, Duration::from_micros(700));
        s.record(Outcome::Failed, Duration::from_secs(2));
        let snap = s.snapshot();
        assert_eq!(
            snap.answered,
            [
                (Outcome::Cluster, 2),
                (Outcome::Forwarded, 0),
                (Outcome::Failed, 1)
            ]
        );
        assert_eq!(snap.buckets[0], (0.000_05, 1));
        assert_eq!(snap.buckets[4], (0.001, 2));
        assert_eq!(snap.buckets.last(), Some(&(1.0, 2)));
        assert!((snap.sum_seconds - 2.000_73).abs() < 1e-9, "{snap:?}");
    }
}
