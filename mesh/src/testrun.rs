//! The data plane's programs run on single packets through
//! BPF_PROG_TEST_RUN: the real programs and maps in the kernel, with no
//! interface attached. The packet tests (`tests/packets.rs`) and the packet
//! fuzz targets (`fuzz/`) drive them this way. Needs root and BPF.

use crate::bpffs;
use crate::dataplane::{Dataplane, DataplaneError, LbService};
use crate::xdp::XdpDataplane;
use aya::maps::Array;
use aya::programs::{ProgramError, SchedClassifier, Xdp};
use aya::{Ebpf, EbpfLoader};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use swarm_ebpf::abi;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

/// The smallest and largest packets the kernel's test run takes: an
/// Ethernet header, and what fits one page with the headroom.
pub const MIN_PACKET: usize = 14;
pub const MAX_PACKET: usize = 3_000;

/// The XDP program and both tc programs, loaded with maps of their own
/// (pinned in a private directory, shared by name as on a node) for the
/// node `node`.
pub struct Programs {
    // The objects own the program and map file descriptors.
    _objects: Vec<Ebpf>,
    dir: PathBuf,
    xdp: i32,
    tc_task: i32,
    tc_egress: i32,
    pub dataplane: XdpDataplane,
}

impl Drop for Programs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bpf(what: &'static str) -> impl Fn(String) -> DataplaneError {
    move |e| DataplaneError::Bpf(format!("{what}: {e} (this needs root and BPF)"))
}

impl Programs {
    pub fn load(node: Ipv4Addr, services: &[LbService]) -> Result<Programs, DataplaneError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/swarm-testrun-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        bpffs::ensure(&dir)?;
        let load = |object: &[u8]| {
            EbpfLoader::new()
                .map_pin_path(&dir)
                .load(object)
                .map_err(|e| bpf("loading a BPF object")(e.to_string()))
        };
        let mut xdp = load(swarm_ebpf::XDP_MESH)?;
        let config = xdp
            .map_mut(abi::maps::CONFIG)
            .ok_or_else(|| DataplaneError::Bpf("config map missing".into()))?;
        Array::<_, abi::Config>::try_from(config)
            .and_then(|mut c| {
                c.set(
                    0,
                    abi::Config {
                        node_addr: u32::from_ne_bytes(node.octets()),
                        flags: 0,
                    },
                    0,
                )
            })
            .map_err(|e| bpf("writing the config map")(e.to_string()))?;
        let xdp_fd = {
            let prog: &mut Xdp = xdp
                .program_mut("swarm_xdp_ingress")
                .ok_or_else(|| DataplaneError::Bpf("swarm_xdp_ingress missing".into()))?
                .try_into()
                .map_err(|e: ProgramError| bpf("the XDP program")(e.to_string()))?;
            prog.load()
                .map_err(|e| bpf("verifying the XDP program")(format!("{e:#}")))?;
            prog.fd()
                .map_err(|e| bpf("the XDP program")(e.to_string()))?
                .as_fd()
                .as_raw_fd()
        };
        let mut task = load(swarm_ebpf::TC_TASK)?;
        let tc_task = classifier(&mut task, "swarm_tc_task")?;
        let mut egress = load(swarm_ebpf::TC_EGRESS)?;
        let tc_egress = classifier(&mut egress, "swarm_tc_egress")?;
        let mut dataplane = XdpDataplane::open(&dir)?;
        dataplane.sync(services)?;
        Ok(Programs {
            _objects: vec![xdp, task, egress],
            dir,
            xdp: xdp_fd,
            tc_task,
            tc_egress,
            dataplane,
        })
    }

    /// The XDP program on one packet: (verdict, the packet after).
    pub fn xdp(&self, pkt: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
        run(self.xdp, pkt)
    }

    /// The east-west program of a task's port.
    pub fn tc_task(&self, pkt: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
        run(self.tc_task, pkt)
    }

    /// The underlay's egress program (reverse NAT of replies).
    pub fn tc_egress(&self, pkt: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
        run(self.tc_egress, pkt)
    }
}

fn classifier(obj: &mut Ebpf, name: &'static str) -> Result<i32, DataplaneError> {
    let prog: &mut SchedClassifier = obj
        .program_mut(name)
        .ok_or_else(|| DataplaneError::Bpf(format!("{name} missing")))?
        .try_into()
        .map_err(|e: ProgramError| bpf("a tc program")(e.to_string()))?;
    prog.load()
        .map_err(|e| bpf("verifying a tc program")(format!("{e:#}")))?;
    Ok(prog
        .fd()
        .map_err(|e| bpf("a tc program")(e.to_string()))?
        .as_fd()
        .as_raw_fd())
}

/// The Internet checksum (RFC 1071) of `data`, on top of `initial` (a
/// pseudo-header's sum, or 0): what a header holds, and 0 over a header
/// whose checksum is right.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The part of `union bpf_attr` that BPF_PROG_TEST_RUN reads.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

fn run(fd: i32, pkt: &[u8]) -> std::io::Result<(u32, Vec<u8>)> {
    // Room for an encapsulation header in front.
    let mut out = vec![0u8; pkt.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: pkt.len() as u32,
        data_size_out: out.len() as u32,
        data_in: pkt.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: attr points at valid buffers of the sizes it states, and
    // lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok((attr.retval, out))
}
