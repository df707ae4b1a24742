//! The stack handlers of the control API: the daemon converts the CLI's
//! compose document, plans against the state, and writes the plan as one
//! atomic command.

use super::pb;
use crate::keyring::Keyring;
use crate::stack::{self, plan};
use crate::state::Command;
use crate::store::Store;
use crate::types::{new_id, now_ms, SecretKind};
use std::time::Duration;
use tonic::Status;

/// How long `stack rm` waits for the stack's tasks to let go of its
/// networks before it gives up on removing them.
const NETWORK_WAIT: Duration = Duration::from_secs(60);

fn objects(list: &[(SecretKind, String)]) -> Vec<pb::StackObject> {
    list.iter()
        .map(|(kind, name)| pb::StackObject {
            kind: super::secret::pb_kind(*kind),
            name: name.clone(),
        })
        .collect()
}

fn response(p: &plan::Plan, warnings: Vec<String>) -> pb::DeployStackResponse {
    pb::DeployStackResponse {
        data_created: objects(&p.data_created),
        data_updated: objects(&p.data_updated),
        data_removed: objects(&p.data_removed),
        warnings,
        networks_created: p.networks_created.clone(),
        services_created: p.created.clone(),
        services_updated: p.updated.clone(),
        services_removed: p.removed.clone(),
        networks_removed: Vec::new(),
    }
}

pub async fn deploy(
    store: &Store,
    keyring: &Keyring,
    st: &crate::state::State,
    req: pb::DeployStackRequest,
) -> Result<pb::DeployStackResponse, Status> {
    let doc: serde_json::Value = serde_json::from_str(&req.compose_json)
        .map_err(|e| Status::invalid_argument(format!("invalid compose document: {e}")))?;
    let spec = stack::convert(&req.stack, &doc).map_err(Status::invalid_argument)?;
    let files = req.files.into_iter().collect();
    let inputs = plan::Inputs {
        files: &files,
        keyring,
    };
    let p = plan::plan(st, &spec, &inputs, req.prune, now_ms(), &mut new_id)?;
    if !p.commands.is_empty() {
        store
            .write(Command::Atomic(p.commands.clone()))
            .await
            .map_err(Status::from)?;
    }
    Ok(response(&p, spec.warnings))
}

/// Services go at once; a network goes when no task holds an address on
/// it any more, which the agents report as the tasks stop.
pub async fn remove(store: &Store, name: &str) -> Result<pb::DeployStackResponse, Status> {
    let p = plan::remove(&store.state(), name)?;
    if !p.commands.is_empty() {
        store
            .write(Command::Atomic(p.commands.clone()))
            .await
            .map_err(Status::from)?;
    }
    let mut out = response(&p, Vec::new());
    let mut changes = store.subscribe();
    let deadline = tokio::time::Instant::now() + NETWORK_WAIT;
    loop {
        let st = changes.borrow_and_update().clone();
        let left: Vec<_> = plan::networks_of(&st, name).cloned().collect();
        if left.is_empty() {
            return Ok(out);
        }
        for n in left.iter().filter(|n| !st.has_task_addresses(&n.id)) {
            store
                .write(Command::RemoveNetwork { id: n.id.clone() })
                .await
                .map_err(Status::from)?;
            out.networks_removed.push(n.spec.name.clone());
        }
        // Wait for the next change of the state (a task stopping).
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Status::unavailable("the store is shutting down")),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "stack {name}: services removed, but tasks still hold addresses on its networks after {}s; run 'swarm stack rm {name}' again once they have stopped",
                    NETWORK_WAIT.as_secs()
                )))
            }
        }
    }
}
