//! What a deploy changes: the stack's networks the cluster lacks, its new
//! services, the ones whose spec changed, and (with prune) the ones no
//! longer in the file. Every command is tried on a copy of the state as it
//! is planned, so a refusal (a port taken, a name in use) is known before
//! anything is written, and the whole plan is written as one atomic
//! command: a deploy lands whole or not at all.

use super::{StackData, StackSpec};
use crate::api::{resolve, secret};
use crate::keyring::{binding, Keyring};
use crate::state::{Command, State};
use crate::types::{Millis, Network, Secret, SecretKind, Service, ServiceSpec};
use std::collections::BTreeMap;
use tonic::Status;

/// The status metadata key naming the compose key an error is about
/// (`secrets.db_password`), for the CLI to point at its place in the file.
pub const COMPOSE_KEY: &str = "swarm-compose-key";

/// `status`, marked as being about compose key `key`.
fn about(mut status: Status, key: &str) -> Status {
    if let Ok(v) = key.parse() {
        status.metadata_mut().insert(COMPOSE_KEY, v);
    }
    status
}

/// What the stack brings besides its file: the bytes of the files its
/// secrets and configs name (read by the CLI), and the key to seal them.
pub struct Inputs<'a> {
    pub files: &'a BTreeMap<String, Vec<u8>>,
    pub keyring: &'a Keyring,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub commands: Vec<Command>,
    pub networks_created: Vec<String>,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Secrets and configs created, given a new version, and removed.
    pub data_created: Vec<(SecretKind, String)>,
    pub data_updated: Vec<(SecretKind, String)>,
    pub data_removed: Vec<(SecretKind, String)>,
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
        .map(|s| &**s)
        .filter(move |s| super::stack_of(&s.spec.labels) == Some(stack))
}

pub fn data_of<'a>(st: &'a State, stack: &'a str) -> impl Iterator<Item = &'a Secret> + 'a {
    st.secrets
        .values()
        .filter(move |s| super::stack_of(&s.labels) == Some(stack))
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

/// The command that gives the cluster one of the stack's own secrets or
/// configs: a new one, or a new version when the file's bytes changed
/// (which rolls the services using it). `None` when it is up to date.
fn data_command(
    next: &State,
    d: &StackData,
    inputs: &Inputs,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Option<Command>, Status> {
    let (kind, key) = (d.kind, format!("{}s.{}", d.kind, d.key));
    let cur = next
        .secrets
        .values()
        .find(|s| s.kind == kind && s.name == d.name);
    if d.external {
        return match cur {
            Some(_) => Ok(None),
            None => Err(about(
                Status::not_found(format!(
                    "{kind} {:?} is declared as external, but could not be found: create it first (swarm {kind} create {} FILE)",
                    d.name, d.name
                )),
                &key,
            )),
        };
    }
    let path = d.file.as_deref().unwrap_or_default();
    let bytes = inputs.files.get(path).ok_or_else(|| {
        about(
            Status::invalid_argument(format!("{key}: the contents of {path} were not sent")),
            &key,
        )
    })?;
    let keyring = inputs.keyring;
    let Some(cur) = cur else {
        let s = secret::new_secret(keyring, kind, new_id(), &d.name, d.labels.clone(), bytes)
            .map_err(|e| about(e, &key))?;
        return Ok(Some(Command::CreateSecret(s)));
    };
    let latest = cur
        .latest()
        .ok_or_else(|| Status::internal("a secret without versions"))?;
    let same = match kind {
        SecretKind::Config => latest.data == *bytes,
        SecretKind::Secret => {
            keyring
                .open(&binding(&cur.id, latest.version), &latest.data)
                .map_err(|e| Status::unavailable(e.to_string()))?
                == *bytes
        }
    };
    if same {
        return Ok(None);
    }
    let version = secret::stored(keyring, kind, &cur.id, latest.version + 1, bytes)?;
    Ok(Some(Command::UpdateSecret {
        id: cur.id.clone(),
        version,
    }))
}

pub fn plan(
    st: &State,
    spec: &StackSpec,
    inputs: &Inputs,
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
    for d in &spec.data {
        let Some(cmd) = data_command(&next, d, inputs, new_id)? else {
            continue;
        };
        match cmd {
            Command::CreateSecret(_) => plan.data_created.push((d.kind, d.name.clone())),
            _ => plan.data_updated.push((d.kind, d.name.clone())),
        }
        try_apply(&mut next, &cmd)?;
        plan.commands.push(cmd);
    }
    for svc in &spec.services {
        let mut want = svc.clone();
        // Read from the planned state: a new secret version has moved the
        // services that use it already.
        let cur = next.find_service(&want.name).cloned();
        let cur = cur.as_ref();
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
                let mut next = Service {
                    spec: want,
                    ..cur.clone()
                };
                next.meta.updated_at = now;
                Command::UpdateService {
                    service: next,
                    expected_version: cur.meta.version,
                }
            }
            None => {
                plan.created.push(want.name.clone());
                Command::CreateService(Service::new(new_id(), want, now))
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
    // After the services that use them; external ones have no label.
    for d in data_of(st, stack) {
        plan.data_removed.push((d.kind, d.name.clone()));
        plan.commands
            .push(Command::RemoveSecret { id: d.id.clone() });
    }
    if plan.commands.is_empty() && networks_of(st, stack).next().is_none() {
        return Err(Status::not_found(format!(
            "nothing found in stack: {stack}"
        )));
    }
    Ok(plan)
}
