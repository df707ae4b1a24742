//! The lost-writes check: a writer that creates and scales services
//! through every manager while leaders die, and a checker that every
//! acknowledged write is in the final state.

use crate::cluster::{try_create, MANAGERS, NOWHERE};
use crate::swarm_on;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// One write the test attempted, and whether the CLI acknowledged it.
pub struct Attempt {
    pub service: String,
    /// None: a create; Some(n): a scale to n.
    pub scale: Option<u64>,
    pub acked: bool,
}

/// Write until `stop`: a create of `RUN-k`, then three scales of it, each
/// through the next manager; returns every attempt and whether it was acked.
pub fn writer(stop: &AtomicBool, run: &str) -> Vec<Attempt> {
    let mut log = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let via = MANAGERS[(i % 3) as usize];
        let name = format!("{run}-{}", i / 4);
        let attempt = if i.is_multiple_of(4) {
            let ok =
                try_create(via, &name, &["--replicas", "1", "--constraint", NOWHERE]).code == 0;
            Attempt {
                service: name,
                scale: None,
                acked: ok,
            }
        } else {
            let n = i % 4 + 1;
            let target = format!("{name}={n}");
            let ok = swarm_on(via, &["service", "scale", "--detach", &target]).code == 0;
            Attempt {
                service: name,
                scale: Some(n),
                acked: ok,
            }
        };
        log.push(attempt);
        i += 1;
    }
    log
}

/// Every acknowledged write is in the final state: acknowledged creates
/// exist, and each service's replica count is its last acknowledged scale
/// (or a later attempt's, which may have been applied without an answer).
pub fn check_history(log: &[Attempt], replicas: &BTreeMap<String, u64>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_service: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in log {
        by_service.entry(&a.service).or_default().push(a);
    }
    for (svc, attempts) in by_service {
        let created = attempts.iter().any(|a| a.scale.is_none() && a.acked);
        let exists = replicas.get(svc);
        if created && exists.is_none() {
            problems.push(format!("{svc}: acknowledged create lost"));
            continue;
        }
        let Some(&have) = exists else { continue };
        let last_acked = attempts.iter().rposition(|a| a.acked);
        let Some(pos) = last_acked else { continue };
        let allowed: Vec<u64> = std::iter::once(attempts[pos].scale.unwrap_or(1))
            .chain(attempts[pos + 1..].iter().filter_map(|a| a.scale))
            .collect();
        if !allowed.contains(&have) {
            problems.push(format!(
                "{svc}: {have} replicas, but the history allows only {allowed:?}"
            ));
        }
    }
    problems
}
