//! The BPF side of the data plane: programs written in C (in `bpf/`),
//! compiled by build.rs with clang for the BPF target and embedded here, and
//! the Rust mirror of their one ABI header (`include/swarm_abi.h`).
//! Policy lives in `swarm-mesh`; this crate only carries the programs.

pub mod abi;

/// XDP program for a node's underlay interface (`swarm_xdp_ingress`).
/// (ELF parsing needs the object aligned, hence `include_bytes_aligned!`.)
pub const XDP_MESH: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_mesh.o"));
/// tc egress program for a node's underlay interface (`swarm_tc_egress`).
pub const TC_EGRESS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tc_egress.o"));
/// tc program for both directions of a task's port (`swarm_tc_task`): the
/// east-west load balancer for connections to service VIPs.
pub const TC_TASK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tc_task.o"));
/// XDP program that passes everything (`swarm_xdp_pass`), for the far end of
/// a veth: the kernel accepts XDP_TX frames into a veth only when its peer
/// runs an XDP program.
pub const XDP_PASS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_pass.o"));
