//! A standalone topology for data-plane tests: a client, N node namespaces
//! on one underlay bridge, and two plain backend processes per node, each in
//! its own namespace behind the node. No daemons: the data plane is driven
//! with `swarm mesh` inside each node, as the cluster will drive it.
//!
//! ```text
//!  swm-c 198.18.1.2 ─┐
//!                    ├─ swm-br0 ─ swm-n<i> 198.18.1.<10+i> ─ swm-gw ─ swm-b<i><j> 198.19.<100+i>.<10+j>
//! ```
//! Traffic stays inside these namespaces and 198.18.0.0/15.

use crate::netns::{
    accept_bridge, add_gateway, add_host, add_task, in_netns, mac_str, must, sh, unaccept_bridge,
};
use crate::{run, swarm_bin, Run};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

pub const CLIENT: &str = "swm-c";
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const BACKENDS_PER_NODE: usize = 2;
/// Ports every backend serves: whoami HTTP and UDP, and a TCP stream.
pub const HTTP_PORT: u16 = 8080;
pub const UDP_PORT: u16 = 8081;
pub const STREAM_PORT: u16 = 8090;
/// A task on node 1 that is no backend: the east-west client.
pub const TASK: &str = "swm-t1";
pub const TASK_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 101, 50);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn node_ns(i: usize) -> String {
    format!("swm-n{i}")
}
pub fn node_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 10 + i as u8)
}
pub fn backend_name(i: usize, j: usize) -> String {
    format!("b{i}{j}")
}
pub fn backend_addr(i: usize, j: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 100 + i as u8, 10 + j as u8)
}
fn pin_dir(i: usize) -> String {
    format!("/sys/fs/bpf/swm-n{i}")
}
const LAB_PIN_DIR: &str = "/sys/fs/bpf/swm-lab";

pub struct MeshLab {
    pub nodes: usize,
    /// "xdp" or "iptables": the `swarm mesh --mode` under test.
    pub mode: &'static str,
    procs: Vec<Child>,
    _serial: MutexGuard<'static, ()>,
}

impl MeshLab {
    /// Build the topology (after removing any leftover of an earlier run)
    /// and attach the data plane in `mode` on every node.
    pub fn up(nodes: usize, mode: &'static str) -> MeshLab {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        teardown(nodes.max(3));
        let mut lab = MeshLab {
            nodes,
            mode,
            procs: Vec::new(),
            _serial: serial,
        };
        must(&["ip", "link", "add", "swm-br0", "type", "bridge"]);
        must(&["ip", "link", "set", "swm-br0", "up"]);
        accept_bridge("swm-br0");
        add_host("swm-br0", CLIENT, "swm-c", CLIENT_ADDR);
        // Packets from a real client carry full checksums; a veth would
        // leave them to an offload that never happens once XDP forwards them.
        must(&[
            "ip", "netns", "exec", CLIENT, "ethtool", "-K", "eth0", "tx", "off",
        ]);
        let whoami = whoami_bin();
        let stream = crate::repo_root().join("tests/fixtures/stream_server.py");
        for i in 1..=nodes {
            let ns = node_ns(i);
            add_host("swm-br0", &ns, &ns, node_addr(i));
            let gw = Ipv4Addr::new(198, 19, 100 + i as u8, 1);
            add_gateway(&ns, "swm-gw", gw);
            for j in 1..=BACKENDS_PER_NODE {
                let b = format!("swm-b{i}{j}");
                add_task(&ns, "swm-gw", &b, &format!("b{j}"), backend_addr(i, j), gw);
                let name = backend_name(i, j);
                lab.spawn(
                    Command::new("ip")
                        .args(["netns", "exec", &b])
                        .arg(&whoami)
                        .env("WHOAMI_NAME", &name)
                        .env("PORT", HTTP_PORT.to_string())
                        .env("UDP_PORT", UDP_PORT.to_string()),
                );
                lab.spawn(
                    Command::new("ip")
                        .args(["netns", "exec", &b, "python3"])
                        .arg(&stream)
                        .args([name.as_str(), &STREAM_PORT.to_string()]),
                );
            }
            if i == 1 {
                add_task(&ns, "swm-gw", TASK, "t1", TASK_ADDR, gw);
            }
            // Remote backends are reached through the other nodes' subnets.
            for k in 1..=nodes {
                if k != i {
                    must(&[
                        "ip",
                        "-n",
                        &ns,
                        "route",
                        "add",
                        &format!("198.19.{}.0/24", 100 + k),
                        "via",
                        &node_addr(k).to_string(),
                    ]);
                }
            }
        }
        lab.wait_for_backends();
        lab.attach();
        lab
    }

    /// Poll until every backend process accepts connections.
    fn wait_for_backends(&self) {
        for i in 1..=self.nodes {
            for j in 1..=BACKENDS_PER_NODE {
                let addr = backend_addr(i, j);
                crate::wait_for(
                    &format!("backend {} to listen", backend_name(i, j)),
                    std::time::Duration::from_secs(20),
                    || {
                        let ready = in_netns(&node_ns(i), move || {
                            [HTTP_PORT, STREAM_PORT].iter().all(|&p| {
                                std::net::TcpStream::connect_timeout(
                                    &(addr, p).into(),
                                    std::time::Duration::from_millis(200),
                                )
                                .is_ok()
                            })
                        });
                        ready.then_some(())
                    },
                );
            }
        }
    }

    fn spawn(&mut self, cmd: &mut Command) {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning a backend");
        self.procs.push(child);
    }

    /// `swarm ARGS...` inside node `i`.
    pub fn swarm(&self, i: usize, args: &[&str]) -> Run {
        let bin = swarm_bin();
        let ns = node_ns(i);
        let mut full = vec!["netns", "exec", &ns];
        full.push(bin.to_str().expect("utf-8 path"));
        full.extend_from_slice(args);
        run(Command::new("ip").args(&full))
    }

    /// `swarm mesh SUB ARGS... --mode MODE --pin-dir DIR` inside node `i`.
    fn mesh(&self, i: usize, sub: &str, args: &[&str]) -> Run {
        let dir = pin_dir(i);
        let mut full = vec!["mesh", sub];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--mode", self.mode, "--pin-dir", &dir]);
        let r = self.swarm(i, &full);
        assert_eq!(r.code, 0, "mesh {sub} on node {i}: {r:?}");
        r
    }

    /// Load and attach (or re-attach) the data plane on every node.
    pub fn attach(&self) {
        for i in 1..=self.nodes {
            if self.mode == "xdp" {
                let host_if = node_ns(i);
                let pass = run(Command::new(swarm_bin()).args([
                    "mesh",
                    "attach-peer-pass",
                    "--iface",
                    &host_if,
                    "--pin-dir",
                    LAB_PIN_DIR,
                ]));
                assert_eq!(pass.code, 0, "peer pass on {host_if}: {pass:?}");
            }
            let addr = node_addr(i).to_string();
            self.mesh(i, "attach", &["--iface", "eth0", "--node-addr", &addr]);
            if self.mode == "xdp" {
                // Every task port gets the east-west load balancer.
                let mut ports: Vec<String> =
                    (1..=BACKENDS_PER_NODE).map(|j| format!("b{j}")).collect();
                if i == 1 {
                    ports.push("t1".into());
                }
                for port in ports {
                    let r = self.swarm(
                        i,
                        &[
                            "mesh",
                            "attach-task",
                            "--iface",
                            &port,
                            "--pin-dir",
                            &pin_dir(i),
                        ],
                    );
                    assert_eq!(r.code, 0, "attach-task {port} on node {i}: {r:?}");
                }
                // Backends are the fast path's endpoints, as the agent
                // makes every task's ingress port.
                for j in 1..=BACKENDS_PER_NODE {
                    let b = format!("swm-b{i}{j}");
                    must(&[
                        "ip", "netns", "exec", &b, "ethtool", "-K", "eth0", "gro", "on",
                    ]);
                    let mac = mac_str(&b, "eth0");
                    let (addr, port) = (backend_addr(i, j).to_string(), format!("b{j}"));
                    let r = self.swarm(
                        i,
                        &[
                            "mesh",
                            "endpoint",
                            "--addr",
                            &addr,
                            "--iface",
                            &port,
                            "--mac",
                            &mac,
                            "--pin-dir",
                            &pin_dir(i),
                        ],
                    );
                    assert_eq!(r.code, 0, "endpoint {addr} on node {i}: {r:?}");
                }
            }
        }
    }

    /// Program `services` (JSON array of LbService) on every node.
    pub fn sync(&self, services: &Value) {
        let file = std::env::temp_dir().join(format!("swm-services-{}.json", std::process::id()));
        std::fs::write(&file, services.to_string()).expect("writing services file");
        for i in 1..=self.nodes {
            self.mesh(i, "sync", &[file.to_str().expect("utf-8 temp path")]);
        }
    }

    pub fn dump(&self, i: usize) -> Value {
        let r = self.mesh(i, "dump", &["--json", "--local"]);
        serde_json::from_str(&r.stdout).expect("dump is JSON")
    }
}

impl Drop for MeshLab {
    fn drop(&mut self) {
        // SWM_KEEP=1 leaves the topology up after a test, to look at it.
        if std::env::var_os("SWM_KEEP").is_some() {
            return;
        }
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        teardown(self.nodes.max(3));
    }
}

fn teardown(nodes: usize) {
    unaccept_bridge("swm-br0");
    for i in 1..=nodes {
        let _ = run(Command::new(swarm_bin()).args(["mesh", "detach", "--pin-dir", &pin_dir(i)]));
        for j in 1..=BACKENDS_PER_NODE {
            let b = format!("swm-b{i}{j}");
            // Backends left by a crashed run: kill what runs in the netns.
            let pids = sh(&["ip", "netns", "pids", &b]).stdout;
            for pid in pids.split_whitespace() {
                let _ = sh(&["kill", "-9", pid]);
            }
            let _ = sh(&["ip", "netns", "del", &b]);
        }
        let _ = sh(&["ip", "netns", "del", &node_ns(i)]);
        let _ = sh(&["ip", "link", "del", &node_ns(i)]);
    }
    let _ = sh(&["ip", "netns", "del", TASK]);
    let _ = sh(&["ip", "netns", "del", CLIENT]);
    let _ = sh(&["ip", "link", "del", "swm-c"]);
    let _ = sh(&["ip", "link", "del", "swm-br0"]);
    let _ = std::fs::remove_dir_all(LAB_PIN_DIR);
}

fn whoami_bin() -> std::path::PathBuf {
    let p = crate::repo_root().join("target/images/x86_64-unknown-linux-gnu/release/swarm-whoami");
    assert!(
        p.exists(),
        "{} missing: build it with scripts/images.sh",
        p.display()
    );
    p
}
