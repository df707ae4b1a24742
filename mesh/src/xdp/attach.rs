//! Loading the programs and attaching them, or swapping them into the links
//! an earlier run pinned.

use super::{bpf, ip_be};
use crate::bpffs;
use crate::dataplane::DataplaneError;
use aya::maps::Array;
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::tc::{self, SchedClassifierLink, TcAttachType};
use aya::programs::{ProgramError, SchedClassifier, Xdp, XdpFlags};
use aya::EbpfLoader;
use std::net::Ipv4Addr;
use std::path::Path;
use swarm_ebpf::abi::{self, maps as names};

/// Load both programs and attach them to `iface`, replacing the programs in
/// links pinned by an earlier run. Returns the attach points.
pub fn attach(iface: &str, node_addr: Ipv4Addr, dir: &Path) -> Result<Vec<String>, DataplaneError> {
    bpffs::ensure(dir)?;
    let mut xdp_obj = EbpfLoader::new()
        .map_pin_path(dir)
        .load(swarm_ebpf::XDP_MESH)
        .map_err(|e| bpf("loading the XDP program")(e.to_string()))?;
    {
        let map = xdp_obj
            .map_mut(names::CONFIG)
            .ok_or_else(|| DataplaneError::Bpf("config map missing".into()))?;
        let mut config: Array<_, abi::Config> =
            Array::try_from(map).map_err(|e| bpf("config map")(e.to_string()))?;
        let cfg = abi::Config {
            node_addr: ip_be(node_addr),
            flags: 0,
        };
        config
            .set(0, cfg, 0)
            .map_err(|e| bpf("writing config")(e.to_string()))?;
    }
    let prog: &mut Xdp = xdp_obj
        .program_mut("swarm_xdp_ingress")
        .ok_or_else(|| DataplaneError::Bpf("program swarm_xdp_ingress missing".into()))?
        .try_into()
        .map_err(|e: ProgramError| bpf("XDP program")(e.to_string()))?;
    prog.load()
        .map_err(|e| bpf("verifying the XDP program")(format!("{e:#}")))?;
    let xdp_pin = dir.join(format!("link_xdp_{iface}"));
    let mode = if xdp_pin.exists() {
        let link = pinned_link::<aya::programs::xdp::XdpLink>(&xdp_pin)?;
        prog.attach_to_link(link)
            .map_err(|e| bpf("replacing the XDP program")(e.to_string()))?;
        "replaced"
    } else {
        let (id, mode) = match prog.attach(iface, XdpFlags::DRV_MODE) {
            Ok(id) => (id, "native"),
            Err(e) => {
                tracing::warn!(iface, error = %e, "native XDP unavailable; using generic (skb) mode");
                let id = prog
                    .attach(iface, XdpFlags::SKB_MODE)
                    .map_err(|e| bpf(format!("attaching XDP to {iface}"))(e.to_string()))?;
                (id, "generic")
            }
        };
        pin_link(prog.take_link(id), &xdp_pin)?;
        mode
    };

    attach_tc(
        swarm_ebpf::TC_EGRESS,
        "swarm_tc_egress",
        iface,
        TcAttachType::Egress,
        dir,
        "tc_egress",
    )?;
    Ok(vec![
        format!("xdp:{iface} ({mode})"),
        format!("tc-egress:{iface}"),
    ])
}

/// Keep a freshly attached link beyond this process by pinning it at `path`.
fn pin_link<L>(link: Result<L, ProgramError>, path: &Path) -> Result<(), DataplaneError>
where
    L: TryInto<FdLink, Error = LinkError>,
{
    let what = path.display();
    let link: FdLink = link
        .map_err(|e| bpf(format!("link for {what}"))(e.to_string()))?
        .try_into()
        .map_err(|e: LinkError| bpf(format!("link for {what} is not a bpf_link"))(e.to_string()))?;
    link.pin(path)
        .map_err(|e| bpf(format!("pinning {what}"))(e.to_string()))?;
    Ok(())
}

/// The link an earlier run pinned at `path`, to swap a new program into.
fn pinned_link<L>(path: &Path) -> Result<L, DataplaneError>
where
    L: TryFrom<FdLink, Error = LinkError>,
{
    let what = path.display();
    let link: FdLink = PinnedLink::from_pin(path)
        .map_err(|e| bpf(format!("opening {what}"))(e.to_string()))?
        .into();
    L::try_from(link).map_err(|e| bpf(format!("pinned link {what}"))(e.to_string()))
}

/// Load the tc program `name` from `object` (its maps reused from the pins
/// in `dir`) and attach it to `iface`, or swap it into the link pinned as
/// `link_<pin>_<iface>` by an earlier run.
fn attach_tc(
    object: &[u8],
    name: &str,
    iface: &str,
    direction: TcAttachType,
    dir: &Path,
    pin: &str,
) -> Result<(), DataplaneError> {
    let mut obj = EbpfLoader::new()
        .map_pin_path(dir)
        .load(object)
        .map_err(|e| bpf(format!("loading {name}"))(e.to_string()))?;
    let _ = tc::qdisc_add_clsact(iface); // already present is fine
    let prog: &mut SchedClassifier = obj
        .program_mut(name)
        .ok_or_else(|| DataplaneError::Bpf(format!("program {name} missing")))?
        .try_into()
        .map_err(|e: ProgramError| bpf(name)(e.to_string()))?;
    prog.load()
        .map_err(|e| bpf(format!("verifying {name}"))(format!("{e:#}")))?;
    let pin_path = dir.join(format!("link_{pin}_{iface}"));
    if pin_path.exists() {
        let link = pinned_link::<SchedClassifierLink>(&pin_path)?;
        prog.attach_to_link(link)
            .map_err(|e| bpf(format!("replacing {name}"))(e.to_string()))?;
    } else {
        let id = prog
            .attach(iface, direction)
            .map_err(|e| bpf(format!("attaching {name} to {iface}"))(e.to_string()))?;
        pin_link(prog.take_link(id), &pin_path)?;
    }
    Ok(())
}

/// Attach the east-west load balancer to both directions of a task's port
/// (`iface`, the node end of the task's veth).
pub fn attach_task(iface: &str, dir: &Path) -> Result<(), DataplaneError> {
    bpffs::ensure(dir)?;
    attach_tc(
        swarm_ebpf::TC_TASK,
        "swarm_tc_task",
        iface,
        TcAttachType::Ingress,
        dir,
        "tc_task_in",
    )?;
    attach_tc(
        swarm_ebpf::TC_TASK,
        "swarm_tc_task",
        iface,
        TcAttachType::Egress,
        dir,
        "tc_task_out",
    )
}

/// Drop the pinned links of a task port that is gone (the kernel detached
/// the programs with the device).
pub fn forget_task(iface: &str, dir: &Path) {
    for pin in ["tc_task_in", "tc_task_out"] {
        let _ = std::fs::remove_file(dir.join(format!("link_{pin}_{iface}")));
    }
}

/// Load and verify the pass-everything program, attach it to `iface` in
/// driver mode, and hand it with its link to `then` (the program goes when
/// this returns, and with it any link `then` did not pin).
fn with_pass_attached<T>(
    iface: &str,
    then: impl FnOnce(&mut Xdp, aya::programs::xdp::XdpLinkId) -> Result<T, DataplaneError>,
) -> Result<T, DataplaneError> {
    let mut obj = EbpfLoader::new()
        .load(swarm_ebpf::XDP_PASS)
        .map_err(|e| bpf("loading the pass program")(e.to_string()))?;
    let prog: &mut Xdp = obj
        .program_mut("swarm_xdp_pass")
        .ok_or_else(|| DataplaneError::Bpf("program swarm_xdp_pass missing".into()))?
        .try_into()
        .map_err(|e: ProgramError| bpf("pass program")(e.to_string()))?;
    prog.load()
        .map_err(|e| bpf("verifying the pass program")(e.to_string()))?;
    let id = prog
        .attach(iface, XdpFlags::DRV_MODE)
        .map_err(|e| bpf(format!("attaching XDP in driver mode to {iface}"))(e.to_string()))?;
    then(prog, id)
}

/// Attach the pass-everything program to `iface` (the host end of a node's
/// veth in a lab) so frames the node's XDP program transmits are accepted.
/// The link is pinned under `dir`, so it stays after this process exits.
pub fn attach_peer_pass(iface: &str, dir: &Path) -> Result<(), DataplaneError> {
    bpffs::ensure(dir)?;
    let pin = dir.join(format!("link_xdp_pass_{iface}"));
    if pin.exists() {
        return Ok(());
    }
    with_pass_attached(iface, |prog, id| pin_link(prog.take_link(id), &pin))
}

/// How the data plane's XDP program is or would be attached to `iface`:
/// Ok("attached") when swarm's program is pinned there under `dir`,
/// Ok("native") when the pass program attaches in driver mode (it is
/// detached again at once), or the reason driver mode failed.
pub fn probe_native(iface: &str, dir: &Path) -> Result<&'static str, DataplaneError> {
    if dir.join(format!("link_xdp_{iface}")).exists() {
        return Ok("attached");
    }
    with_pass_attached(iface, |prog, id| {
        prog.detach(id)
            .map_err(|e| bpf(format!("detaching the probe from {iface}"))(e.to_string()))?;
        Ok("native")
    })
}

/// Remove the links (detaching the programs) and every pinned map.
pub fn detach(dir: &Path) -> Result<(), DataplaneError> {
    bpffs::ensure(dir)?;
    std::fs::remove_dir_all(dir).map_err(|source| DataplaneError::Io {
        op: format!("removing {}", dir.display()),
        source,
    })
}
