//! A linearizability checker for registers, in the manner of Wing & Gong's
//! search with Lowe's memoisation (as Knossos and Porcupine do it).
//!
//! A history is a list of operations on independent registers, each with
//! the time it was invoked and the time it returned. Registers are checked
//! one by one (linearizability is compositional). An operation whose
//! outcome is unknown (the client got an error or a timeout) may take
//! effect at any time after it was invoked, or never: it returns "at the
//! end of time". A history is linearizable when its operations can be put
//! in one order that respects real time (an operation that returned before
//! another was invoked comes first) and in which every read sees the
//! latest write.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write(String),
    /// A read, and the value it saw ("" before any write).
    Read(String),
}

#[derive(Clone, Debug)]
pub struct Event {
    pub key: String,
    pub op: Op,
    pub invoked: Instant,
    /// None: the outcome is unknown (a write that failed may still apply).
    /// Reads with no answer carry no information and are left out.
    pub returned: Option<Instant>,
}

/// The registers whose histories are not linearizable, each with why.
pub fn check(history: &[Event]) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        by_key.entry(&e.key).or_default().push(e);
    }
    by_key
        .into_iter()
        .filter_map(|(key, ops)| {
            let ops = prune(ops);
            (!linearizable(&ops)).then(|| {
                format!(
                    "register {key}: {} operations admit no linearization",
                    ops.len()
                )
            })
        })
        .collect()
}

/// Leave out what cannot change the verdict, and would only widen the
/// search: reads with no answer, and writes with no answer whose value no
/// read saw (values are unique; such a write may as well never have
/// applied, which is always a choice the checker may make).
fn prune(ops: Vec<&Event>) -> Vec<&Event> {
    let seen: HashSet<&str> = ops
        .iter()
        .filter(|e| e.returned.is_some())
        .filter_map(|e| match &e.op {
            Op::Read(v) => Some(v.as_str()),
            Op::Write(_) => None,
        })
        .collect();
    ops.into_iter()
        .filter(|e| match (&e.op, e.returned) {
            (Op::Read(_), None) => false,
            (Op::Write(v), None) => seen.contains(v.as_str()),
            _ => true,
        })
        .collect()
}

/// No next entry.
const END: usize = usize::MAX;

/// The Wing-Gong-Lowe search over one register's operations.
fn linearizable(ops: &[&Event]) -> bool {
    if ops.is_empty() {
        return true;
    }
    // Every operation's call and return, in time order: calls before
    // returns at one instant (so the two stay concurrent), and unknown
    // returns last of all ("the end of time").
    let last = ops
        .iter()
        .flat_map(|e| [Some(e.invoked), e.returned])
        .flatten()
        .max()
        .expect("operations have times");
    let mut timed: Vec<(Instant, u8, usize, bool)> = Vec::new();
    for (i, e) in ops.iter().enumerate() {
        timed.push((e.invoked, 0, i, true));
        match e.returned {
            Some(t) => timed.push((t, 1, i, false)),
            None => timed.push((last, 2, i, false)),
        }
    }
    timed.sort_by_key(|&(t, kind, _, _)| (t, kind));
    // (operation, is its call)
    let entries: Vec<(usize, bool)> = timed.iter().map(|&(_, _, op, call)| (op, call)).collect();

    // A doubly linked list over the entries with a head sentinel at `n`;
    // linearizing an operation lifts its call and its return out of it.
    let n = entries.len();
    let head = n;
    let mut next: Vec<usize> = (0..=n)
        .map(|i| if i + 1 < n { i + 1 } else { END })
        .collect();
    next[head] = 0;
    let mut prev: Vec<usize> = (0..=n).map(|i| if i == 0 { head } else { i - 1 }).collect();
    prev[head] = END;
    let mut return_of = vec![0; ops.len()];
    for (i, &(op, call)) in entries.iter().enumerate() {
        if !call {
            return_of[op] = i;
        }
    }
    fn lift(next: &mut [usize], prev: &mut [usize], i: usize) {
        next[prev[i]] = next[i];
        if next[i] != END {
            prev[next[i]] = prev[i];
        }
    }
    fn unlift(next: &mut [usize], prev: &mut [usize], i: usize) {
        next[prev[i]] = i;
        if next[i] != END {
            prev[next[i]] = i;
        }
    }

    let mut state = String::new();
    let mut done = vec![false; ops.len()];
    let mut tried: HashSet<(Vec<bool>, String)> = HashSet::new();
    // The calls linearized so far, each with the state before it.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut cur = next[head];
    while next[head] != END {
        let (op, call) = entries[cur];
        if call {
            let (fits, after) = match &ops[op].op {
                Op::Write(v) => (true, v.clone()),
                Op::Read(v) => (*v == state, state.clone()),
            };
            if fits {
                done[op] = true;
                if tried.insert((done.clone(), after.clone())) {
                    stack.push((cur, std::mem::replace(&mut state, after)));
                    lift(&mut next, &mut prev, cur);
                    lift(&mut next, &mut prev, return_of[op]);
                    cur = next[head];
                    continue;
                }
                done[op] = false;
            }
            cur = next[cur];
        } else {
            // An operation returned before any order took it: undo the
            // last choice and try the next one after it.
            let Some((call, before)) = stack.pop() else {
                return false;
            };
            let op = entries[call].0;
            done[op] = false;
            state = before;
            unlift(&mut next, &mut prev, return_of[op]);
            unlift(&mut next, &mut prev, call);
            cur = next[call];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An event on register "k" from `a` to `b` ms (None: unknown).
    fn ev(op: Op, a: u64, b: Option<u64>) -> Event {
        let t0 = *T0;
        Event {
            key: "k".into(),
            op,
            invoked: t0 + Duration::from_millis(a),
            returned: b.map(|b| t0 + Duration::from_millis(b)),
        }
    }
    static T0: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    fn w(v: &str) -> Op {
        Op::Write(v.into())
    }
    fn r(v: &str) -> Op {
        Op::Read(v.into())
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            ev(r(""), 0, Some(1)),
            ev(w("1"), 2, Some(3)),
            ev(r("1"), 4, Some(5)),
            ev(w("2"), 6, Some(7)),
            ev(r("2"), 8, Some(9)),
        ];
        assert_eq!(check(&h), Vec::<String>::new());
    }

    #[test]
    fn a_stale_read_is_caught() {
        // The write of 2 returned before the read began, which saw 1.
        let h = [
            ev(w("1"), 0, Some(1)),
            ev(w("2"), 2, Some(3)),
            ev(r("1"), 4, Some(5)),
        ];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn a_lost_write_is_caught() {
        // An acknowledged write that no later read sees.
        let h = [ev(w("1"), 0, Some(1)), ev(r(""), 2, Some(3))];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        // The read overlaps the write: it may see the old value or the new.
        for seen in ["", "1"] {
            let h = [ev(w("1"), 0, Some(10)), ev(r(seen), 5, Some(6))];
            assert_eq!(check(&h), Vec::<String>::new(), "read saw {seen:?}");
        }
        // But two reads in a row cannot see new, then old.
        let h = [
            ev(w("1"), 0, Some(10)),
            ev(r("1"), 1, Some(2)),
            ev(r(""), 3, Some(4)),
        ];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn a_write_with_no_answer_may_apply_late_or_never() {
        let late = [
            ev(w("1"), 0, None),
            ev(r(""), 1, Some(2)),
            ev(r("1"), 3, Some(4)),
        ];
        assert_eq!(check(&late), Vec::<String>::new());
        let never = [ev(w("1"), 0, None), ev(r(""), 5, Some(6))];
        assert_eq!(check(&never), Vec::<String>::new());
        // Once seen, it cannot be unseen.
        let flicker = [
            ev(w("1"), 0, None),
            ev(r("1"), 1, Some(2)),
            ev(r(""), 3, Some(4)),
        ];
        assert_eq!(check(&flicker).len(), 1);
    }

    #[test]
    fn registers_are_checked_apart() {
        let mut other = ev(w("1"), 0, Some(1));
        other.key = "j".into();
        let h = [other, ev(r(""), 2, Some(3))];
        assert_eq!(check(&h), Vec::<String>::new());
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // Three clients, 3,000 operations: each takes effect at a point
        // inside its own interval, so the history is linearizable, and
        // operations of different clients overlap.
        let t0 = *T0;
        let mut h = Vec::new();
        let mut value = String::new();
        let mut seed = 7u64;
        let mut rand = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for i in 0..3000u64 {
            let point = i * 10;
            let op = if rand() % 2 == 0 {
                value = format!("v{i}");
                Op::Write(value.clone())
            } else {
                Op::Read(value.clone())
            };
            let (before, after) = (rand() % 25, rand() % 25);
            let unknown = matches!(op, Op::Write(_)) && rand() % 20 == 0;
            h.push(Event {
                key: "k".into(),
                op,
                invoked: t0 + Duration::from_micros(point.saturating_sub(before) * 100),
                returned: (!unknown).then(|| t0 + Duration::from_micros((point + after) * 100)),
            });
        }
        let started = Instant::now();
        assert_eq!(check(&h), Vec::<String>::new());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
