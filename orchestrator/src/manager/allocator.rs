//! The allocator: gives each service a VIP on each of its networks, and
//! each new task an address on each of its networks, then moves the task
//! NEW → PENDING for the scheduler (SwarmKit's task model). The state
//! machine keeps the address index and refuses any address that is taken,
//! so a stale plan can only fail, never double-book.

use super::Plan;
use crate::state::{Command, State, TaskAllocation};
use crate::types::{Attachment, EndpointMode, Millis, TaskState};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

pub fn plan(st: &State, now: Millis) -> Plan {
    let mut free = Free::default();
    let mut out = Plan::default();

    for svc in st.services.values() {
        let want: Vec<String> = match svc.spec.endpoint_mode {
            EndpointMode::Vip => st.spec_networks(&svc.spec),
            EndpointMode::Dnsrr => Vec::new(),
        };
        match refill(st, &mut free, &want, &svc.endpoint.vips) {
            Refill::Same => {}
            Refill::To(vips) => out.commands.push(Command::AllocateService {
                id: svc.id.clone(),
                vips,
            }),
            Refill::Exhausted => {
                tracing::warn!(service = %svc.spec.name, "no free address for a VIP")
            }
        }
    }

    // Each node gets an address on every network it serves, and gives up
    // those on networks it no longer serves.
    for node in st.nodes.values() {
        let want: Vec<String> = st.node_networks(&node.id).into_iter().collect();
        match refill(st, &mut free, &want, &node.attachments) {
            Refill::Same => {}
            Refill::To(attachments) => out.commands.push(Command::AllocateNode {
                id: node.id.clone(),
                attachments,
            }),
            Refill::Exhausted => {
                tracing::warn!(node = %node.hostname, "no free address for a node on one of its networks")
            }
        }
    }

    let mut allocations = Vec::new();
    for t in st.tasks.values() {
        let waiting = t.networks.is_none()
            && t.status.state <= TaskState::Pending
            && t.desired_state <= TaskState::Running;
        if !waiting {
            continue;
        }
        let mut addrs = Vec::new();
        let mut exhausted = None;
        for net in st.spec_networks(&t.spec) {
            match free.take(st, &net) {
                Some(a) => addrs.push(a),
                None => {
                    exhausted = Some(net);
                    break;
                }
            }
        }
        let result = match exhausted {
            None => Ok(addrs),
            Some(net) => {
                // What this pass took for the task goes back to the pool.
                free.give_back(&addrs);
                let n = &st.networks[&net];
                let why = format!(
                    "no free address on network {} ({} is full)",
                    n.spec.name, n.subnet
                );
                // Say it once, not on every pass.
                if t.status.state == TaskState::Pending && t.status.message == why {
                    continue;
                }
                Err(why)
            }
        };
        allocations.push(TaskAllocation {
            task_id: t.id.clone(),
            result,
            at: now,
        });
    }
    if !allocations.is_empty() {
        out.commands.push(Command::AllocateTasks(allocations));
    }
    out
}

enum Refill {
    /// It has exactly the networks it wants.
    Same,
    /// Its new set: what it keeps, plus fresh addresses.
    To(Vec<Attachment>),
    /// Some network it wants has no free address.
    Exhausted,
}

/// One address on each network in `want`, keeping those in `have` on
/// networks it stays on (VIPs and node addresses never move).
fn refill(st: &State, free: &mut Free, want: &[String], have: &[Attachment]) -> Refill {
    let same =
        want.len() == have.len() && want.iter().all(|n| have.iter().any(|a| &a.network_id == n));
    if same {
        return Refill::Same;
    }
    let next: Option<Vec<Attachment>> = want
        .iter()
        .map(|net| match have.iter().find(|a| &a.network_id == net) {
            Some(a) => Some(a.clone()),
            None => free.take(st, net),
        })
        .collect();
    next.map_or(Refill::Exhausted, Refill::To)
}

/// Free addresses per network, lowest first, minus what this pass took.
#[derive(Default)]
struct Free {
    taken: HashSet<(String, Ipv4Addr)>,
    /// Where the search for each network resumes.
    cursor: HashMap<String, u32>,
}

impl Free {
    fn take(&mut self, st: &State, net_id: &str) -> Option<Attachment> {
        let net = st.networks.get(net_id)?;
        let first = u32::from(net.subnet.network()) + 1;
        let last = u32::from(net.subnet.broadcast());
        let cursor = self.cursor.entry(net_id.to_string()).or_insert(first);
        while *cursor < last {
            let addr = Ipv4Addr::from(*cursor);
            *cursor += 1;
            let key = (net_id.to_string(), addr);
            if !st.addr_taken(net_id, addr) && !self.taken.contains(&key) {
                self.taken.insert(key);
                return Some(Attachment {
                    network_id: net_id.to_string(),
                    addr,
                });
            }
        }
        None
    }

    fn give_back(&mut self, addrs: &[Attachment]) {
        for a in addrs {
            self.taken.remove(&(a.network_id.clone(), a.addr));
            let c = self.cursor.entry(a.network_id.clone()).or_insert(0);
            *c = (*c).min(u32::from(a.addr));
        }
    }
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
