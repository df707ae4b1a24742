//! Building blocks for topologies of network namespaces, shared by the
//! data-plane tests and the ingress benchmark.

use crate::{run, Run};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;

/// Run a command given as words.
pub fn sh(args: &[&str]) -> Run {
    run(Command::new(args[0]).args(&args[1..]))
}

/// Run a command given as words; panic with its stderr if it fails.
pub fn must(args: &[&str]) {
    let r = sh(args);
    assert_eq!(r.code, 0, "{args:?} failed: {}", r.stderr);
}

/// Run `f` on a thread inside network namespace `ns`. Sockets it creates
/// stay in that namespace wherever they are used afterwards.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// The MAC address of `dev` in namespace `ns`, as aa:bb:cc:dd:ee:ff.
pub fn mac_str(ns: &str, dev: &str) -> String {
    let out = sh(&["ip", "-n", ns, "-j", "link", "show", dev]).stdout;
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("ip -j link show {dev} in {ns}: {e}: {out}"));
    v[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("{dev} in {ns} has no address: {out}"))
        .to_string()
}

/// The MAC address of `dev` in namespace `ns`.
pub fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let b: Vec<u8> = mac_str(ns, dev)
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    b.try_into().expect("6 bytes")
}

/// A namespace `ns` whose eth0 (with `addr`/24) is plugged into `bridge`
/// in the host namespace through the veth `host_if`.
pub fn add_host(bridge: &str, ns: &str, host_if: &str, addr: Ipv4Addr) {
    must(&["ip", "netns", "add", ns]);
    must(&[
        "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ]);
    must(&["ip", "link", "set", host_if, "master", bridge, "up"]);
    must(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ]);
    must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
}

/// Docker's user chain when it exists (evaluated before its DROP), else FORWARD.
fn forward_chain() -> &'static str {
    if sh(&["iptables", "-nL", "DOCKER-USER"]).code == 0 {
        "DOCKER-USER"
    } else {
        "FORWARD"
    }
}

fn bridge_rules(bridge: &str) -> [Vec<String>; 2] {
    let rule = |dir: &str| {
        [
            dir,
            bridge,
            "-m",
            "comment",
            "--comment",
            "swarm-test-bridge",
            "-j",
            "ACCEPT",
        ]
        .map(String::from)
        .to_vec()
    };
    [rule("-i"), rule("-o")]
}

/// Bridged traffic may pass through the host's iptables FORWARD chain, whose
/// policy Docker sets to DROP: accept `bridge`'s traffic first.
pub fn accept_bridge(bridge: &str) {
    let chain = forward_chain();
    for rule in bridge_rules(bridge) {
        let mut args = vec!["iptables", "-I", chain];
        args.extend(rule.iter().map(String::as_str));
        must(&args);
    }
}

/// Remove what `accept_bridge` added (all copies; none is fine).
pub fn unaccept_bridge(bridge: &str) {
    let chain = forward_chain();
    for rule in bridge_rules(bridge) {
        let mut args = vec!["iptables", "-D", chain];
        args.extend(rule.iter().map(String::as_str));
        while sh(&args).code == 0 {}
    }
}

/// Make namespace `ns` a router for tasks: IPv4 forwarding on, and a bridge
/// `bridge` holding the tasks' gateway address `gw`/24.
pub fn add_gateway(ns: &str, bridge: &str, gw: Ipv4Addr) {
    must(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    must(&["ip", "-n", ns, "link", "add", bridge, "type", "bridge"]);
    must(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{gw}/24"),
        "dev",
        bridge,
    ]);
    must(&["ip", "-n", ns, "link", "set", bridge, "up"]);
}

/// A task namespace `ns` behind router `node`: its eth0 (`addr`/24, default
/// route via `gw`) is plugged into `bridge` in `node` through the veth `port`.
pub fn add_task(node: &str, bridge: &str, ns: &str, port: &str, addr: Ipv4Addr, gw: Ipv4Addr) {
    must(&["ip", "netns", "add", ns]);
    must(&[
        "ip", "-n", node, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ]);
    must(&[
        "ip", "-n", node, "link", "set", port, "master", bridge, "up",
    ]);
    must(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ]);
    must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    must(&[
        "ip",
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &gw.to_string(),
    ]);
}
