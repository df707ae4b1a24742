//! Tasks by service and by node, so the loops and the dispatcher that ask
//! "the tasks of service S" or "the tasks on node N" do not scan every task
//! (at 100,000 tasks a scan per question is what made the cluster slow).
//!
//! Derived from the tasks, like `ipam`: kept in step where `apply` adds,
//! removes or moves a task (`create_tasks`, `DeleteTasks`, `assign`), and
//! rebuilt from the tasks on load (`reindex`). A task's service never
//! changes; its node changes only when it is assigned.

use crate::types::Task;

type Ids = im::OrdMap<String, im::OrdSet<String>>;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskIndex {
    by_service: Ids,
    by_node: Ids,
}

fn add(ids: &mut Ids, key: &str, id: &str) {
    ids.entry(key.to_string())
        .or_default()
        .insert(id.to_string());
}

fn drop_id(ids: &mut Ids, key: &str, id: &str) {
    if let Some(set) = ids.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            ids.remove(key);
        }
    }
}

impl TaskIndex {
    pub fn of<'a>(tasks: impl Iterator<Item = &'a Task>) -> TaskIndex {
        let mut index = TaskIndex::default();
        for t in tasks {
            index.insert(t);
        }
        index
    }

    pub fn insert(&mut self, t: &Task) {
        add(&mut self.by_service, &t.service_id, &t.id);
        if let Some(node) = &t.node_id {
            add(&mut self.by_node, node, &t.id);
        }
    }

    pub fn remove(&mut self, t: &Task) {
        drop_id(&mut self.by_service, &t.service_id, &t.id);
        if let Some(node) = &t.node_id {
            drop_id(&mut self.by_node, node, &t.id);
        }
    }

    /// Task `id` moved from node `from` to node `to`.
    pub fn moved(&mut self, id: &str, from: Option<&str>, to: Option<&str>) {
        if from == to {
            return;
        }
        if let Some(from) = from {
            drop_id(&mut self.by_node, from, id);
        }
        if let Some(to) = to {
            add(&mut self.by_node, to, id);
        }
    }

    /// IDs of the tasks of service `id`, in ID order.
    pub fn of_service<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.by_service.get(id).into_iter().flatten()
    }

    /// IDs of the tasks on node `id` (assigned or made for it), in ID order.
    pub fn on_node<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.by_node.get(id).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::testutil::{node, service, state, task};
    use crate::state::{Assignment, Command, State};
    use crate::types::{Mode, TaskState, TaskStatus};
    use rand::{Rng, SeedableRng};

    /// (service or node, its task IDs), for each service and each node.
    type Listing = (Vec<(String, Vec<String>)>, Vec<(String, Vec<String>)>);

    /// Task IDs by service and by node, the slow way.
    fn scanned(st: &State) -> Listing {
        let ids = |f: &dyn Fn(&Task) -> bool| -> Vec<String> {
            st.tasks
                .values()
                .filter(|t| f(t))
                .map(|t| t.id.clone())
                .collect()
        };
        let services = ["s0", "s1", "s2"]
            .iter()
            .map(|s| (s.to_string(), ids(&|t| t.service_id == *s)))
            .collect();
        let nodes = ["n0", "n1", "n2"]
            .iter()
            .map(|n| (n.to_string(), ids(&|t| t.node_id.as_deref() == Some(n))))
            .collect();
        (services, nodes)
    }

    fn indexed(st: &State) -> Listing {
        let ids = |it: Box<dyn Iterator<Item = &Task> + '_>| it.map(|t| t.id.clone()).collect();
        let services = ["s0", "s1", "s2"]
            .iter()
            .map(|s| (s.to_string(), ids(Box::new(st.tasks_of(s)))))
            .collect();
        let nodes = ["n0", "n1", "n2"]
            .iter()
            .map(|n| (n.to_string(), ids(Box::new(st.tasks_on(n)))))
            .collect();
        (services, nodes)
    }

    #[test]
    fn the_index_answers_as_a_scan_of_the_tasks_after_any_commands() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let services: Vec<_> = (0..3)
            .map(|i| service(&format!("s{i}"), Mode::Replicated, 3))
            .collect();
        let nodes: Vec<_> = (0..3).map(|i| node(&format!("n{i}"))).collect();
        for round in 0..50 {
            let mut st = state(&nodes, &services, &[]);
            let mut made = 0;
            for _ in 0..60 {
                let id = format!("t{}", rng.gen_range(0..made + 1));
                let cmd = match rng.gen_range(0..5) {
                    0 | 1 => {
                        made += 1;
                        let svc = &services[rng.gen_range(0..3)];
                        let mut t = task(
                            &format!("t{made}"),
                            svc,
                            rng.gen_range(0..4),
                            TaskState::Pending,
                        );
                        t.node_id = rng
                            .gen_bool(0.3)
                            .then(|| format!("n{}", rng.gen_range(0..3)));
                        Command::CreateTasks(vec![t])
                    }
                    2 => Command::Assign(vec![Assignment {
                        task_id: id,
                        node_id: rng
                            .gen_bool(0.8)
                            .then(|| format!("n{}", rng.gen_range(0..3))),
                        message: "scheduled".into(),
                        at: 1,
                    }]),
                    3 => Command::UpdateStatus(vec![(id, TaskStatus::new(TaskState::Failed, ""))]),
                    _ => Command::DeleteTasks(vec![id]),
                };
                st.apply(cmd);
            }
            assert_eq!(indexed(&st), scanned(&st), "round {round}");
            let mut rebuilt = st.clone();
            rebuilt.reindex();
            assert_eq!(rebuilt.index, st.index, "round {round}: rebuilt on load");
        }
    }
}
