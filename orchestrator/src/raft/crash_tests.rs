//! A snapshot install cut short by a crash. A child process (this test
//! binary, re-run on this one test) installs a snapshot with
//! `SWARM_CRASH_AT=snapshot-install` and aborts before the transaction
//! commits; the store it leaves holds the old state, whole, and a second
//! install works.

use super::state_machine::StateMachine;
use super::TypeConfig;
use crate::state::Command;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::path::Path;
use std::sync::Arc;

/// Tells the child which store to install into.
const CHILD_DIR: &str = "SWARM_TEST_SNAPSHOT_INTO";
const THIS_TEST: &str =
    "raft::crash_tests::a_crash_during_snapshot_install_leaves_the_old_state_whole";

/// A state machine on `dir` with the nodes `nodes` applied.
async fn with_nodes(dir: &Path, nodes: &[&str]) -> StateMachine {
    let db = Arc::new(redb::Database::create(dir.join("raft.redb")).unwrap());
    let (mut sm, _) = StateMachine::open(db).unwrap();
    let entries = nodes.iter().enumerate().map(|(i, n)| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
        payload: EntryPayload::Normal(Command::PutNode(crate::manager::testutil::node(n))),
    });
    sm.apply(entries.collect::<Vec<_>>()).await.unwrap();
    sm
}

fn open(dir: &Path) -> (StateMachine, Vec<String>) {
    let db = Arc::new(redb::Database::create(dir.join("raft.redb")).unwrap());
    let (sm, state) = StateMachine::open(db).unwrap();
    let nodes = state.borrow().nodes.keys().cloned().collect();
    (sm, nodes)
}

/// Install a snapshot of a state with the nodes b1 and b2 into `sm`.
async fn install_b(sm: &mut StateMachine) {
    let other = tempfile::tempdir().unwrap();
    let mut source = with_nodes(other.path(), &["b1", "b2", "b3"]).await;
    let snap = source.get_current_snapshot().await.unwrap().unwrap();
    sm.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_crash_during_snapshot_install_leaves_the_old_state_whole() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let (mut sm, _) = open(Path::new(&dir));
        install_b(&mut sm).await;
        panic!("the install should have aborted at its crash point");
    }
    let dir = tempfile::tempdir().unwrap();
    drop(with_nodes(dir.path(), &["a1", "a2"]).await);

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", THIS_TEST, "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .env("SWARM_CRASH_AT", "snapshot-install")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");

    let (mut sm, nodes) = open(dir.path());
    assert_eq!(nodes, ["a1", "a2"], "the old state, whole");
    install_b(&mut sm).await;
    drop(sm);
    assert_eq!(
        open(dir.path()).1,
        ["b1", "b2", "b3"],
        "a second install works"
    );
}
