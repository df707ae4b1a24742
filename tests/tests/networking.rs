//! Service networking in a three-node swarm (manager n1, workers n2 and n3),
//! each scenario run once per data-plane mode: the routing mesh on every
//! node, the client's address, names and VIPs inside tasks, dnsrr, dropping
//! gone tasks, isolation, a daemon restart under a live connection, and the
//! refusals. Real daemons in netns, real Docker, real BPF or iptables.
//!
//! Scenarios of one mode share one lab and run one at a time; switching
//! mode rebuilds the lab.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use swarm_tests::cluster::{http_get_from, http_get_script, three_node_swarm};
use swarm_tests::*;

fn node_addr(n: usize) -> String {
    format!("198.18.0.{}", 10 + n)
}

/// Create a service and wait until `replicas` of its tasks run.
fn service(name: &str, replicas: usize, args: &[&str], image: &str) {
    let count = replicas.to_string();
    let mut full = vec![
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--replicas",
        &count,
    ];
    full.extend_from_slice(args);
    full.push(image);
    swarm(&full).ok();
    wait_for(
        &format!("{replicas} running tasks of {name}"),
        Duration::from_secs(60),
        || (running_tasks(name).len() == replicas).then_some(()),
    );
}

fn remove(names: &[&str]) {
    for n in names {
        swarm(&["service", "rm", n]).ok();
    }
}

fn network(name: &str, extra: &[&str]) -> String {
    let mut args = vec!["network", "create"];
    args.extend_from_slice(extra);
    args.push(name);
    swarm(&args).ok().stdout.trim().to_string()
}

/// The running application container of a service's task on `node`.
fn container_on(service: &str, node: &str) -> String {
    let id = swarm(&["node", "inspect", node]).ok();
    let node_id: Value = serde_json::from_str(&id.stdout).expect("node inspect is JSON");
    let node_id = node_id[0]["ID"].as_str().expect("node id").to_string();
    wait_for(
        &format!("a container of {service} on {node}"),
        Duration::from_secs(20),
        || {
            containers(
                &[
                    &format!("swarm.service.name={service}"),
                    "swarm.role=task",
                    &format!("swarm.node.id={node_id}"),
                ],
                true,
            )
            .into_iter()
            .next()
        },
    )
}

/// `sh -c SCRIPT` inside a container.
fn in_task(container: &str, script: &str) -> Run {
    docker(&["exec", container, "sh", "-c", script])
}

/// The addresses `getent hosts NAME` gives inside a container.
fn resolve(container: &str, name: &str) -> BTreeSet<String> {
    in_task(container, &format!("getent ahostsv4 {name}"))
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// One HTTP GET from inside a container (bash's /dev/tcp); who answered.
fn http_in(container: &str, host: &str, port: u16) -> Option<String> {
    let script = http_get_script(host, port);
    let r = docker(&["exec", container, "timeout", "5", "bash", "-c", &script]);
    who(&r.stdout).map(|(h, _)| h)
}

/// The service's VIP on the network, without the `/24` that inspect
/// writes after it (as Docker does; networks here get a pool's /24).
fn vip_of(service: &str, network_id: &str) -> String {
    let r = swarm(&["service", "inspect", service]).ok();
    let v: Value = serde_json::from_str(&r.stdout).expect("inspect is JSON");
    let cidr = v[0]["Endpoint"]["VirtualIPs"]
        .as_array()
        .expect("vips")
        .iter()
        .find(|x| x["NetworkID"] == network_id)
        .and_then(|x| x["Addr"].as_str())
        .expect("a VIP on the network")
        .to_string();
    let (addr, len) = cidr.split_once('/').expect("ADDR/PREFIX, as Docker's");
    assert_eq!(len, "24", "{cidr}");
    addr.to_string()
}

swarm_tests::in_both_modes!(
    a_published_port_answers_on_every_node_including_one_without_tasks,
    tasks_reach_services_by_name_and_vip_across_nodes_and_dnsrr_gives_task_addresses,
    dns_and_backends_drop_gone_tasks_within_a_second,
    networks_are_isolated_and_internal_ones_have_no_way_out,
    a_daemon_restart_keeps_a_connection_through_the_mesh_alive,
    refusals_name_the_fault_and_change_nothing,
);

fn a_published_port_answers_on_every_node_including_one_without_tasks(mode: &'static str) {
    let _lab = three_node_swarm(mode);
    let name = unique("pub");
    service(
        &name,
        2,
        &[
            "--replicas-max-per-node",
            "1",
            "--constraint",
            "node.hostname!=n3",
            "-p",
            "8100:80",
        ],
        "swarm/whoami",
    );
    let mut seen = BTreeSet::new();
    for n in 1..=3 {
        for _ in 0..8 {
            let answer = wait_for(
                &format!("an answer on {}:8100", node_addr(n)),
                Duration::from_secs(10),
                || http_get_from("client", &node_addr(n), 8100),
            );
            let (host, peer) = who(&answer).expect("a whoami answer");
            seen.insert(host);
            if mode == "xdp" || n == 3 {
                // XDP keeps the client's address everywhere; iptables mode
                // SNATs to the receiving node's ingress address (10.0.0.0/24)
                // when no backend is local, as Swarm does.
                let want = if mode == "xdp" {
                    "198.18.0.2:"
                } else {
                    "10.0.0."
                };
                assert!(
                    peer.starts_with(want),
                    "{mode} via n{n}: the backend saw {peer}"
                );
            }
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "both replicas answer through the mesh: {seen:?}"
    );
    // Full-size segments reach backends on other nodes too (in XDP mode
    // inside 20 bytes of IPIP: the tasks' MTU leaves room for it).
    let upload = lab(&[
        "exec",
        "client",
        "bash",
        "-c",
        "head -c 200000 /dev/zero | curl -s -m 10 --data-binary @- http://198.18.0.13:8100/",
    ]);
    assert!(
        upload.stdout.contains("hostname:"),
        "{mode}: a large upload through n3: {upload:?}"
    );
    // The mesh dump on the node without tasks names the service.
    let dump = swarm_on("n3", &["mesh", "dump", "--format", "json"]).ok();
    let d: Value = serde_json::from_str(&dump.stdout).expect("dump is JSON");
    assert_eq!(d["mode"], mode);
    let svc = d["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == format!("{name}:8100/tcp"))
        .unwrap_or_else(|| panic!("{name}:8100/tcp in the dump: {d}"));
    assert_eq!(svc["backends"].as_array().map(Vec::len), Some(2));
    remove(&[&name]);
    wait_for("the port to close", Duration::from_secs(10), || {
        http_get_from("client", &node_addr(3), 8100)
            .is_none()
            .then_some(())
    });
}

fn tasks_reach_services_by_name_and_vip_across_nodes_and_dnsrr_gives_task_addresses(
    mode: &'static str,
) {
    let _lab = three_node_swarm(mode);
    let net = unique("back");
    let net_id = network(&net, &[]);
    let (web, rr, probe) = (unique("web"), unique("rr"), unique("probe"));
    let on_net = ["--network", net.as_str()];
    let spread = [
        "--replicas-max-per-node",
        "1",
        "--constraint",
        "node.hostname!=n3",
    ];
    service(
        &web,
        2,
        &[&on_net[..], &spread[..]].concat(),
        "swarm/whoami",
    );
    service(
        &rr,
        2,
        &[&on_net[..], &spread[..], &["--endpoint-mode", "dnsrr"]].concat(),
        "swarm/whoami",
    );
    service(
        &probe,
        1,
        &[&on_net[..], &["--constraint", "node.hostname==n3"]].concat(),
        "redis",
    );
    let c = container_on(&probe, "n3");

    let vip = vip_of(&web, &net_id);
    assert_eq!(
        resolve(&c, &web),
        BTreeSet::from([vip.clone()]),
        "the name gives the VIP"
    );
    let tasks = wait_for(
        "tasks.NAME to list both replicas",
        Duration::from_secs(5),
        || {
            let t = resolve(&c, &format!("tasks.{web}"));
            (t.len() == 2).then_some(t)
        },
    );
    assert!(!tasks.contains(&vip));
    let mut answered = BTreeSet::new();
    for _ in 0..12 {
        answered.insert(http_in(&c, &web, 80).expect("web:80 answers through the VIP"));
    }
    assert_eq!(
        answered.len(),
        2,
        "both replicas, on n1 and n2, answer: {answered:?}"
    );

    let rr_addrs = resolve(&c, &rr);
    assert_eq!(
        rr_addrs.len(),
        2,
        "dnsrr gives the task addresses: {rr_addrs:?}"
    );
    assert_eq!(rr_addrs, resolve(&c, &format!("tasks.{rr}")));
    for a in &rr_addrs {
        assert!(http_in(&c, a, 80).is_some(), "task address {a} answers");
    }
    // Names that are not the cluster's fail at once: the lab has no
    // upstream resolver.
    let t = Instant::now();
    assert!(resolve(&c, "nosuch.example").is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "an unknown name took {:?}",
        t.elapsed()
    );
    remove(&[&web, &rr, &probe]);
}

fn dns_and_backends_drop_gone_tasks_within_a_second(mode: &'static str) {
    let _lab = three_node_swarm(mode);
    let net = unique("drop");
    network(&net, &[]);
    let (web, probe) = (unique("web"), unique("probe"));
    service(
        &web,
        3,
        &[
            "--network",
            &net,
            "--replicas-max-per-node",
            "1",
            "-p",
            "8101:80",
        ],
        "swarm/whoami",
    );
    service(
        &probe,
        1,
        &["--network", &net, "--constraint", "node.hostname==n1"],
        "redis",
    );
    let c = container_on(&probe, "n1");
    wait_for("three task names", Duration::from_secs(5), || {
        (resolve(&c, &format!("tasks.{web}")).len() == 3).then_some(())
    });

    // Scale down: from the moment the tasks are told to stop.
    swarm(&["service", "scale", "--detach", &format!("{web}=1")]).ok();
    wait_for("two tasks to be stopped", Duration::from_secs(10), || {
        (tasks(&web)
            .iter()
            .filter(|t| t["DesiredState"] != "Running")
            .count()
            >= 2)
            .then_some(())
    });
    wait_for(
        "DNS to drop the stopped tasks",
        Duration::from_secs(1),
        || (resolve(&c, &format!("tasks.{web}")).len() == 1).then_some(()),
    );

    // A cut node: from the moment it is marked down.
    swarm(&["service", "scale", &format!("{web}=3")]).ok();
    wait_for("three task names again", Duration::from_secs(10), || {
        (resolve(&c, &format!("tasks.{web}")).len() == 3).then_some(())
    });
    let before = resolve(&c, &format!("tasks.{web}"));
    lab(&["cut", "n3"]).ok();
    wait_for("n3 to be Down", Duration::from_secs(15), || {
        let nodes = swarm(&["node", "ls", "--format", "json"]).ok().json_lines();
        nodes
            .iter()
            .any(|n| n["Hostname"] == "n3" && n["Status"] == "Down")
            .then_some(())
    });
    let after = wait_for(
        "DNS to drop the cut node's task",
        Duration::from_secs(1),
        || {
            let now = resolve(&c, &format!("tasks.{web}"));
            (now.len() == 2).then_some(now)
        },
    );
    assert!(after.is_subset(&before));
    // The mesh no longer sends connections to it either.
    for _ in 0..10 {
        assert!(
            http_get_from("client", &node_addr(1), 8101).is_some(),
            "every connection lands on a live backend"
        );
    }
    lab(&["heal", "n3"]).ok();
    remove(&[&web, &probe]);
}

fn networks_are_isolated_and_internal_ones_have_no_way_out(mode: &'static str) {
    let _lab = three_node_swarm(mode);
    let (a, b, inner) = (unique("neta"), unique("netb"), unique("inner"));
    network(&a, &[]);
    network(&b, &[]);
    network(&inner, &["--internal"]);
    let (sa, sb, si, si2) = (unique("sa"), unique("sb"), unique("si"), unique("si2"));
    let here = ["--constraint", "node.hostname==n1"];
    service(
        &sa,
        1,
        &[&["--network", a.as_str()][..], &here[..]].concat(),
        "swarm/whoami",
    );
    service(
        &sb,
        1,
        &[&["--network", b.as_str()][..], &here[..]].concat(),
        "redis",
    );
    service(
        &si,
        1,
        &[&["--network", inner.as_str()][..], &here[..]].concat(),
        "redis",
    );
    service(
        &si2,
        1,
        &[
            "--network",
            inner.as_str(),
            "--constraint",
            "node.hostname==n2",
        ],
        "swarm/whoami",
    );
    let cb = container_on(&sb, "n1");
    // sa's addresses, read from its sandbox: the gateway's and the overlay's.
    let task_addrs: Vec<String> = {
        let pause = containers(
            &[&format!("swarm.service.name={sa}"), "swarm.role=pause"],
            true,
        );
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &pause[0]])
            .ok()
            .stdout;
        let out =
            run(Command::new("nsenter").args(["-t", pid.trim(), "-n", "ip", "-4", "-o", "addr"]))
                .ok();
        out.stdout
            .lines()
            .filter(|l| !l.contains(" lo "))
            .filter_map(|l| l.split_whitespace().nth(3))
            .map(|a| a.split('/').next().unwrap_or("").to_string())
            .collect()
    };
    assert!(
        task_addrs.len() >= 2,
        "sa has a gateway and an overlay address: {task_addrs:?}"
    );
    for addr in &task_addrs {
        assert!(
            http_in(&cb, addr, 80).is_none(),
            "{sb} on another network reached {sa} at {addr}"
        );
    }
    // The internal network: its tasks reach each other, and nothing else.
    let ci = container_on(&si, "n1");
    assert!(
        http_in(&ci, &si2, 80).is_some(),
        "tasks on an internal network reach each other"
    );
    let out = docker(&[
        "exec",
        &ci,
        "timeout",
        "3",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/198.18.0.11/2377",
    ]);
    assert_ne!(out.code, 0, "an internal network reached the underlay");
    remove(&[&sa, &sb, &si, &si2]);
}

fn a_daemon_restart_keeps_a_connection_through_the_mesh_alive(mode: &'static str) {
    let _lab = three_node_swarm(mode);
    let name = unique("kv");
    service(
        &name,
        1,
        &["-p", "6390:6379", "--constraint", "node.hostname==n2"],
        "redis",
    );
    // A client in the lab's client namespace holds one connection to n1,
    // which forwards it to the task on n2, and pings on it.
    let mut client = Command::new("ip")
        .args(["netns", "exec", "swl-client", "python3", "-u", "-c"])
        .arg(
            "import socket,sys\n\
             import time\n\
             for _ in range(50):\n\
             \x20 try: s=socket.create_connection(('198.18.0.11',6390),timeout=5); break\n\
             \x20 except OSError: time.sleep(0.2)\n\
             for line in sys.stdin:\n\
             \x20 s.sendall(b'PING\\r\\n'); print(s.recv(64).decode().strip(), flush=True)\n",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the client namespace");
    let mut stdin = client.stdin.take().expect("piped");
    let mut lines = BufReader::new(client.stdout.take().expect("piped")).lines();
    let mut ping = |what: &str| {
        writeln!(stdin, "ping").expect("the client is alive");
        let answer = lines.next().expect("an answer").expect("text");
        assert_eq!(answer, "+PONG", "{what}");
    };
    ping("before the restart");
    lab(&["kill", "n1"]).ok();
    ping("while n1's daemon is down");
    lab(&["start", "n1"]).ok();
    wait_for("n1's daemon to answer", Duration::from_secs(20), || {
        (swarm(&["info"]).code == 0).then_some(())
    });
    ping("after n1's daemon restarted");
    let _ = client.kill();
    let _ = client.wait();
    remove(&[&name]);
}

fn refusals_name_the_fault_and_change_nothing(mode: &'static str) {
    let _lab = three_node_swarm(mode);
    let net = unique("busy");
    network(&net, &["--subnet", "10.77.0.0/24"]);
    let user = unique("user");
    service(
        &user,
        1,
        &["--network", &net, "-p", "8102:80"],
        "swarm/whoami",
    );
    let networks = || swarm(&["network", "ls", "--format", "json"]).ok().stdout;
    let services = || swarm(&["service", "ls", "-q"]).ok().stdout;
    let (nets0, svcs0) = (networks(), services());
    let refused = |args: &[&str], why: &str| {
        let r = swarm(args);
        assert_ne!(r.code, 0, "{args:?} was accepted");
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
    };
    refused(
        &["network", "rm", &net],
        &format!("network {net} is in use by service {user}"),
    );
    refused(
        &["network", "create", "--subnet", "10.77.0.0/16", "clash"],
        &format!("overlaps network \"{net}\" (10.77.0.0/24)"),
    );
    refused(
        &["network", "create", "--subnet", "198.18.0.0/24", "under"],
        "overlaps the underlay",
    );
    refused(
        &["service", "create", "--network", "nosuch", "swarm/whoami"],
        "network nosuch not found",
    );
    refused(
        &["service", "create", "-p", "8102:80", "swarm/whoami"],
        &format!("port 8102/tcp is already published by service {user}"),
    );
    refused(
        &[
            "service",
            "create",
            "--publish",
            "mode=host,published=2377,target=80",
            "swarm/whoami",
        ],
        "cannot publish port 2377/tcp: it is the swarm's cluster port",
    );
    assert_eq!(networks(), nets0, "no network was made or removed");
    assert_eq!(services(), svcs0, "no service was made");
    remove(&[&user]);
    wait_for("the network to be free", Duration::from_secs(15), || {
        (swarm(&["network", "rm", &net]).code == 0).then_some(())
    });
}
