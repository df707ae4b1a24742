//! openraft's own storage test suite, run against our redb log store and
//! state machine (a fresh database file per case).

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::TypeConfig;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(redb::Database::create(dir.path().join("raft.redb")).expect("redb"));
        let log = LogStore::new(db.clone())?;
        let (sm, _state) = StateMachine::open(db)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn log_store_and_state_machine_pass_openraft_suite() {
    Suite::test_all(RedbBuilder).expect("openraft storage suite");
}
