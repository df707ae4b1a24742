//! CA rotation, as the state keeps it: a new root that issues from the
//! start, the old root still trusted, and the nodes that have shown a
//! certificate from the new root. When every node has, the new root
//! replaces the old one, in the same apply that saw the last node: the
//! state alone decides when a rotation ends, on every manager alike.

use super::{Rejection, Response, State};
use crate::types::CaRotation;

impl State {
    pub(super) fn start_ca_rotation(&mut self, rotation: CaRotation) -> Response {
        let nodes = self.nodes.len();
        let Some(c) = self.cluster.as_mut() else {
            return Response::err(Rejection::NotInSwarm);
        };
        if let Some(r) = &c.rotation {
            return Response::err(Rejection::Invalid(format!(
                "a CA rotation is already under way ({} of {nodes} nodes have certificates from the new root); it ends when every node has one, or when the nodes that do not are removed",
                r.renewed.len()
            )));
        }
        c.rotation = Some(CaRotation {
            renewed: Default::default(),
            ..rotation
        });
        Response::ok()
    }

    /// A node showed a certificate from the root `issuer`. A stale report
    /// (from before this rotation, or of a node since removed) changes
    /// nothing.
    pub(super) fn ca_renewed(&mut self, node: &str, issuer: &str) -> Response {
        let known = self.nodes.contains_key(node);
        let Some(r) = self.cluster.as_mut().and_then(|c| c.rotation.as_mut()) else {
            return Response::ok();
        };
        if known && r.name == issuer {
            r.renewed.insert(node.to_string());
        }
        self.settle_ca_rotation();
        Response::ok()
    }

    /// End the rotation if every node has a certificate from the new root.
    pub(super) fn settle_ca_rotation(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let done = c
            .rotation
            .as_ref()
            .is_some_and(|r| self.nodes.keys().all(|n| r.renewed.contains(n)));
        if done {
            let r = c.rotation.take().expect("checked above");
            c.ca_cert_pem = r.ca_cert_pem;
            c.ca_key = r.ca_key;
        }
    }

    /// How far the rotation under way is: (nodes renewed, nodes).
    pub fn ca_rotation_progress(&self) -> Option<(usize, usize)> {
        let waiting = self.ca_rotation_waits_for()?.len();
        Some((self.nodes.len() - waiting, self.nodes.len()))
    }

    /// The hostnames of the nodes the rotation under way waits for.
    pub fn ca_rotation_waits_for(&self) -> Option<Vec<&str>> {
        let r = self.cluster.as_ref()?.rotation.as_ref()?;
        Some(
            self.nodes
                .values()
                .filter(|n| !r.renewed.contains(&n.id))
                .map(|n| n.hostname.as_str())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{init_cluster, node};
    use crate::state::Command;
    use crate::types::Sealed;

    fn rotation() -> CaRotation {
        CaRotation {
            name: "swarm-ca new".into(),
            ca_cert_pem: "NEW".into(),
            ca_key: Sealed(b"new key".to_vec()),
            cross_signed_pem: "CROSS".into(),
            renewed: Default::default(),
        }
    }

    fn renewed(node: &str, issuer: &str) -> Command {
        Command::CaRenewed {
            node: node.into(),
            issuer: issuer.into(),
        }
    }

    #[test]
    fn a_rotation_ends_when_every_node_has_shown_a_certificate_from_the_new_root() {
        let mut st = State::default();
        st.apply(init_cluster());
        st.apply(Command::PutNode(node("n2")));
        assert_eq!(st.apply(Command::StartCaRotation(rotation())).error, None);
        let cluster = st.cluster.clone().unwrap();
        assert_eq!(cluster.issuing_ca().0, "NEW");
        assert_eq!(
            cluster.trust_pem(),
            "NEW\n\nCROSS\n",
            "new, old (empty here), cross"
        );
        assert_eq!(st.ca_rotation_progress(), Some((0, 2)));

        // The old root's certificates, an unknown node: nothing moves.
        st.apply(renewed("n1", "swarm-ca"));
        st.apply(renewed("ghost", "swarm-ca new"));
        assert_eq!(st.ca_rotation_progress(), Some((0, 2)));
        st.apply(renewed("n1", "swarm-ca new"));
        assert_eq!(st.ca_rotation_progress(), Some((1, 2)));
        assert_eq!(st.ca_rotation_waits_for(), Some(vec!["n2"]));
        let again = st.apply(Command::StartCaRotation(rotation()));
        assert!(
            matches!(&again.error, Some(Rejection::Invalid(m)) if m.starts_with("a CA rotation is already under way (1 of 2 nodes")),
            "{again:?}"
        );

        st.apply(renewed("n2", "swarm-ca new"));
        let cluster = st.cluster.clone().unwrap();
        assert_eq!(cluster.rotation, None, "the rotation ended");
        assert_eq!(cluster.ca_cert_pem, "NEW");
        assert_eq!(cluster.ca_key, Sealed(b"new key".to_vec()));
        assert_eq!(cluster.trust_pem(), "NEW\n");
    }

    #[test]
    fn removing_the_last_node_a_rotation_waits_for_ends_it() {
        let mut st = State::default();
        st.apply(init_cluster());
        st.apply(Command::PutNode(node("down")));
        st.apply(Command::StartCaRotation(rotation()));
        st.apply(renewed("n1", "swarm-ca new"));
        assert_eq!(st.ca_rotation_progress(), Some((1, 2)));
        st.apply(Command::RemoveNode { id: "down".into() });
        assert_eq!(st.ca_rotation_progress(), None);
        assert_eq!(st.cluster.unwrap().ca_cert_pem, "NEW");
    }
}
