//! Host checks before the daemon runs (`swarm check`, and the daemon at
//! start): each item is ok, warn or fail, with what was found and, when
//! not ok, the fix. The daemon refuses to start on a fail, so a host
//! problem is named once, up front, instead of as a later error from
//! whatever first trips on it.

use crate::agent::mesh::Mode;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Item {
    pub check: &'static str,
    pub status: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn item(check: &'static str, status: Level, detail: impl Into<String>, fix: Option<&str>) -> Item {
    Item {
        check,
        status,
        detail: detail.into(),
        fix: fix.map(str::to_string),
    }
}

/// What to check against.
pub struct Host {
    pub dataplane: Mode,
    pub pin_dir: PathBuf,
    /// The underlay interface to probe for native XDP (`swarm check`
    /// only: the daemon attaches for real right after its checks).
    pub underlay: Option<String>,
    /// The swarm port (2377/tcp) and the VXLAN port (4789/udp) must be
    /// free, or held by the running daemon (`daemon_socket` answers).
    pub ports: bool,
    pub daemon_socket: Option<PathBuf>,
}

/// The oldest kernel the XDP data plane is built for (BPF links, batched
/// map operations, bpf_ktime_get_coarse_ns).
const MIN_KERNEL: (u32, u32) = (5, 15);

/// `6.18.44-foo` → (6, 18).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The effective capability set from /proc/self/status.
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The interface of the IPv4 default route, from /proc/net/route.
pub fn default_route_iface(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
    })
}

/// The interface that holds IPv4 address `addr`.
pub fn iface_of(addr: std::net::Ipv4Addr) -> Option<String> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|i| {
        let a = i.address?;
        let v4 = a.as_sockaddr_in()?;
        (v4.ip() == addr).then_some(i.interface_name)
    })
}

/// The underlay interface: the one holding `advertise` when it is an
/// address, else the default route's.
pub fn underlay_iface(advertise: Option<&str>) -> Option<String> {
    match advertise.and_then(crate::types::ipv4_host) {
        Some(addr) => iface_of(addr),
        None => read("/proc/net/route")
            .as_deref()
            .and_then(default_route_iface),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn kernel() -> Vec<Item> {
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut out = vec![match kernel_version(release) {
        Some(v) if v >= MIN_KERNEL => item("kernel", Level::Ok, release, None),
        _ => item(
            "kernel",
            Level::Warn,
            format!("{release}: the XDP data plane needs Linux 5.15 or later"),
            Some("upgrade the kernel, or run the daemon with --dataplane iptables"),
        ),
    }];
    out.push(if Path::new("/sys/kernel/btf/vmlinux").exists() {
        item("btf", Level::Ok, "/sys/kernel/btf/vmlinux", None)
    } else {
        item(
            "btf",
            Level::Warn,
            "the kernel exposes no BTF (/sys/kernel/btf/vmlinux)",
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are)"),
        )
    });
    out
}

fn bpffs(host: &Host) -> Item {
    if host.dataplane == Mode::Iptables {
        return item("bpffs", Level::Ok, "not needed in iptables mode", None);
    }
    if swarm_mesh::bpffs::available() {
        item("bpffs", Level::Ok, "mounted at /sys/fs/bpf", None)
    } else {
        item(
            "bpffs",
            Level::Fail,
            "no BPF filesystem at /sys/fs/bpf (the XDP data plane pins its maps there)",
            Some("mount -t bpf bpffs /sys/fs/bpf (scripts/setup.sh does, with its alias for network namespaces), or run the daemon with --dataplane iptables"),
        )
    }
}

fn capabilities() -> Item {
    const NEED: [(u32, &str); 3] = [
        (12, "CAP_NET_ADMIN"),
        (21, "CAP_SYS_ADMIN"),
        (39, "CAP_BPF"),
    ];
    let Some(caps) = read("/proc/self/status")
        .as_deref()
        .and_then(effective_caps)
    else {
        return item(
            "capabilities",
            Level::Warn,
            "cannot read /proc/self/status",
            None,
        );
    };
    let missing: Vec<&str> = NEED
        .iter()
        .filter(|(bit, _)| caps & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        item(
            "capabilities",
            Level::Ok,
            "CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF",
            None,
        )
    } else {
        item(
            "capabilities",
            Level::Fail,
            format!("missing {}", missing.join(", ")),
            Some("run the daemon as root, or grant them (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_SYS_ADMIN CAP_BPF)"),
        )
    }
}

fn xdp(host: &Host) -> Option<Item> {
    if host.dataplane == Mode::Iptables {
        return None;
    }
    let iface = host.underlay.as_deref()?;
    Some(match swarm_mesh::xdp::probe_native(iface, &host.pin_dir) {
        Ok(how) => item("xdp", Level::Ok, format!("{iface}: {how}"), None),
        Err(e) => item(
            "xdp",
            Level::Warn,
            format!("{iface}: no native XDP ({e}); the data plane would run in generic mode, which is slower"),
            Some("use a NIC driver with native XDP (virtio_net, mlx5, i40e, ixgbe, ena, veth, ...)"),
        ),
    })
}

fn iptables() -> Item {
    match std::process::Command::new("iptables")
        .arg("--version")
        .output()
    {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            item("iptables", Level::Ok, v, None)
        }
        _ => item(
            "iptables",
            Level::Fail,
            "iptables is not installed or does not run",
            Some("apt-get install iptables (host-mode ports and iptables mode use it)"),
        ),
    }
}

fn bridge_netfilter() -> Item {
    match read("/proc/sys/net/bridge/bridge-nf-call-iptables") {
        Some(v) => item(
            "br_netfilter",
            Level::Ok,
            format!("loaded, bridge-nf-call-iptables={}", v.trim()),
            None,
        ),
        None => item(
            "br_netfilter",
            Level::Warn,
            "br_netfilter is not loaded: Docker's bridge networks expect it",
            Some("modprobe br_netfilter (and list it in /etc/modules-load.d/)"),
        ),
    }
}

fn forwarding() -> Item {
    match read("/proc/sys/net/ipv4/ip_forward")
        .as_deref()
        .map(str::trim)
    {
        Some("1") => item("ip_forward", Level::Ok, "net.ipv4.ip_forward=1", None),
        _ => item(
            "ip_forward",
            Level::Fail,
            "net.ipv4.ip_forward is off: tasks and the routing mesh cannot be reached",
            Some("sysctl -w net.ipv4.ip_forward=1, and keep it in /etc/sysctl.d/"),
        ),
    }
}

fn ports(host: &Host) -> Vec<Item> {
    if !host.ports {
        return Vec::new();
    }
    let daemon = host
        .daemon_socket
        .as_deref()
        .is_some_and(|s| std::os::unix::net::UnixStream::connect(s).is_ok());
    let tcp = std::net::TcpListener::bind(("0.0.0.0", crate::net::DEFAULT_PORT)).is_ok();
    let udp = std::net::UdpSocket::bind(("0.0.0.0", 4789)).is_ok();
    let port =
        |check, free: bool, what: &str, other: &str| {
            match (free, daemon) {
        (true, _) => item(check, Level::Ok, format!("{what} free"), None),
        (false, true) => item(check, Level::Ok, format!("{what} held by the running daemon"), None),
        (false, false) => item(
            check,
            Level::Fail,
            format!("{what} is in use by another program ({other})"),
            Some("stop it (`ss -lntup` names it), or leave the other swarm (`docker swarm leave`)"),
        ),
    }
        };
    vec![
        port("port 2377/tcp", tcp, "2377/tcp", "Docker Swarm uses it"),
        port("port 4789/udp", udp, "4789/udp", "another VXLAN overlay"),
    ]
}

async fn docker() -> Item {
    let version = async {
        let d = bollard::Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
        d.version().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(5), version).await {
        Ok(Ok(v)) => item(
            "docker",
            Level::Ok,
            format!("Docker Engine {}", v.version.unwrap_or_default()),
            None,
        ),
        Ok(Err(e)) => item(
            "docker",
            Level::Fail,
            format!("cannot reach the Docker Engine: {e}"),
            Some("start it (systemctl start docker); tasks run as its containers"),
        ),
        Err(_) => item(
            "docker",
            Level::Fail,
            "the Docker Engine did not answer within 5 s",
            Some("check `systemctl status docker`"),
        ),
    }
}

/// Skew up to which clocks count as in step, and past which certificates
/// (valid from the moment the CA signs them) may look not yet valid.
const SKEW_WARN_MS: i64 = 1_000;
const SKEW_FAIL_MS: i64 = 60_000;
const NTP_FIX: &str =
    "keep the clocks in step with NTP (systemd-timesyncd or chrony) on every node";

/// One item per manager: how far its clock is from this node's.
pub fn clock(managers: &[crate::api::pb::ManagerClock]) -> Vec<Item> {
    managers
        .iter()
        .map(|m| {
            if !m.error.is_empty() {
                let detail = format!("cannot ask manager {} for its time: {}", m.addr, m.error);
                return item(
                    "clock skew",
                    Level::Warn,
                    detail,
                    Some("check that the manager is up and reachable on its address"),
                );
            }
            let detail = format!(
                "manager {}: {:+} ms (round trip {} ms)",
                m.addr, m.offset_ms, m.rtt_ms
            );
            match m.offset_ms.abs() {
                s if s < SKEW_WARN_MS => item("clock skew", Level::Ok, detail, None),
                s if s < SKEW_FAIL_MS => item("clock skew", Level::Warn, detail, Some(NTP_FIX)),
                _ => item("clock skew", Level::Fail, detail, Some(NTP_FIX)),
            }
        })
        .collect()
}

/// The clock items, when a running daemon on `host.daemon_socket` is in a
/// swarm (it asks the managers over the node API).
async fn clock_of_daemon(host: &Host) -> Vec<Item> {
    let Some(socket) = &host.daemon_socket else {
        return Vec::new();
    };
    if std::os::unix::net::UnixStream::connect(socket).is_err() {
        return Vec::new();
    }
    let asked = async {
        let mut c = crate::api::client::connect(&format!("unix://{}", socket.display()))
            .await
            .map_err(|e| e.to_string())?;
        c.clock_skew(crate::api::pb::ClockSkewRequest {})
            .await
            .map_err(|s| s.message().to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), asked).await {
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            if resp.joined && resp.managers.is_empty() {
                let detail = "this node is the only manager: no other clock to compare";
                return vec![item("clock skew", Level::Ok, detail, None)];
            }
            clock(&resp.managers)
        }
        Ok(Err(e)) => vec![item(
            "clock skew",
            Level::Warn,
            format!("the daemon could not measure it: {e}"),
            None,
        )],
        Err(_) => vec![item(
            "clock skew",
            Level::Warn,
            "the daemon did not answer within 10 s",
            None,
        )],
    }
}

/// Every check, in a fixed order.
pub async fn run(host: &Host) -> Vec<Item> {
    let mut out = kernel();
    out.push(bpffs(host));
    out.push(capabilities());
    out.extend(xdp(host));
    out.push(iptables());
    out.push(bridge_netfilter());
    out.push(forwarding());
    out.extend(ports(host));
    out.push(docker().await);
    out.extend(clock_of_daemon(host).await);
    out
}

/// The worst level among `items`.
pub fn worst(items: &[Item]) -> Level {
    items.iter().map(|i| i.status).max().unwrap_or(Level::Ok)
}

/// One line per item: `ok    kernel         6.18.44`, with the fix after.
pub fn render(items: &[Item]) -> String {
    let mut out = String::new();
    for i in items {
        out.push_str(&format!(
            "{:<5} {:<14} {}",
            i.status.as_str(),
            i.check,
            i.detail
        ));
        if let Some(fix) = &i.fix {
            out.push_str(&format!("\n{:20}fix: {fix}", ""));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse_to_major_and_minor() {
        assert_eq!(kernel_version("6.18.44-cloud-amd64"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0"), Some((5, 4)));
        assert!(kernel_version("5.4.0").unwrap() < MIN_KERNEL);
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn capabilities_and_the_default_route_are_read_from_proc() {
        let status = "Name:\tswarm\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let caps = effective_caps(status).unwrap();
        assert!(caps & (1 << 39) != 0 && caps & (1 << 12) != 0);
        assert_eq!(effective_caps("CapEff:\t0000000000001000\n"), Some(1 << 12));
        let route = "Iface\tDestination\tGateway\tFlags\n\
                     docker0\t000011AC\t00000000\t0001\n\
                     eth0\t00000000\t010012AC\t0003\n";
        assert_eq!(default_route_iface(route).as_deref(), Some("eth0"));
        assert_eq!(default_route_iface("Iface\tDestination\n"), None);
    }

    #[test]
    fn clock_skew_is_ok_under_a_second_and_fails_past_a_minute() {
        let m = |offset_ms, error: &str| crate::api::pb::ManagerClock {
            addr: "10.0.0.1:2377".into(),
            offset_ms,
            rtt_ms: 1,
            error: error.into(),
        };
        let items = clock(&[m(-3, ""), m(2_500, ""), m(-90_000, ""), m(0, "refused")]);
        let levels: Vec<Level> = items.iter().map(|i| i.status).collect();
        assert_eq!(levels, [Level::Ok, Level::Warn, Level::Fail, Level::Warn]);
        assert_eq!(
            items[0].detail,
            "manager 10.0.0.1:2377: -3 ms (round trip 1 ms)"
        );
        assert_eq!(
            items[1].detail,
            "manager 10.0.0.1:2377: +2500 ms (round trip 1 ms)"
        );
        assert!(items[2].fix.as_deref().unwrap().contains("NTP"));
        assert!(items[3].detail.contains("refused"), "{}", items[3].detail);
    }

    #[test]
    fn a_fail_outranks_a_warn_and_every_fix_is_printed() {
        let items = vec![
            item("kernel", Level::Ok, "6.18", None),
            item("btf", Level::Warn, "none", Some("rebuild")),
            item(
                "bpffs",
                Level::Fail,
                "not mounted",
                Some("mount -t bpf bpffs /sys/fs/bpf"),
            ),
        ];
        assert_eq!(worst(&items), Level::Fail);
        assert_eq!(worst(&items[..2]), Level::Warn);
        let text = render(&items);
        assert!(text.starts_with("ok    kernel         6.18\n"), "{text}");
        assert!(
            text.contains("fail  bpffs          not mounted\n"),
            "{text}"
        );
        assert!(
            text.contains("fix: mount -t bpf bpffs /sys/fs/bpf"),
            "{text}"
        );
    }
}
