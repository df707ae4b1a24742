//! The control API between the CLI and its local daemon (gRPC over a unix
//! socket). Objects travel as JSON in the schema `--format json` prints.

pub mod client;
pub mod resolve;
pub mod secret;
pub mod server;
mod stack;
mod task_io;

pub mod pb {
    tonic::include_proto!("swarm.control.v1");
}

/// Task I/O through the leader's broker (logs, exec): node-to-node, and
/// carried as they are by the control API.
pub mod broker_pb {
    tonic::include_proto!("swarm.broker.v1");
}

/// Node-to-node messages (served over mutual TLS, see `net`).
pub mod cluster_pb {
    tonic::include_proto!("swarm.cluster.v1");
}
