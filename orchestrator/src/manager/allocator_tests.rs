use super::*;
use crate::manager::testutil::*;
use crate::state::Command;
use crate::types::{
    EndpointMode, Mode, NetworkAttachmentSpec, NetworkSpec, PortConfig, Proto, PublishMode,
    Service, Task, TaskStatus,
};

fn net_spec(name: &str, subnet: Option<&str>) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        driver: "overlay".into(),
        subnet: subnet.map(|s| s.parse().unwrap()),
        gateway: None,
        attachable: false,
        internal: false,
        ingress: name == "ingress",
        labels: Default::default(),
    }
}

fn create_net(st: &mut State, id: &str, name: &str, subnet: Option<&str>) {
    let r = st.apply(Command::CreateNetwork {
        id: id.into(),
        spec: net_spec(name, subnet),
        at: 0,
    });
    assert!(r.error.is_none(), "{:?}", r.error);
}

fn new_task(id: &str, svc: &Service, slot: u64) -> Task {
    let mut t = task(id, svc, slot, TaskState::New);
    t.node_id = None;
    t.networks = None;
    t
}

/// A state with ingress and a "back" network, and service `s` on "back"
/// publishing 8000:80, with `n` new tasks.
fn cluster(n: u64, back_subnet: &str) -> State {
    let mut st = state(&[node("n1")], &[], &[]);
    create_net(&mut st, "ing", "ingress", None);
    create_net(&mut st, "back", "back", Some(back_subnet));
    let mut s = service("s", Mode::Replicated, n);
    s.spec.networks = vec![NetworkAttachmentSpec {
        target: "back".into(),
        aliases: vec![],
    }];
    s.spec.ports = vec![PortConfig {
        protocol: Proto::Tcp,
        published: 8000,
        target: 80,
        mode: PublishMode::Ingress,
        force: false,
    }];
    assert!(st.apply(Command::CreateService(s.clone())).error.is_none());
    let tasks: Vec<Task> = (1..=n).map(|i| new_task(&format!("t{i}"), &s, i)).collect();
    st.apply(Command::CreateTasks(tasks));
    st
}

fn after(st: &State) -> State {
    let mut next = st.clone();
    for c in plan(st, 7).commands {
        let r = next.apply(c);
        assert!(r.error.is_none(), "{:?}", r.error);
    }
    next
}

#[test]
fn new_tasks_get_an_address_on_each_network_and_services_a_vip_on_each() {
    let st = after(&cluster(3, "10.9.0.0/24"));
    assert_eq!(st.networks["ing"].subnet.to_string(), "10.0.0.0/24");
    let svc = &st.services["s"];
    let vip_nets: Vec<&str> = svc
        .endpoint
        .vips
        .iter()
        .map(|v| v.network_id.as_str())
        .collect();
    assert_eq!(vip_nets, vec!["ing", "back"]);
    let mut seen = HashSet::new();
    for v in &svc.endpoint.vips {
        assert!(seen.insert((v.network_id.clone(), v.addr)));
    }
    for t in st.tasks.values() {
        assert_eq!(t.status.state, TaskState::Pending);
        assert_eq!(t.status.message, "pending task scheduling");
        let nets = t.networks.as_ref().unwrap();
        assert_eq!(nets.len(), 2);
        for a in nets {
            // Never the gateway (.1), never an address given twice.
            assert_ne!(a.addr, st.networks[&a.network_id].gateway);
            assert!(seen.insert((a.network_id.clone(), a.addr)), "{a:?} twice");
        }
    }
    // Nothing more to do: the allocator is idempotent.
    assert!(plan(&st, 8).commands.is_empty());
}

#[test]
fn dnsrr_services_get_no_vip() {
    let mut st = cluster(1, "10.9.0.0/24");
    let mut s = (*st.services["s"]).clone();
    s.spec.ports.clear();
    s.spec.endpoint_mode = EndpointMode::Dnsrr;
    let v = s.meta.version;
    st.apply(Command::UpdateService {
        service: s,
        expected_version: v,
    });
    // Tasks run the spec they were made from.
    let mut t = (*st.tasks["t1"]).clone();
    t.spec = st.services["s"].spec.clone();
    st.tasks.insert("t1".into(), std::sync::Arc::new(t));
    let st = after(&st);
    assert!(st.services["s"].endpoint.vips.is_empty());
    assert_eq!(st.tasks["t1"].networks.as_ref().unwrap().len(), 1);
}

#[test]
fn an_exhausted_subnet_leaves_the_task_pending_and_says_why_once() {
    // A /29 has six hosts: the gateway, the VIP and four tasks.
    let st = after(&cluster(5, "10.9.0.0/29"));
    let pending: Vec<&Task> = st
        .tasks
        .values()
        .map(|t| &**t)
        .filter(|t| t.networks.is_none())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status.state, TaskState::Pending);
    assert_eq!(
        pending[0].status.message,
        "no free address on network back (10.9.0.0/29 is full)"
    );
    assert!(
        plan(&st, 9).commands.is_empty(),
        "the reason is written once"
    );
    // Its half-taken ingress address went back: only 4 ingress addresses
    // are held by tasks, plus the VIP and the node's own.
    assert_eq!(st.ipam["ing"].len(), 6);

    // When a task ends, its addresses are free again and the waiting task
    // gets them.
    let mut st = st;
    let done = TaskStatus::new(TaskState::Failed, "gone");
    st.apply(Command::UpdateStatus(vec![("t1".into(), done)]));
    let st = after(&st);
    assert!(st
        .tasks
        .values()
        .filter(|t| t.id != "t1")
        .all(|t| t.networks.is_some()));
}

#[test]
fn a_stale_plan_cannot_double_book_an_address() {
    let st = cluster(1, "10.9.0.0/24");
    let p = plan(&st, 1);
    let mut next = st.clone();
    for c in p.commands.clone() {
        next.apply(c);
    }
    // A second task replays the first task's addresses.
    let mut twin = new_task("t9", &st.services["s"], 9);
    twin.slot = 9;
    next.apply(Command::CreateTasks(vec![twin]));
    let addrs = next.tasks["t1"].networks.clone().unwrap();
    let r = next.apply(Command::AllocateTasks(vec![TaskAllocation {
        task_id: "t9".into(),
        result: Ok(addrs),
        at: 2,
    }]));
    assert!(r.error.unwrap().to_string().contains("is taken"));
    assert!(next.tasks["t9"].networks.is_none());
}

#[test]
fn subnets_that_overlap_are_refused_naming_the_overlap() {
    let mut st = cluster(0, "10.9.0.0/24");
    let mut n = node("n2");
    n.addr = "198.18.0.12:2377".into();
    n.gateway_subnet = Some("198.19.2.0/24".parse().unwrap());
    st.apply(Command::PutNode(n));
    for (subnet, why) in [
        ("10.9.0.0/16", "overlaps network \"back\" (10.9.0.0/24)"),
        (
            "198.19.0.0/16",
            "overlaps the task gateway subnet 198.19.2.0/24 of node n2",
        ),
        (
            "198.18.0.0/24",
            "overlaps the underlay: node n1 has address 198.18.0.11",
        ),
    ] {
        let r = st.apply(Command::CreateNetwork {
            id: "x".into(),
            spec: net_spec("x", Some(subnet)),
            at: 0,
        });
        let e = r.error.expect("refused").to_string();
        assert!(e.contains(why), "{subnet}: {e}");
        assert!(!st.networks.contains_key("x"));
    }
    // Without --subnet the pool's next free /24 is used.
    create_net(&mut st, "y", "y", None);
    assert_eq!(st.networks["y"].subnet.to_string(), "10.0.1.0/24");
    assert_eq!(st.networks["y"].gateway.to_string(), "10.0.1.1");
    assert_ne!(st.networks["y"].vni, st.networks["back"].vni);
}

#[test]
fn a_network_in_use_cannot_be_removed() {
    let mut st = cluster(1, "10.9.0.0/24");
    let e = st
        .apply(Command::RemoveNetwork { id: "back".into() })
        .error
        .unwrap()
        .to_string();
    assert_eq!(e, "network back is in use by service svc-s");
    st.apply(Command::RemoveService { id: "s".into() });
    // The task still holds its address until it stops (here: never
    // allocated, so nothing holds the network).
    assert!(st
        .apply(Command::RemoveNetwork { id: "back".into() })
        .error
        .is_none());
}

#[test]
fn an_ingress_port_belongs_to_one_service() {
    let mut st = cluster(0, "10.9.0.0/24");
    let mut other = service("o", Mode::Replicated, 1);
    other.spec.ports = st.services["s"].spec.ports.clone();
    let e = st
        .apply(Command::CreateService(other))
        .error
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("port 8000/tcp is already published by service svc-s"),
        "{e}"
    );
}
