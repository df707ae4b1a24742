//! The load generators, each measured over one window: UDP frames on
//! established flows and on new flows (pktgen-style), TCP connects, and
//! request/response. The generator runs on one core; the forwarding path
//! runs on the other (RPS, set up by the topology), whose busy time divided
//! by the packets delivered is the cost of one packet.

use crate::topology::{
    backends, CLIENT, NODES, PUB_CPS, PUB_RR, PUB_UDP, TCP_ACCEPT, TCP_ECHO, UDP_SINK,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_tests::netns::{in_netns, mac, sh};

/// Run the calling thread on `cpu` only.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "pinning to CPU{cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The cores: the generator's and the forwarding path's.
#[derive(Clone, Copy)]
pub struct Cores {
    pub generator: usize,
    pub forwarding: usize,
}

/// Busy and total time of one CPU so far, in clock ticks (/proc/stat).
fn cpu_ticks(cpu: usize) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&format!("cpu{cpu} ")))
        .unwrap_or_else(|| panic!("no cpu{cpu} in /proc/stat"));
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = v[3] + v[4];
    let total: u64 = v.iter().take(8).sum();
    (total - idle, total)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// One measured window of packets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    /// Packets the backends' interfaces received, per second.
    pub pps: f64,
    /// Forwarding-core time per delivered packet, µs.
    pub pkt_us: f64,
    /// How busy the forwarding core was (0..1).
    pub busy: f64,
    /// Frames the generator handed to the kernel, per second.
    pub offered: f64,
    /// sendmmsg calls that failed or sent short (no send buffer).
    pub send_errors: u64,
}

/// Packets the backends' interfaces have received, summed. Counting at the
/// interface measures what the mesh delivers, not how fast a socket reads.
fn backend_rx_packets() -> u64 {
    backends()
        .iter()
        .map(|(ns, _, _, _)| {
            let out = sh(&["ip", "-n", ns, "-s", "-j", "link", "show", "eth0"]).stdout;
            let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
            v[0]["stats64"]["rx"]["packets"]
                .as_u64()
                .expect("rx packets")
        })
        .sum()
}

/// Wait until the backends' counters stop moving (queued packets landed).
fn settle() -> u64 {
    let mut last = backend_rx_packets();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = backend_rx_packets();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Where the frames go: node A's published port, or (direct) the backends
/// themselves, round-robin, each through its own node.
pub fn targets(mode: &str, published: u16, backend_port: u16) -> Vec<SocketAddrV4> {
    if mode == "direct" {
        backends()
            .iter()
            .map(|(_, _, a, _)| SocketAddrV4::new(*a, backend_port))
            .collect()
    } else {
        vec![SocketAddrV4::new(NODES[0].1, published)]
    }
}

/// Builds 64-byte UDP frames from the client to `to`, for flow number k:
/// source 198.18.128.0/17 (routed back to the client) by k / 4096, source
/// port by k % 4096.
struct Frames {
    src_mac: [u8; 6],
    to: Vec<(SocketAddrV4, [u8; 6])>,
}

impl Frames {
    fn new(mode: &str) -> Frames {
        let node_macs: Vec<[u8; 6]> = NODES.iter().map(|(ns, _, _)| mac(ns, "eth0")).collect();
        let to = targets(mode, PUB_UDP, UDP_SINK)
            .into_iter()
            .map(|dst| {
                // The router for a direct backend is its node; for the mesh, node A.
                let via = NODES
                    .iter()
                    .position(|(_, a, net)| *a == *dst.ip() || dst.ip().octets()[2] == *net)
                    .unwrap_or(0);
                (dst, node_macs[via])
            })
            .collect();
        Frames {
            src_mac: mac(CLIENT, "eth0"),
            to,
        }
    }

    fn write(&self, k: u64, f: &mut [u8; 64]) {
        let (dst, dst_mac) = self.to[(k % self.to.len() as u64) as usize];
        let host = 128 * 256 + (k / 4096) % (128 * 256);
        let src = Ipv4Addr::new(198, 18, (host / 256) as u8, (host % 256) as u8);
        let sport = 10_000 + (k % 4096) as u16;
        f[0..6].copy_from_slice(&dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip.fill(0);
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&50u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let mut sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dst.port().to_be_bytes());
        f[38..40].copy_from_slice(&30u16.to_be_bytes());
        f[40..42].copy_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
        f[42..].fill(0);
    }
}

/// An AF_PACKET socket on the client's eth0 (pktgen-style: the client's
/// own UDP stack is not the limit).
fn packet_socket() -> i32 {
    in_netns(CLIENT, || {
        // SAFETY: plain socket calls; the results are checked.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = libc::if_nametoindex(c"eth0".as_ptr()) as i32;
            let rc = libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
            fd
        }
    })
}

/// Send flows `first..` in batches of 64 until `until`, or until `limit`
/// frames; `gap` between batches paces the sender. Returns (frames sent,
/// failed or short sendmmsg calls).
fn send(
    fd: i32,
    frames: &Frames,
    mut k: u64,
    wrap: Option<u64>,
    until: Instant,
    limit: u64,
    gap: Duration,
) -> (u64, u64) {
    let mut bufs = [[0u8; 64]; 64];
    let (mut sent, mut errors) = (0u64, 0u64);
    while Instant::now() < until && sent < limit {
        let n = 64.min(limit - sent) as usize;
        for b in bufs.iter_mut().take(n) {
            frames.write(wrap.map_or(k, |w| k % w), b);
            k += 1;
        }
        let mut iov: Vec<libc::iovec> = bufs[..n]
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdrs are valid; each points at one live iovec.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: msgs holds n valid mmsghdrs.
        let rc = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
        if rc < n as i32 {
            errors += 1;
        }
        sent += rc.max(0) as u64;
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    (sent, errors)
}

/// Steady flows: the 65,536 flows 0..65536, over and over.
pub const FLOWS: u64 = 16 * 4096;

/// Send every one of the `FLOWS` flows at a pace the path takes without
/// loss, so each exists before a window opens; slower if some were lost.
fn warm_up(fd: i32, frames: &Frames) {
    let mut gap = Duration::from_micros(400);
    for _ in 0..6 {
        let before = settle();
        let far = Instant::now() + Duration::from_secs(60);
        send(fd, frames, 0, Some(FLOWS), far, FLOWS, gap);
        let got = settle() - before;
        if got >= FLOWS {
            return;
        }
        gap *= 2;
    }
    eprintln!("bench: warning: the warm-up lost packets even at its slowest pace");
}

/// Measure one window of traffic from flow `first_flow` on (wrapping at
/// `wrap`, for established flows, which are warmed up first), the generator
/// pinned to its core; `before` runs as the window opens.
fn window_of(
    cores: Cores,
    frames: &Frames,
    window: Duration,
    before: impl FnOnce() + Send,
    first_flow: u64,
    wrap: Option<u64>,
) -> Window {
    let fd = packet_socket();
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            pin_to(cores.generator);
            if wrap.is_some() {
                warm_up(fd, frames);
            }
            before();
            let rx0 = settle();
            let (busy0, total0) = cpu_ticks(cores.forwarding);
            let start = Instant::now();
            let (sent, errors) = send(
                fd,
                frames,
                first_flow,
                wrap,
                start + window,
                u64::MAX,
                Duration::ZERO,
            );
            let secs = start.elapsed().as_secs_f64();
            let (busy1, total1) = cpu_ticks(cores.forwarding);
            let rx = settle() - rx0;
            let busy_s = (busy1 - busy0) as f64 / ticks_per_second();
            Window {
                pps: rx as f64 / secs,
                pkt_us: busy_s * 1e6 / rx.max(1) as f64,
                busy: (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
                offered: sent as f64 / secs,
                send_errors: errors,
            }
        })
        .join()
        .expect("generator thread")
    });
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    out
}

/// Established flows: every flow exists before the window opens.
pub fn udp_pps(mode: &str, cores: Cores, window: Duration) -> Window {
    udp_pps_then(mode, cores, window, || {})
}

/// `udp_pps`, calling `before` as the window opens (a profiler).
pub fn udp_pps_then(
    mode: &str,
    cores: Cores,
    window: Duration,
    before: impl FnOnce() + Send,
) -> Window {
    let frames = Frames::new(mode);
    window_of(cores, &frames, window, before, 0, Some(FLOWS))
}

/// Flows never seen before, one packet each: the cost of a new flow (a
/// Maglev pick and two map inserts, or a conntrack entry and a walk of the
/// nat rules). `next` is the first unused flow number, advanced past the
/// flows used; the nodes' conntrack tables are emptied first, so iptables
/// mode never runs into a full table.
pub fn udp_new_pps(mode: &str, cores: Cores, window: Duration, next: &mut u64) -> Window {
    let frames = Frames::new(mode);
    let flush = || {
        for (node, _, _) in NODES {
            let _ = sh(&["ip", "netns", "exec", node, "conntrack", "-F"]);
        }
    };
    let out = window_of(cores, &frames, window, flush, *next, None);
    // Far enough that the next call's flows are new too.
    *next += 4_000_000;
    out
}

/// New TCP connections per second over a window: connect, then close with
/// a reset (no TIME_WAIT), from two threads on the generator's core.
pub fn tcp_cps(mode: &str, cores: Cores, window: Duration) -> f64 {
    let to = targets(mode, PUB_CPS, TCP_ACCEPT);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (to, stop, done) = (to.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                in_netns(CLIENT, move || {
                    pin_to(cores.generator);
                    let mut k = t;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(s) = TcpStream::connect_timeout(
                            &to[k % to.len()].into(),
                            Duration::from_secs(1),
                        ) {
                            let linger = libc::linger {
                                l_onoff: 1,
                                l_linger: 0,
                            };
                            // SAFETY: a valid socket and a correctly sized option value.
                            unsafe {
                                libc::setsockopt(
                                    s.as_raw_fd(),
                                    libc::SOL_SOCKET,
                                    libc::SO_LINGER,
                                    (&linger as *const libc::linger).cast(),
                                    std::mem::size_of::<libc::linger>() as u32,
                                );
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        k += 1;
                    }
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = done.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(window);
    let n = done.load(Ordering::Relaxed) - before;
    let out = n as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    out
}

/// (exchanges per second, p50 µs, p99 µs) of 1-byte request/response over
/// 4 persistent connections, for one window.
pub fn rr(mode: &str, cores: Cores, window: Duration) -> (f64, f64, f64) {
    let to = targets(mode, PUB_RR, TCP_ECHO);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let to = to[t % to.len()];
            std::thread::spawn(move || {
                let mut c = in_netns(CLIENT, move || {
                    TcpStream::connect_timeout(&to.into(), Duration::from_secs(2)).unwrap()
                });
                pin_to(cores.generator);
                c.set_nodelay(true).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut lat = Vec::new();
                let mut b = [7u8; 1];
                let warm = Instant::now() + Duration::from_millis(200);
                while Instant::now() < warm {
                    c.write_all(&b).unwrap();
                    c.read_exact(&mut b).unwrap();
                }
                let end = Instant::now() + window;
                while Instant::now() < end {
                    let t0 = Instant::now();
                    c.write_all(&b).unwrap();
                    c.read_exact(&mut b).unwrap();
                    lat.push(t0.elapsed().as_secs_f64() * 1e6);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("rr thread"))
        .collect();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize];
    (
        all.len() as f64 / window.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    )
}
