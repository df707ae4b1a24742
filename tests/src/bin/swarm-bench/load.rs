//! The load generators: UDP frames (pktgen-style), TCP connects, and
//! request/response, each measured over a window.

use crate::topology::{
    backends, targets, CLIENT, NODES, PUB_CPS, PUB_RR, PUB_UDP, TCP_ACCEPT, TCP_ECHO, UDP_SINK,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_tests::netns::{in_netns, sh};

/// The MAC address of `dev` in namespace `ns`.
fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let out = sh(&["ip", "-n", ns, "link", "show", dev]).stdout;
    let hex = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("an Ethernet address");
    let b: Vec<u8> = hex
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    b.try_into().unwrap()
}

/// 64-byte UDP frames from the client, one per flow: 16 source addresses
/// (lab range, routed back to the client) times 4096 source ports, so the
/// load looks like many clients and spreads over every backend.
fn frames(mode: &str) -> Vec<Vec<u8>> {
    let src_mac = mac(CLIENT, "eth0");
    let to = targets(mode, PUB_UDP, UDP_SINK);
    let node_macs: Vec<[u8; 6]> = NODES.iter().map(|(ns, _, _)| mac(ns, "eth0")).collect();
    let mut out = Vec::new();
    for k in 0..(16 * 4096usize) {
        let dst = to[k % to.len()];
        // The router for a direct backend is its node; for the mesh, node A.
        let via = NODES
            .iter()
            .position(|(_, a, net)| *a == *dst.ip() || dst.ip().octets()[2] == *net)
            .unwrap_or(0);
        let dst_mac = node_macs[via];
        let src = Ipv4Addr::new(198, 18, 128 + (k / 4096) as u8, 2);
        let sport = 10_000 + (k % 4096) as u16;
        let mut f = Vec::with_capacity(64);
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
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
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        f.extend_from_slice(&30u16.to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
        f.extend_from_slice(&[0u8; 22]);
        out.push(f);
    }
    out
}

/// Packets the backends' interfaces have received, summed. Counting at the
/// interface measures what the mesh delivers, not how fast a backend's
/// socket can read (on this 2-core machine the sockets give out first).
fn backend_rx_packets() -> u64 {
    backends()
        .iter()
        .map(|(ns, _, _)| {
            let out = sh(&["ip", "-n", ns, "-s", "-j", "link", "show", "eth0"]).stdout;
            let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
            v[0]["stats64"]["rx"]["packets"]
                .as_u64()
                .expect("rx packets")
        })
        .sum()
}

/// UDP packets per second delivered to the backends, sent as fast as one
/// core can with AF_PACKET (pktgen-style: the client's own UDP stack is not
/// the limit).
pub fn udp_pps(mode: &str, window: Duration) -> f64 {
    let frames = frames(mode);
    let fd = in_netns(CLIENT, || {
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
    });
    let send_for = |d: Duration| {
        let end = Instant::now() + d;
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut _,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid; each points at one iovec that lives as long as `iov`.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut at = 0;
        while Instant::now() < end {
            let batch = 64.min(msgs.len() - at);
            // SAFETY: msgs[at..at+batch] are valid mmsghdrs.
            unsafe { libc::sendmmsg(fd, msgs[at..].as_mut_ptr(), batch as u32, 0) };
            at = (at + batch) % msgs.len();
        }
    };
    send_for(Duration::from_millis(300)); // create the flows, warm caches
    std::thread::sleep(Duration::from_millis(100));
    let before = backend_rx_packets();
    send_for(window);
    std::thread::sleep(Duration::from_millis(100)); // let queued packets land
                                                    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    (backend_rx_packets() - before) as f64 / window.as_secs_f64()
}

pub fn tcp_cps(mode: &str, window: Duration) -> f64 {
    let to = targets(mode, PUB_CPS, TCP_ACCEPT);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (to, stop, done) = (to.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                in_netns(CLIENT, move || {
                    let mut k = t;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(s) = TcpStream::connect_timeout(
                            &to[k % to.len()].into(),
                            Duration::from_secs(1),
                        ) {
                            // Close with a reset so client ports never pile up in TIME_WAIT.
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
                                    &linger as *const _ as *const libc::c_void,
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
    std::thread::sleep(Duration::from_millis(200));
    let before = done.load(Ordering::Relaxed);
    std::thread::sleep(window);
    let n = done.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    n as f64 / window.as_secs_f64()
}

/// (exchanges per second, p50 µs, p99 µs) over 4 persistent connections.
pub fn rr(mode: &str, window: Duration) -> (f64, f64, f64) {
    let to = targets(mode, PUB_RR, TCP_ECHO);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let to = to[t % to.len()];
            std::thread::spawn(move || {
                let mut c = in_netns(CLIENT, move || {
                    TcpStream::connect_timeout(&to.into(), Duration::from_secs(2)).unwrap()
                });
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
