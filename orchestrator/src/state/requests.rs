//! Writes applied at most once. Every write carries a request ID (the
//! store makes one per `write`, kept across its retries), and the state
//! remembers what the last `MAX_REMEMBERED` requests answered: a retry of
//! a write whose outcome its caller could not learn (a forwarded Propose
//! whose answer was lost, a leader that changed under it) gets the first
//! answer again and changes nothing. Replicated and snapshotted with the
//! rest of the state, so every manager drops the same duplicates.

use super::{Command, Response, State};
use serde::{Deserialize, Serialize};

/// How many request IDs are remembered. A retry comes within a write's
/// deadline (seconds), long before this many other writes have passed.
pub const MAX_REMEMBERED: usize = 10_000;

/// One remembered request: when it came (a sequence number) and its answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    pub seq: u64,
    pub response: Response,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    pub seen: im::OrdMap<String, Remembered>,
    /// Sequence number → request ID, oldest first. Derived from `seen`
    /// (`rebuild`), so it is not stored.
    #[serde(skip)]
    order: im::OrdMap<u64, String>,
}

impl Requests {
    /// Rebuild the derived order after loading.
    pub fn rebuild(&mut self) {
        self.order = self
            .seen
            .iter()
            .map(|(id, r)| (r.seq, id.clone()))
            .collect();
    }

    /// The request ID the next new request pushes out, if the memory is full.
    pub fn evicted_next(&self) -> Option<String> {
        (self.seen.len() >= MAX_REMEMBERED)
            .then(|| self.order.values().next().cloned())
            .flatten()
    }

    fn remember(&mut self, id: String, response: Response) {
        if let Some(old) = self.evicted_next().and_then(|id| self.seen.remove(&id)) {
            self.order.remove(&old.seq);
        }
        let seq = self.order.keys().next_back().map_or(0, |s| s + 1);
        self.order.insert(seq, id.clone());
        self.seen.insert(id, Remembered { seq, response });
    }
}

impl State {
    /// Apply `cmd` for request `id`, once: a request seen before answers
    /// as it did then.
    pub(super) fn apply_once(&mut self, id: String, cmd: Command) -> Response {
        if let Some(r) = self.requests.seen.get(&id) {
            return r.response.clone();
        }
        let response = self.apply(cmd);
        self.requests.remember(id, response.clone());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil;
    use crate::types::Mode;

    fn once(id: &str, cmd: Command) -> Command {
        Command::Request {
            id: id.into(),
            cmd: Box::new(cmd),
        }
    }

    #[test]
    fn a_retried_write_applies_once_and_answers_as_the_first_did() {
        let mut st = testutil::state(&[testutil::node("n1")], &[], &[]);
        let svc = testutil::service("s1", Mode::Replicated, 1);
        let create = once("r1", Command::CreateService(svc.clone()));
        assert_eq!(st.apply(create.clone()), Response::ok());
        // The retry: no "name in use", and still one service.
        assert_eq!(st.apply(create), Response::ok());
        assert_eq!(st.services.len(), 1);
        // A new request for the same change is a new write, refused.
        let again = st.apply(once("r2", Command::CreateService(svc)));
        assert!(again.error.is_some());
        // A refusal is remembered as a refusal.
        let r2 = st.requests.seen["r2"].response.clone();
        assert_eq!(r2, again);
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_oldest() {
        let mut st = State::default();
        for i in 0..MAX_REMEMBERED + 5 {
            st.apply(once(&format!("r{i}"), Command::Batch(Vec::new())));
        }
        assert_eq!(st.requests.seen.len(), MAX_REMEMBERED);
        assert!(!st.requests.seen.contains_key("r0"));
        assert!(st
            .requests
            .seen
            .contains_key(&format!("r{}", MAX_REMEMBERED + 4)));
        // Rebuilt from what is stored, the order is the same.
        let mut loaded = st.requests.clone();
        loaded.rebuild();
        assert_eq!(loaded.evicted_next(), st.requests.evicted_next());
    }
}
