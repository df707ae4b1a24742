//! Keeps raft's voters in line with the nodes' roles: the leader removes a
//! demoted (or removed) manager from the voters. Promotion goes the other
//! way round: the promoted node gets a manager certificate, starts its raft
//! server and asks to be added (`AddVoter`), since only it knows when it is
//! ready to receive the log.

use crate::store::Store;
use crate::types::NodeRole;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(store: Store, stop: CancellationToken) {
    let mut changes = store.subscribe();
    loop {
        if store.is_leader() {
            let st = changes.borrow_and_update().clone();
            let managers: BTreeSet<u64> = st
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager)
                .map(|n| n.raft_id)
                .collect();
            let voters: BTreeSet<u64> = store.voters().into_iter().collect();
            let keep: BTreeSet<u64> = voters.intersection(&managers).copied().collect();
            // Never shrink to nothing: the last voter stays whatever the state says.
            if keep != voters && !keep.is_empty() {
                tracing::info!(?voters, ?keep, "removing demoted managers from raft");
                if let Err(e) = store.raft().change_membership(keep, false).await {
                    tracing::warn!(error = %e, "cannot change raft membership");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
