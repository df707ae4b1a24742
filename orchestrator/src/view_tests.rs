use super::*;
use crate::manager::testutil::*;
use crate::state::Command;
use crate::types::{NetworkAttachmentSpec, NetworkSpec, PortConfig, Proto, TaskStatus};

/// One node's view, from a book made for it alone.
fn for_node(st: &State, node_id: &str) -> NodeView {
    Book::of(st).for_node(st, node_id)
}

fn net(st: &mut State, id: &str, name: &str) {
    let r = st.apply(Command::CreateNetwork {
        id: id.into(),
        spec: NetworkSpec {
            name: name.into(),
            driver: "overlay".into(),
            subnet: None,
            gateway: None,
            attachable: false,
            internal: false,
            ingress: name == "ingress",
            labels: Default::default(),
        },
        at: 0,
    });
    assert!(r.error.is_none());
}

fn on(svc: &mut Service, net: &str, aliases: &[&str]) {
    svc.spec.networks.push(NetworkAttachmentSpec {
        target: net.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
    });
}

/// Run the allocator until it has nothing left to do.
fn allocate(st: &mut State) {
    loop {
        let p = crate::manager::allocator::plan(st, 1);
        if p.commands.is_empty() {
            return;
        }
        for c in p.commands {
            st.apply(c);
        }
    }
}

/// A new task already bound to `node` (as global tasks are).
fn placed(id: &str, svc: &Service, slot: u64, node: &str) -> Task {
    let mut t = task(id, svc, slot, TaskState::New);
    t.node_id = Some(node.into());
    t.networks = None;
    t
}

fn set_state(st: &mut State, id: &str, state: TaskState) {
    let mut t = (*st.tasks[id]).clone();
    t.status = TaskStatus::new(state, "");
    st.tasks.insert(id.into(), std::sync::Arc::new(t));
}

/// n1 and n2; `web` on network back with 8000:80 and alias `www`, tasks t1
/// (n1, running), t2 (n2, running), t3 (n2, still starting); `solo` on its
/// own network, only on n2.
fn cluster() -> State {
    let mut n2 = node("n2");
    n2.addr = "198.18.0.12:2377".into();
    let mut n1 = node("n1");
    n1.addr = "198.18.0.11:2377".into();
    let mut st = state(&[n1, n2], &[], &[]);
    net(&mut st, "ing", "ingress");
    net(&mut st, "back", "back");
    net(&mut st, "iso", "iso");
    let mut web = service("web", Mode::Replicated, 3);
    web.spec.name = "web".into();
    on(&mut web, "back", &["www"]);
    web.spec.ports = vec![PortConfig {
        protocol: Proto::Tcp,
        published: 8000,
        target: 80,
        mode: PublishMode::Ingress,
        force: false,
    }];
    let mut solo = service("solo", Mode::Replicated, 1);
    solo.spec.name = "solo".into();
    on(&mut solo, "iso", &[]);
    st.apply(Command::CreateService(web.clone()));
    st.apply(Command::CreateService(solo.clone()));
    st.apply(Command::CreateTasks(vec![
        placed("t1", &web, 1, "n1"),
        placed("t2", &web, 2, "n2"),
        placed("t3", &web, 3, "n2"),
        placed("s1", &solo, 1, "n2"),
    ]));
    allocate(&mut st);
    // Tasks are bound to their nodes now: the nodes get their addresses.
    allocate(&mut st);
    for (id, s) in [
        ("t1", TaskState::Running),
        ("t2", TaskState::Running),
        ("t3", TaskState::Starting),
        ("s1", TaskState::Running),
    ] {
        set_state(&mut st, id, s);
    }
    st
}

fn node_on(st: &State, node: &str, net: &str) -> Ipv4Addr {
    st.nodes[node]
        .attachments
        .iter()
        .find(|a| a.network_id == net)
        .expect("the node has an address on the network")
        .addr
}

fn addr_on(st: &State, task: &str, net: &str) -> Ipv4Addr {
    st.tasks[task]
        .networks
        .iter()
        .flatten()
        .find(|a| a.network_id == net)
        .unwrap()
        .addr
}

#[test]
fn a_node_sees_its_networks_with_the_remote_tasks_on_them() {
    let st = cluster();
    let v = for_node(&st, "n1");
    let names: Vec<&str> = v.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, vec!["back", "ingress"]);
    let back = v.networks.iter().find(|n| n.name == "back").unwrap();
    let n2: Ipv4Addr = "198.18.0.12".parse().unwrap();
    let remote = |addr, is_node| RemoteEndpoint {
        addr,
        node: n2,
        is_node,
    };
    let mut want = vec![
        remote(addr_on(&st, "t2", "back"), false),
        remote(addr_on(&st, "t3", "back"), false),
        remote(node_on(&st, "n2", "back"), true),
    ];
    want.sort();
    assert_eq!(back.remote, want);
    assert_eq!(back.node_addr, Some(node_on(&st, "n1", "back")));
}

#[test]
fn only_running_tasks_are_backends_and_unreachable_services_are_left_out() {
    let st = cluster();
    let v = for_node(&st, "n1");
    let names: Vec<&str> = v.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["web"], "solo's network is not on n1");
    let web = &v.services[0];
    let ids: Vec<&str> = web.backends.iter().map(|b| b.task_id.as_str()).collect();
    assert_eq!(ids, vec!["t1", "t2"]);
    assert_eq!(web.vips.len(), 2);
    assert_eq!(web.declared, 3);
    // n2 sees solo too, and every node sees a service publishing a port.
    let v2 = for_node(&st, "n2");
    assert_eq!(v2.services.len(), 2);
    let lonely = for_node(&st, "n3");
    let nets: Vec<&str> = lonely.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nets, vec!["ingress"], "every node has the mesh's network");
    assert_eq!(lonely.services.len(), 1);
    assert!(lonely.dns.is_empty());
}

#[test]
fn dns_names_give_the_vip_aliases_and_tasks_on_each_network() {
    let st = cluster();
    let v = for_node(&st, "n1");
    let vip = st.services["web"]
        .endpoint
        .vips
        .iter()
        .find(|v| v.network_id == "back")
        .unwrap()
        .addr;
    let find = |name: &str| {
        v.dns
            .iter()
            .find(|r| r.network_id == "back" && r.name == name)
            .map(|r| r.addrs.clone())
    };
    assert_eq!(find("web"), Some(vec![vip]));
    assert_eq!(find("www"), Some(vec![vip]));
    let mut tasks = vec![addr_on(&st, "t1", "back"), addr_on(&st, "t2", "back")];
    tasks.sort();
    assert_eq!(find("tasks.web"), Some(tasks.clone()));
    assert_eq!(find("solo"), None, "solo is on another network");

    // With dnsrr the name gives the tasks themselves.
    let mut st = st;
    let mut web = (*st.services["web"]).clone();
    web.spec.endpoint_mode = EndpointMode::Dnsrr;
    web.spec.ports.clear();
    st.services.insert("web".into(), std::sync::Arc::new(web));
    let v = for_node(&st, "n1");
    let rec = v
        .dns
        .iter()
        .find(|r| r.network_id == "back" && r.name == "web")
        .unwrap();
    assert_eq!(rec.addrs, tasks);
}
