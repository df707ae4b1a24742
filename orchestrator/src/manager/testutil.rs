//! Builders for the pure decision tests of the manager loops.

use crate::state::{Command, State};
use crate::types::*;

pub fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        raft_id: 1,
        hostname: id.into(),
        role: NodeRole::Manager,
        availability: Availability::Active,
        state: NodeState::Ready,
        addr: "198.18.0.11".into(),
        engine_version: String::new(),
        nano_cpus: 0,
        memory_bytes: 0,
        labels: Default::default(),
        gateway_subnet: None,
        attachments: Vec::new(),
        meta: Meta::default(),
    }
}

pub fn service(id: &str, mode: Mode, replicas: u64) -> Service {
    Service {
        id: id.into(),
        spec: ServiceSpec::new(&format!("svc-{id}"), "img", mode, replicas),
        endpoint: Default::default(),
        previous_spec: None,
        update_status: None,
        meta: Meta {
            version: 1,
            ..Meta::default()
        },
    }
}

pub fn task(id: &str, svc: &Service, slot: u64, state: TaskState) -> Task {
    Task {
        id: id.into(),
        service_id: svc.id.clone(),
        service_name: svc.spec.name.clone(),
        slot,
        node_id: Some("n1".into()),
        spec: svc.spec.clone(),
        spec_version: svc.meta.version,
        desired_state: TaskState::Running,
        status: TaskStatus {
            timestamp: 1_000,
            ..TaskStatus::new(state, "")
        },
        meta: Meta::new(1_000),
        restart_at: None,
        attempt: 0,
        networks: Some(Vec::new()),
    }
}

pub fn state(nodes: &[Node], services: &[Service], tasks: &[Task]) -> State {
    let mut st = State {
        cluster: None,
        nodes: nodes.iter().map(|n| (n.id.clone(), n.clone())).collect(),
        services: services
            .iter()
            .map(|s| (s.id.clone(), std::sync::Arc::new(s.clone())))
            .collect(),
        tasks: tasks
            .iter()
            .map(|t| (t.id.clone(), std::sync::Arc::new(t.clone())))
            .collect(),
        ..State::default()
    };
    st.reindex();
    st
}

/// The first entry of a swarm whose first node is `node("n1")`.
pub fn init_cluster() -> Command {
    Command::InitCluster {
        cluster: ClusterInfo {
            id: "c1".into(),
            created_at: 1,
            ca_cert_pem: String::new(),
            ca_key: Sealed(b"k".to_vec()),
            worker_secret: Sealed(b"w".to_vec()),
            manager_secret: Sealed(b"m".to_vec()),
            unlock_key: None,
            cert_expiry_ms: 600_000,
            heartbeat_ms: 1_000,
            addr_pool: default_addr_pool(),
            pool_mask_len: 24,
            rotation: None,
        },
        node: node("n1"),
        ingress_id: "ingress".into(),
    }
}
