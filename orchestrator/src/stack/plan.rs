//! What a deploy changes: the stack's networks the cluster lacks, its new
//! services, the ones whose spec changed, and (with prune) the ones no
//! longer in the file. Every command is tried on a copy of the state as it
//! is planned, so a refusal (a port taken, a name in use) is known before
//! anything is written, and the whole plan is written as one atomic
//! command: a deploy lands whole or not at all.

use super::StackSpec;
use crate::api::resolve;
use crate::state::{Command, State};
use crate::types::{Meta, Millis, Network, Service, ServiceSpec};
use tonic::Status;

#[derive(Debug, Default)]
pub struct Plan {
    pub commands: Vec<Command>,
    pub networks_created: Vec<String>,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

fn try_apply(next: &mut State, cmd: &Command) -> Result<(), Status> {
    match next.apply(cmd.clone()).error {
        Some(r) => Err(Status::from(crate::store::StoreError::Rejected(r))),
        None => Ok(()),
    }
}

/// A stack's services in the state, by name.
pub fn services_of<'a>(st: &'a State, stack: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
    st.services
        .values()
        .filter(move |s| super::stack_of(&s.spec.labels) == Some(stack))
}

pub fn networks_of<'a>(st: &'a State, stack: &'a str) -> impl Iterator<Item = &'a Network> + 'a {
    st.networks
        .values()
        .filter(move |n| super::stack_of(&n.spec.labels) == Some(stack))
}

/// A redeploy keeps the published ports the cluster chose for ports the
/// file leaves unpublished, so that an unchanged file changes nothing.
fn keep_chosen_ports(spec: &mut ServiceSpec, cur: &ServiceSpec) {
    for p in spec.ports.iter_mut().filter(|p| p.published == 0) {
        if let Some(q) = cur
            .ports
            .iter()
            .find(|q| q.target == p.target && q.protocol == p.protocol && q.mode == p.mode)
        {
            p.published = q.published;
        }
    }
}

pub fn plan(
    st: &State,
    spec: &StackSpec,
    prune: bool,
    now: Millis,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Plan, Status> {
    let mut plan = Plan::default();
    for name in &spec.external_networks {
        if st.find_network(name).is_none() {
            return Err(Status::not_found(format!(
                "network {name:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed"
            )));
        }
    }
    let mut next = st.clone();
    for net in &spec.networks {
        if st.find_network(&net.name).is_some() {
            continue;
        }
        let mut net = net.clone();
        resolve::network_spec(&mut net)?;
        let cmd = Command::CreateNetwork {
            id: new_id(),
            spec: net.clone(),
            at: now,
        };
        try_apply(&mut next, &cmd)?;
        plan.commands.push(cmd);
        plan.networks_created.push(net.name);
    }
    for svc in &spec.services {
        let mut want = svc.clone();
        let cur = st.find_service(&want.name);
        if let Some(cur) = cur {
            if super::stack_of(&cur.spec.labels) != Some(spec.name.as_str()) {
                return Err(Status::already_exists(format!(
                    "service {} already exists and is not part of stack {}",
                    want.name, spec.name
                )));
            }
            keep_chosen_ports(&mut want, &cur.spec);
        }
        resolve::service_spec(&next, &mut want)?;
        let cmd = match cur {
            Some(cur) if cur.spec == want => continue,
            Some(cur) => {
                plan.updated.push(want.name.clone());
                Command::UpdateService {
                    service: Service {
                        spec: want,
                        ..cur.clone()
                    },
                    expected_version: cur.meta.version,
                }
            }
            None => {
                plan.created.push(want.name.clone());
                Command::CreateService(Service {
                    id: new_id(),
                    spec: want,
                    endpoint: Default::default(),
                    meta: Meta::new(now),
                })
            }
        };
        try_apply(&mut next, &cmd)?;
        plan.commands.push(cmd);
    }
    if prune {
        for gone in services_of(st, &spec.name) {
            if !spec.services.iter().any(|s| s.name == gone.spec.name) {
                plan.removed.push(gone.spec.name.clone());
                plan.commands.push(Command::RemoveService {
                    id: gone.id.clone(),
                });
            }
        }
    }
    Ok(plan)
}

/// Removing a stack: its services. Its networks go later, each once no
/// task holds an address on it (`api/stack.rs`).
pub fn remove(st: &State, stack: &str) -> Result<Plan, Status> {
    let mut plan = Plan::default();
    for s in services_of(st, stack) {
        plan.removed.push(s.spec.name.clone());
        plan.commands
            .push(Command::RemoveService { id: s.id.clone() });
    }
    if plan.commands.is_empty() && networks_of(st, stack).next().is_none() {
        return Err(Status::not_found(format!(
            "nothing found in stack: {stack}"
        )));
    }
    Ok(plan)
}
