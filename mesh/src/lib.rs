//! Kernel networking for swarm nodes. Today: the task sandbox's plumbing (a
//! gateway bridge per node, and a veth into each task's network namespace),
//! done through rtnetlink. The data-plane work adds BPF loading, Maglev
//! tables, conntrack and the iptables mode here.

pub mod bpffs;
pub mod dataplane;
pub mod iptables;
pub mod maglev;
pub mod sandbox;
pub mod xdp;
