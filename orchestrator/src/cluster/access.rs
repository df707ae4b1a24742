//! Who may call the node API. A caller is judged by the certificate it
//! showed at the handshake and by the cluster state as this manager has it
//! now: a certificate outlives what it says (a removed node's stays valid
//! for months, a demoted manager's names the old role), so the state has
//! the last word.
//!
//! Each service checks at its gate, on the call's headers, before tonic
//! reads the message; calls that need more than the service's gate check
//! again in their handler.

use crate::net::Peer;
use crate::pki::Identity;
use crate::state::State;
use crate::store::Store;
use crate::types::NodeRole;
use tonic::{Request, Status};

/// What a call needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// A member node of either role.
    Node,
    /// A manager, as the state has it.
    Manager,
    /// A manager certificate, whatever the state says: the Raft service's
    /// gate. A leader may be replicating its own removal or demotion, and
    /// must finish; raft's terms refuse appends from any other node that
    /// is no longer leader, and elections are judged as `Candidate`.
    ManagerCert,
    /// A raft candidate (Vote, PreVote): a manager certificate whose node
    /// is not removed nor known as a worker. A node this manager's state
    /// does not know yet is let through, since a lagging follower must
    /// still be able to elect a manager that joined after its state was
    /// written; the removed list covers the nodes that are gone.
    Candidate,
}

/// Whether `id` may make a call that needs `need`, by the state `st`.
pub fn check(st: &State, id: &Identity, need: Need) -> Result<(), Status> {
    let who = &id.node_id;
    if need == Need::ManagerCert {
        return Ok(());
    }
    if st.removed.contains(who) {
        return Err(Status::permission_denied(format!(
            "node {who} was removed from the swarm; its certificate is no longer accepted"
        )));
    }
    match (need, st.nodes.get(who)) {
        (Need::Candidate, None) => Ok(()),
        (_, None) => Err(Status::permission_denied(format!(
            "node {who} is not a member of this swarm"
        ))),
        (Need::Node, Some(_)) => Ok(()),
        (_, Some(n)) if n.role == NodeRole::Manager => Ok(()),
        (_, Some(_)) => Err(Status::permission_denied(format!(
            "node {who} is no longer a manager; its manager certificate is no longer accepted"
        ))),
    }
}

/// The caller of `req`, if its certificate and the state allow `need`.
pub fn caller<T>(req: &Request<T>, store: &Store, need: Need) -> Result<Identity, Status> {
    let id = Peer::require(req, need != Need::Node)?;
    check(&store.state(), &id, need)?;
    Ok(id)
}

/// A service's gate: the check above, on a call's headers and its
/// connection's peer, before any of its body is read (tonic interceptors
/// run first).
#[derive(Clone)]
pub struct Gate {
    store: Store,
    need: Need,
}

impl Gate {
    pub fn new(store: Store, need: Need) -> Gate {
        Gate { store, need }
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        caller(&req, &self.store, self.need)?;
        Ok(req)
    }
}

/// Nodes whose role changed, and nodes that were removed, between two
/// states.
fn rejudged(before: &State, after: &State) -> (Vec<String>, Vec<String>) {
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    for n in before.nodes.values() {
        match after.nodes.get(&n.id) {
            None => removed.push(n.id.clone()),
            Some(m) if m.role != n.role => changed.push(n.id.clone()),
            Some(_) => {}
        }
    }
    (changed, removed)
}

/// A removed node's connections are cut this long after the removal: the
/// call that removed it (its own `leave`, forwarded to the leader) must
/// still get its answer back. New calls are refused meanwhile, at the gate.
const REMOVED_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Cut the open connections of every node whose role changes or that is
/// removed, so that it is judged again when it reconnects.
pub async fn cut_on_change(
    store: Store,
    conns: crate::net::Connections,
    stop: tokio_util::sync::CancellationToken,
) {
    let cut = |conns: &crate::net::Connections, node: &str| {
        let n = conns.cut(node);
        if n > 0 {
            tracing::info!(%node, connections = n, "role changed or node removed: its connections are cut");
        }
    };
    let mut changes = store.subscribe();
    let mut before = changes.borrow_and_update().clone();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
        }
        let after = changes.borrow_and_update().clone();
        let (changed, removed) = rejudged(&before, &after);
        changed.iter().for_each(|node| cut(&conns, node));
        if !removed.is_empty() {
            let conns = conns.clone();
            tokio::spawn(async move {
                tokio::time::sleep(REMOVED_GRACE).await;
                removed.iter().for_each(|node| cut(&conns, node));
            });
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil;

    fn id(node: &str, role: NodeRole) -> Identity {
        Identity {
            node_id: node.into(),
            role,
            cluster_id: "c".into(),
            issuer: String::new(),
            not_before: 0,
            not_after: 0,
        }
    }

    #[test]
    fn the_state_not_the_certificate_decides() {
        let mut manager = testutil::node("m1");
        manager.role = NodeRole::Manager;
        let worker = testutil::node("w1");
        let mut st = testutil::state(&[manager, worker], &[], &[]);
        st.apply(crate::state::Command::RemoveNode { id: "w1".into() });

        assert!(check(&st, &id("m1", NodeRole::Manager), Need::Manager).is_ok());
        // A removed node, whatever its certificate says.
        let e = check(&st, &id("w1", NodeRole::Worker), Need::Node).unwrap_err();
        assert!(e.message().contains("w1 was removed"), "{e:?}");
        // Its ID cannot come back either.
        let back = st.apply(crate::state::Command::PutNode(testutil::node("w1")));
        assert!(back.error.is_some());
        // A demoted manager's old certificate.
        let mut demoted = st.clone();
        demoted.nodes.get_mut("m1").unwrap().role = NodeRole::Worker;
        let e = check(&demoted, &id("m1", NodeRole::Manager), Need::Manager).unwrap_err();
        assert!(e.message().contains("no longer a manager"), "{e:?}");
        assert!(check(&demoted, &id("m1", NodeRole::Manager), Need::Candidate).is_err());
        // Raft's gate lets a demoted leader finish replicating its demotion.
        assert!(check(&demoted, &id("m1", NodeRole::Manager), Need::ManagerCert).is_ok());
        assert!(check(&demoted, &id("m1", NodeRole::Manager), Need::Node).is_ok());
        // A node this state does not know yet: a raft candidate only.
        assert!(check(&st, &id("m9", NodeRole::Manager), Need::Candidate).is_ok());
        assert!(check(&st, &id("m9", NodeRole::Manager), Need::Manager).is_err());
        assert!(check(&st, &id("m9", NodeRole::Worker), Need::Node).is_err());
    }

    #[test]
    fn a_role_change_or_a_removal_has_the_node_judged_again() {
        let before = testutil::state(
            &[
                testutil::node("m1"),
                testutil::node("m2"),
                testutil::node("m3"),
            ],
            &[],
            &[],
        );
        let mut after = before.clone();
        after.nodes.get_mut("m2").unwrap().role = NodeRole::Worker;
        after.apply(crate::state::Command::RemoveNode { id: "m3".into() });
        after
            .nodes
            .get_mut("m1")
            .unwrap()
            .labels
            .insert("a".into(), "b".into());
        let (changed, removed) = rejudged(&before, &after);
        assert_eq!(
            (changed, removed),
            (vec!["m2".to_string()], vec!["m3".to_string()])
        );
    }
}
