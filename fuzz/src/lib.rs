//! The fuzz targets, by name. Each body takes the fuzzer's bytes and checks
//! a property that could be false, not only that nothing panics:
//! - the orchestrator's inputs (`swarm_orchestrator::fuzz`): raft commands,
//!   join requests, CSRs, tokens, `--publish`, `--constraint`, durations
//!   and compose files;
//! - DNS queries, sent to a real listener of the embedded server (`dns.rs`);
//! - packets, through the XDP and tc programs in the kernel (`packets.rs`).
//!
//! `libfuzzer/` runs them under libFuzzer (`scripts/fuzz.sh`), and
//! `tests/corpus.rs` replays the committed corpus (`corpus/<target>/`)
//! through them in every test run.

mod dns;
mod packets;

use swarm_orchestrator::fuzz as orch;

/// A target's body: the fuzzer's bytes in, a panic for a broken property.
pub type Body = fn(&[u8]);

/// Every target: its name (of its corpus directory and its cargo-fuzz
/// binary) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("state_apply", orch::state_apply),
    ("join_request", orch::join_request),
    ("csr", orch::csr),
    ("token", orch::token),
    ("publish", orch::publish),
    ("constraint", orch::constraint),
    ("duration", orch::duration),
    ("compose", orch::compose),
    ("dns_query", dns::query),
    ("xdp_packet", packets::xdp),
    ("tc_task_packet", packets::tc_task),
    ("tc_egress_packet", packets::tc_egress),
];

/// The body of the target `name`.
pub fn target(name: &str) -> Body {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target {name:?}"))
}
