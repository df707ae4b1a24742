//! Kernel networking for swarm nodes: the task sandbox's plumbing (a gateway
//! bridge per node, and a veth into each task's network namespace, through
//! rtnetlink), host-mode published ports, and the routing mesh (BPF loading,
//! Maglev tables, conntrack, and the iptables mode).

pub mod bpffs;
pub mod dataplane;
pub mod hostports;
pub mod iptables;
pub mod isolation;
pub mod link;
pub mod maglev;
pub mod overlay;
pub mod sandbox;
pub mod testrun;
pub mod xdp;
