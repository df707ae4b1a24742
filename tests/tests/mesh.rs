//! The kernel data plane over network namespaces: a client, three nodes and
//! plain backend processes, programmed with `swarm mesh`. Every scenario runs
//! in both modes, XDP and iptables, from one test body.
//! Covers reachability from every node (TCP and UDP), spread, the client's
//! source IP at the backend, draining, backend churn, a loader restart under
//! a live stream, and what `mesh dump` reports.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use swarm_tests::meshlab::*;
use swarm_tests::netns::in_netns;
use swarm_tests::who;

const NODES: usize = 3;
const WEB: u16 = 8000;
const DNS_LIKE_UDP: u16 = 9000;
const STREAM: u16 = 9090;
/// The web service's virtual IP, for east-west traffic.
const VIP: &str = "198.19.250.10:80";

fn backends(port: u16, draining: &[String], skip: &[String]) -> Value {
    let mut out = Vec::new();
    for i in 1..=NODES {
        for j in 1..=BACKENDS_PER_NODE {
            let name = backend_name(i, j);
            if skip.contains(&name) {
                continue;
            }
            let state = if draining.contains(&name) {
                "draining"
            } else {
                "active"
            };
            out.push(json!({"addr": format!("{}:{port}", backend_addr(i, j)), "node": node_addr(i).to_string(), "state": state}));
        }
    }
    Value::Array(out)
}

fn services(draining: &[String], skip: &[String]) -> Value {
    let declared = NODES * BACKENDS_PER_NODE;
    json!([
        {"id": 1, "name": "web", "proto": "tcp", "vip": VIP, "published_port": WEB, "backends": backends(HTTP_PORT, draining, skip), "declared_backends": declared},
        {"id": 2, "name": "udp", "proto": "udp", "published_port": DNS_LIKE_UDP, "backends": backends(UDP_PORT, draining, skip), "declared_backends": declared},
        {"id": 3, "name": "stream", "proto": "tcp", "published_port": STREAM, "backends": backends(STREAM_PORT, draining, skip), "declared_backends": declared},
    ])
}

/// One HTTP request from the client to a node's published port.
fn http(node: usize) -> Option<(String, String)> {
    http_from(CLIENT, SocketAddrV4::new(node_addr(node), WEB))
}

/// One HTTP request to `to` from namespace `ns`: who answered, whom it saw.
fn http_from(ns: &str, to: SocketAddrV4) -> Option<(String, String)> {
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        who(&body)
    })
}

fn udp(node: usize) -> Option<(String, String)> {
    let to = SocketAddrV4::new(node_addr(node), DNS_LIKE_UDP);
    in_netns(CLIENT, move || {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.send_to(b"who?", to).ok()?;
        let mut buf = [0u8; 512];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        who(&String::from_utf8_lossy(&buf[..n]))
    })
}

/// A long-lived TCP flow to a node's stream port; yields backend names.
struct Stream {
    reader: BufReader<TcpStream>,
}

impl Stream {
    fn open(node: usize) -> Stream {
        let to = SocketAddrV4::new(node_addr(node), STREAM);
        let s = in_netns(CLIENT, move || {
            TcpStream::connect_timeout(&to.into(), Duration::from_secs(3))
        })
        .expect("stream connects");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Stream {
            reader: BufReader::new(s),
        }
    }

    /// The next line's backend name and the client address it saw.
    fn next(&mut self) -> (String, String) {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("stream keeps delivering");
        assert!(n > 0, "stream closed");
        let mut parts = line.split_whitespace();
        (
            parts.next().unwrap().to_string(),
            parts.next().unwrap_or("").to_string(),
        )
    }

    /// Read for `d`, asserting every line comes from `backend` with no gap
    /// longer than `max_gap`.
    fn stays_on(&mut self, backend: &str, d: Duration, max_gap: Duration) {
        let end = Instant::now() + d;
        let mut last = Instant::now();
        while Instant::now() < end {
            let (name, _) = self.next();
            assert_eq!(name, backend, "flow moved to another backend");
            assert!(
                last.elapsed() <= max_gap,
                "stream stalled for {:?}",
                last.elapsed()
            );
            last = Instant::now();
        }
    }
}

swarm_tests::in_both_modes!(
    published_ports_answer_on_every_node_and_spread_over_backends,
    a_draining_backend_keeps_its_flows_and_gets_no_new_ones,
    backend_churn_leaves_established_flows_where_they_are,
    restarting_the_loader_keeps_streaming_connections_alive,
    mesh_dump_shows_what_the_data_plane_holds,
    tasks_reach_a_service_by_its_vip_across_all_backends,
);

/// The address a backend should see for a client connection: the client's
/// own in XDP mode (always), in iptables mode only for local backends (remote
/// ones are masqueraded behind the node that received the connection).
fn check_source(mode: &str, via_node: usize, backend: &str, peer: &str) {
    let client = format!("{CLIENT_ADDR}:");
    let local = backend.starts_with(&format!("b{via_node}"));
    if mode == "xdp" || local {
        assert!(
            peer.starts_with(&client),
            "{mode}: backend {backend} saw {peer}, not the client"
        );
    } else {
        assert!(
            peer.starts_with(&format!("{}:", node_addr(via_node))),
            "{mode}: {backend} saw {peer}"
        );
    }
}

/// An HTTP request from the east-west client task to the web VIP.
fn http_vip() -> Option<(String, String)> {
    http_from(TASK, VIP.parse().unwrap())
}

fn tasks_reach_a_service_by_its_vip_across_all_backends(mode: &'static str) {
    let lab = MeshLab::up(NODES, mode);
    lab.sync(&services(&[], &[]));
    let mut names = BTreeSet::new();
    for _ in 0..24 {
        let (name, peer) = http_vip().unwrap_or_else(|| panic!("{mode}: no answer from the VIP"));
        let local = name.starts_with("b1");
        if mode == "xdp" || local {
            assert!(
                peer.starts_with(&format!("{TASK_ADDR}:")),
                "{mode}: {name} saw {peer}, not the task"
            );
        }
        names.insert(name);
    }
    let on_node_1 = names.iter().filter(|n| n.starts_with("b1")).count();
    assert!(names.len() >= 4, "{mode}: VIP spread over only {names:?}");
    assert!(
        on_node_1 >= 1 && on_node_1 < names.len(),
        "{mode}: want local and remote backends, got {names:?}"
    );
}

fn published_ports_answer_on_every_node_and_spread_over_backends(mode: &'static str) {
    let lab = MeshLab::up(NODES, mode);
    lab.sync(&services(&[], &[]));
    let mut seen: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for node in 1..=NODES {
        for _ in 0..12 {
            let (name, peer) =
                http(node).unwrap_or_else(|| panic!("{mode}: no TCP answer via node {node}"));
            check_source(mode, node, &name, &peer);
            seen.entry(node).or_default().insert(name);
        }
        for _ in 0..6 {
            let (name, peer) =
                udp(node).unwrap_or_else(|| panic!("{mode}: no UDP answer via node {node}"));
            check_source(mode, node, &name, &peer);
        }
    }
    let all: BTreeSet<_> = seen.values().flatten().cloned().collect();
    assert!(all.len() >= 4, "requests spread over only {all:?}");
    for (node, names) in &seen {
        let remote = names.iter().any(|n| !n.starts_with(&format!("b{node}")));
        assert!(
            remote,
            "node {node} never used a backend on another node: {names:?}"
        );
    }
}

fn a_draining_backend_keeps_its_flows_and_gets_no_new_ones(mode: &'static str) {
    let lab = MeshLab::up(NODES, mode);
    lab.sync(&services(&[], &[]));
    let mut stream = Stream::open(1);
    let (victim, peer) = stream.next();
    check_source(mode, 1, &victim, &peer);

    lab.sync(&services(std::slice::from_ref(&victim), &[]));
    stream.stays_on(&victim, Duration::from_secs(1), Duration::from_millis(500));
    for node in 1..=NODES {
        for _ in 0..8 {
            let (name, _) = Stream::open(node).next();
            assert_ne!(name, victim, "a new flow went to the draining backend");
        }
    }
    stream.stays_on(
        &victim,
        Duration::from_millis(300),
        Duration::from_millis(500),
    );
}

fn backend_churn_leaves_established_flows_where_they_are(mode: &'static str) {
    let lab = MeshLab::up(NODES, mode);
    lab.sync(&services(&[], &[]));
    let mut streams: Vec<(Stream, String)> = (0..8)
        .map(|k| {
            let mut s = Stream::open(1 + k % NODES);
            let (name, _) = s.next();
            (s, name)
        })
        .collect();
    // Remove the first stream's backend: every flow on another backend must
    // stay where it is even though the Maglev table changed.
    let gone = streams[0].1.clone();
    lab.sync(&services(&[], std::slice::from_ref(&gone)));
    let mut kept = 0;
    for (s, name) in streams.iter_mut().filter(|(_, n)| *n != gone) {
        s.stays_on(name, Duration::from_millis(300), Duration::from_millis(500));
        kept += 1;
    }
    assert!(kept > 0, "every stream went to {gone}; nothing to check");
    for node in 1..=NODES {
        for _ in 0..6 {
            let (name, _) = http(node).expect("still reachable after churn");
            assert_ne!(name, gone, "a removed backend got a new flow");
        }
    }
}

fn restarting_the_loader_keeps_streaming_connections_alive(mode: &'static str) {
    let lab = MeshLab::up(NODES, mode);
    lab.sync(&services(&[], &[]));
    // Flows through every node, so both local and tunnelled paths are covered.
    let mut streams: Vec<(Stream, String)> = (1..=NODES)
        .flat_map(|n| (0..2).map(move |_| n))
        .map(|n| {
            let mut s = Stream::open(n);
            let (name, _) = s.next();
            (s, name)
        })
        .collect();
    let reader = std::thread::spawn(move || {
        for (s, name) in &mut streams {
            s.stays_on(name, Duration::from_millis(200), Duration::from_millis(500));
        }
        for _ in 0..10 {
            for (s, name) in &mut streams {
                s.stays_on(name, Duration::from_millis(100), Duration::from_millis(500));
            }
        }
    });
    lab.attach(); // a new loader process replaces the programs in the pinned links
    lab.sync(&services(&[], &[]));
    reader.join().expect("streams survived the loader restart");
}

fn mesh_dump_shows_what_the_data_plane_holds(mode: &'static str) {
    let lab = MeshLab::up(NODES, mode);
    lab.sync(&services(&[], &[]));
    for _ in 0..5 {
        http(1).expect("reachable");
    }
    let d = lab.dump(1);
    assert_eq!(d["mode"], mode);
    if mode == "iptables" {
        // The rules this program owns: one DNAT per backend of each service.
        let rules: Vec<&str> = d["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        for i in 1..=NODES {
            for j in 1..=BACKENDS_PER_NODE {
                let to = format!("--to-destination {}:{HTTP_PORT}", backend_addr(i, j));
                assert!(
                    rules.iter().any(|r| r.contains(&to)),
                    "no DNAT {to} in {rules:#?}"
                );
            }
        }
        assert!(
            rules
                .iter()
                .any(|r| r.contains("--dport 8000") && r.contains("SWARM-SVC-1")),
            "{rules:#?}"
        );
        return;
    }
    let points: Vec<String> = d["attach_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(
        points.iter().any(|p| p.starts_with("xdp_eth0"))
            && points.iter().any(|p| p.starts_with("tc_egress_eth0")),
        "{points:?}"
    );
    let web = d["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == 1)
        .expect("service 1");
    assert_eq!(
        web["frontends"],
        json!([format!("*:{WEB}/tcp"), format!("{VIP}/tcp")])
    );
    let shares: Vec<f64> = web["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["share"].as_f64().unwrap())
        .collect();
    assert_eq!(shares.len(), NODES * BACKENDS_PER_NODE);
    assert!(
        (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "shares {shares:?}"
    );
    assert!(
        shares.iter().all(|s| (s - 1.0 / 6.0).abs() < 0.01),
        "uneven shares {shares:?}"
    );
    assert!(
        web["packets"].as_u64().unwrap() >= 5 && web["new_flows"].as_u64().unwrap() >= 5,
        "{web}"
    );
    let flows = d["flows"].as_array().unwrap();
    assert!(
        flows
            .iter()
            .any(|f| f["client"].as_str().unwrap().starts_with("198.18.1.2:")),
        "{flows:?}"
    );
    let drops: Vec<String> = d["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap().to_string())
        .collect();
    assert!(drops.contains(&"no_backend".to_string()), "{drops:?}");
}
