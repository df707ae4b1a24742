//! Programming the nodes: the services the benchmark programs, a
//! long-lived loader per node (the library the daemon uses, in this
//! process, in the node's namespace), and the single changes timed at each
//! service count: the Kubernetes network-programming SLI, per change.

use crate::topology::UDP_SINK;
use crate::topology::{backends, pin_dir, NODES, PUB_CPS, PUB_RR, PUB_UDP, TCP_ACCEPT, TCP_ECHO};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use swarm_mesh::dataplane::{Backend, BackendState, Dataplane, LbService, Proto};
use swarm_mesh::iptables::IptablesDataplane;
use swarm_mesh::xdp::XdpDataplane;

fn backends_on(port: u16) -> Vec<Backend> {
    backends()
        .iter()
        .map(|(_, i, a, _)| Backend {
            addr: SocketAddrV4::new(*a, port),
            node: NODES[*i].1,
            state: BackendState::Active,
        })
        .collect()
}

fn service(id: u32, proto: Proto, published: u16, port: u16) -> LbService {
    LbService {
        id,
        name: format!("bench-{id}"),
        proto,
        vip: None,
        published_port: Some(published),
        backends: backends_on(port),
        declared_backends: None,
        snat: None,
    }
}

/// The services for one run: `n` UDP services, the measured one in the
/// middle, followed by the two measured TCP services.
pub fn services(n: usize) -> Vec<LbService> {
    let mut out = Vec::new();
    for k in 0..n {
        let port = if k == n / 2 {
            PUB_UDP
        } else {
            20000 + k as u16
        };
        out.push(service(k as u32 + 1, Proto::Udp, port, UDP_SINK));
        if k == n / 2 {
            out.push(service(100_001, Proto::Tcp, PUB_CPS, TCP_ACCEPT));
            out.push(service(100_002, Proto::Tcp, PUB_RR, TCP_ECHO));
        }
    }
    out
}

/// What a loader is asked: a whole list, a change, or to forget flows.
enum Job {
    Sync(Vec<LbService>),
    Update(Vec<LbService>, Vec<u32>),
    ForgetFlows,
}

/// The data plane of one mode, as the daemon holds it.
enum Plane {
    Xdp(Box<XdpDataplane>),
    Iptables(IptablesDataplane),
}

impl Plane {
    fn dp(&mut self) -> &mut dyn Dataplane {
        match self {
            Plane::Xdp(d) => d.as_mut(),
            Plane::Iptables(d) => d,
        }
    }

    /// Empty the flow tables: the XDP mode's maps, or the kernel's
    /// conntrack table that the iptables mode relies on.
    fn forget_flows(&mut self) -> Result<(), String> {
        match self {
            Plane::Xdp(d) => d.forget_flows().map(drop).map_err(|e| e.to_string()),
            Plane::Iptables(_) => {
                // (It fails on an empty table: nothing to forget then.)
                let _ = swarm_tests::netns::sh(&["conntrack", "-F"]);
                Ok(())
            }
        }
    }
}

type Reply = mpsc::Sender<Result<Duration, String>>;

/// A node's data plane, programmed from a thread that lives in the node's
/// namespace (iptables runs there too: children inherit the thread's
/// namespace), and that keeps the loader between calls as the daemon does.
pub struct Loader {
    jobs: mpsc::Sender<(Job, Reply)>,
}

impl Loader {
    pub fn start(node: &'static str, mode: &'static str) -> Loader {
        let (tx, rx) = mpsc::channel::<(Job, Reply)>();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(format!("/run/netns/{node}")).expect("node netns");
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("entering the node's namespace");
            let mut plane = match mode {
                "xdp" => Plane::Xdp(Box::new(
                    XdpDataplane::open(std::path::Path::new(&pin_dir(node)))
                        .expect("opening the pinned maps"),
                )),
                _ => Plane::Iptables(IptablesDataplane::new(None)),
            };
            for (job, reply) in rx {
                let start = Instant::now();
                let r = match &job {
                    Job::Sync(services) => plane.dp().sync(services).map_err(|e| e.to_string()),
                    Job::Update(upserts, removals) => plane
                        .dp()
                        .update(upserts, removals)
                        .map_err(|e| e.to_string()),
                    Job::ForgetFlows => plane.forget_flows(),
                };
                let _ = reply.send(r.map(|()| start.elapsed()));
            }
        });
        Loader { jobs: tx }
    }

    fn call(&self, job: Job) -> Duration {
        let (tx, rx) = mpsc::channel();
        self.jobs.send((job, tx)).expect("loader thread");
        rx.recv()
            .expect("loader thread")
            .unwrap_or_else(|e| panic!("programming the data plane: {e}"))
    }

    /// Program exactly `services`; how long it took.
    pub fn sync(&self, services: &[LbService]) -> Duration {
        self.call(Job::Sync(services.to_vec()))
    }

    /// Forget every tracked flow on this node, so a measurement starts
    /// from the same tables at every service count.
    pub fn forget_flows(&self) {
        self.call(Job::ForgetFlows);
    }

    /// Apply one change; how long it took.
    pub fn update(&self, change: &(Vec<LbService>, Vec<u32>)) -> Duration {
        self.call(Job::Update(change.0.clone(), change.1.clone()))
    }
}

/// A single change to the programmed services, and what undoes it: each
/// is (services to add or replace, ids to remove).
pub struct Change {
    pub name: &'static str,
    pub apply: (Vec<LbService>, Vec<u32>),
    pub undo: (Vec<LbService>, Vec<u32>),
}

/// The single changes timed at each size, from the programmed `base`.
pub fn changes(base: &[LbService], round: usize) -> Vec<Change> {
    let new = service(
        200_000 + round as u32,
        Proto::Udp,
        40_000 + (round % 1000) as u16,
        UDP_SINK,
    );
    // The last service: a filler, where there are fillers.
    let k = &base[base.len() - 1];
    let mut more = k.clone();
    more.backends.push(Backend {
        addr: SocketAddrV4::new(Ipv4Addr::new(198, 19, 201, 13), UDP_SINK),
        node: NODES[0].1,
        state: BackendState::Active,
    });
    let mut drained = k.clone();
    drained.backends[0].state = BackendState::Draining;
    let restore = (vec![k.clone()], Vec::new());
    vec![
        Change {
            name: "add_service",
            undo: (Vec::new(), vec![new.id]),
            apply: (vec![new], Vec::new()),
        },
        Change {
            name: "remove_service",
            apply: (Vec::new(), vec![k.id]),
            undo: restore.clone(),
        },
        Change {
            name: "add_backend",
            apply: (vec![more], Vec::new()),
            undo: restore.clone(),
        },
        Change {
            name: "drain_backend",
            apply: (vec![drained], Vec::new()),
            undo: restore,
        },
    ]
}
