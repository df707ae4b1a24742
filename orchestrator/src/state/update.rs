//! Rolling updates inside the state machine. A spec change that replaces
//! tasks starts an update here, whoever wrote it (`service update`, a stack
//! redeploy, a new secret version), keeping the old spec for a rollback.
//! The updater loop moves the tasks and records how it went; a start-first
//! replacement is the one case where a slot holds two live tasks.

use super::{bump, not_found, Kind, Rejection, Response, State};
use crate::types::{
    Millis, Service, ServiceSpec, Task, UpdateState, UpdateStatus, UPDATE_IN_PROGRESS,
};

/// If `old` → `svc.spec` replaces tasks, start an update of `svc`: the old
/// spec is what a rollback returns to.
pub(super) fn start_update(svc: &mut Service, old: &ServiceSpec, at: Millis) {
    if old.same_tasks(&svc.spec) {
        return;
    }
    svc.previous_spec = Some(Box::new(old.clone()));
    svc.update_status = Some(UpdateStatus {
        state: UpdateState::Updating,
        started_at: at,
        completed_at: None,
        message: UPDATE_IN_PROGRESS.into(),
        failed_task: None,
    });
}

impl State {
    fn service_at(&mut self, id: &str, expected_version: u64) -> Result<&mut Service, Response> {
        let Some(svc) = self.service_mut(id) else {
            return Err(not_found(Kind::Service, id));
        };
        if svc.meta.version != expected_version {
            return Err(Response::err(Rejection::Conflict {
                kind: Kind::Service,
                name: svc.spec.name.clone(),
                current: svc.meta.version,
                expected: expected_version,
            }));
        }
        Ok(svc)
    }

    /// Go back to the spec before the latest update (swapping the two, so
    /// a second rollback undoes the first), rolling the tasks with the
    /// rollback settings.
    pub(super) fn rollback_service(
        &mut self,
        id: &str,
        expected_version: u64,
        message: String,
        failed_task: Option<String>,
        at: Millis,
    ) -> Response {
        let svc = match self.service_at(id, expected_version) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let Some(previous) = svc.previous_spec.take() else {
            return Response::err(Rejection::Invalid(format!(
                "service {} has no previous spec to roll back to",
                svc.spec.name
            )));
        };
        let current = std::mem::replace(&mut svc.spec, *previous);
        svc.previous_spec = Some(Box::new(current));
        svc.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            started_at: at,
            completed_at: None,
            message,
            failed_task,
        });
        bump(&mut svc.meta, Some(at));
        Response::ok()
    }

    /// The updater's record of where an update stands.
    pub(super) fn set_update_status(
        &mut self,
        id: &str,
        expected_version: u64,
        status: UpdateStatus,
    ) -> Response {
        let svc = match self.service_at(id, expected_version) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let at = status.completed_at.unwrap_or(status.started_at);
        svc.update_status = Some(status);
        bump(&mut svc.meta, Some(at));
        Response::ok()
    }

    /// A start-first replacement: `task` joins the live task `replaces` in
    /// its slot (or on its node), which stays until `task` runs.
    pub(super) fn start_first(&mut self, replaces: &str, mut task: Task) -> Response {
        let Some(old) = self.tasks.get(replaces) else {
            return not_found(Kind::Task, replaces);
        };
        let same_place = old.service_id == task.service_id
            && old.slot == task.slot
            && (task.slot > 0 || old.node_id == task.node_id);
        if !old.is_live() || !same_place {
            return Response::err(Rejection::Invalid(format!(
                "task {} is not a live task in the slot of {}",
                old.name(),
                task.name()
            )));
        }
        let others = self.tasks_of(&task.service_id).any(|t| {
            t.id != old.id
                && t.service_id == task.service_id
                && t.is_live()
                && if task.slot > 0 {
                    t.slot == task.slot
                } else {
                    t.node_id == task.node_id
                }
        });
        if others || !self.services.contains_key(&task.service_id) {
            return Response::err(Rejection::TasksNotCreated(vec![format!(
                "{}: slot already has a replacement",
                task.name()
            )]));
        }
        task.meta.version = 1;
        self.put_task(task);
        Response::ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Command;
    use super::*;
    use crate::manager::testutil::{service, task};
    use crate::types::{Mode, TaskState};

    fn with_service() -> State {
        let mut st = State::default();
        st.apply(Command::CreateService(service("s", Mode::Replicated, 2)));
        st
    }

    fn update(st: &mut State, change: impl Fn(&mut ServiceSpec)) -> Response {
        let mut next = (*st.services["s"]).clone();
        change(&mut next.spec);
        next.meta.updated_at = 7;
        let v = next.meta.version;
        st.apply(Command::UpdateService {
            service: next,
            expected_version: v,
        })
    }

    #[test]
    fn only_a_change_that_replaces_tasks_starts_an_update() {
        let mut st = with_service();
        update(&mut st, |s| s.replicas = 5);
        assert!(
            st.services["s"].update_status.is_none(),
            "scaling replaces no task"
        );
        update(&mut st, |s| s.image = "img:2".into());
        let svc = &st.services["s"];
        let status = svc.update_status.as_ref().unwrap();
        assert_eq!(
            (status.state, status.started_at),
            (UpdateState::Updating, 7)
        );
        assert_eq!(svc.previous_spec.as_ref().unwrap().image, "img");
        // A writer cannot forge the updater's record.
        let mut forged = (*st.services["s"]).clone();
        forged.update_status = None;
        let v = forged.meta.version;
        st.apply(Command::UpdateService {
            service: forged,
            expected_version: v,
        });
        assert!(st.services["s"].update_status.is_some());
    }

    #[test]
    fn a_rollback_swaps_back_to_the_previous_spec() {
        let mut st = with_service();
        let v = st.services["s"].meta.version;
        let rollback = |st: &mut State, v| {
            st.apply(Command::RollbackService {
                id: "s".into(),
                expected_version: v,
                message: "manually requested rollback".into(),
                failed_task: None,
                at: 9,
            })
        };
        assert!(
            rollback(&mut st, v).error.is_some(),
            "nothing to roll back to"
        );
        update(&mut st, |s| s.image = "img:2".into());
        let v = st.services["s"].meta.version;
        assert!(rollback(&mut st, v).error.is_none());
        let svc = &st.services["s"];
        assert_eq!(svc.spec.image, "img");
        assert_eq!(svc.previous_spec.as_ref().unwrap().image, "img:2");
        assert_eq!(
            svc.update_status.as_ref().unwrap().state,
            UpdateState::RollbackStarted
        );
        assert!(
            rollback(&mut st, v).error.is_some(),
            "a stale read is refused"
        );
    }

    #[test]
    fn a_slot_holds_a_second_live_task_only_as_a_start_first_replacement() {
        let mut st = with_service();
        let svc = (*st.services["s"]).clone();
        st.apply(Command::CreateTasks(vec![task(
            "old",
            &svc,
            1,
            TaskState::Running,
        )]));
        let new = task("new", &svc, 1, TaskState::New);
        let r = st.apply(Command::CreateTasks(vec![new.clone()]));
        assert!(r.error.is_some(), "not as a plain task");
        let r = st.apply(Command::StartFirst {
            replaces: "old".into(),
            task: Box::new(new),
        });
        assert!(r.error.is_none(), "{r:?}");
        let third = task("third", &svc, 1, TaskState::New);
        let r = st.apply(Command::StartFirst {
            replaces: "old".into(),
            task: Box::new(third),
        });
        assert!(r.error.is_some(), "never a third");
        let other_slot = task("x", &svc, 2, TaskState::New);
        let r = st.apply(Command::StartFirst {
            replaces: "old".into(),
            task: Box::new(other_slot),
        });
        assert!(r.error.is_some(), "only in the slot it replaces");
    }
}
