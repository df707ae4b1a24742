//! Will own the BPF programs written in C (XDP routing mesh, service-VIP load
//! balancing, overlay helpers), the one ABI header shared with Rust, and the
//! build script that compiles them with clang-19. Filled in by the data-plane issue.
