//! The daemon side of the control API. Every handler validates its input and
//! either commits one command through raft or changes nothing.

use super::pb::{self, control_server::Control};
use crate::daemon::Daemon;
use crate::daemon::InitOptions;
use crate::pki::{self, token, token::JoinToken};
use crate::state::{Command, Rejection, State};
use crate::store::StoreError;
use crate::types::{
    default_addr_pool, new_id, validate_name, Network, NetworkSpec, DEFAULT_POOL_MASK_LEN,
};
use crate::types::{
    now_ms, Mode, NodeRole, NodeState, Service, ServicePatch, ServiceSpec, MANUAL_ROLLBACK,
};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

pub struct ControlService {
    daemon: Arc<Daemon>,
}

const NOT_A_MANAGER: &str = "this node is not a swarm manager. Use \"swarm init\" or \"swarm join\" to connect this node to a swarm and try again";

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// Errors of init and join: the message says what to do.
fn precondition(e: anyhow::Error) -> Status {
    Status::failed_precondition(format!("{e:#}"))
}

/// What a new or changed spec must satisfy before it is proposed; names
/// in it become IDs.
fn check_spec(st: &State, spec: &mut ServiceSpec) -> Result<(), Status> {
    if spec.image.trim().is_empty() {
        return Err(Status::invalid_argument("an image is required"));
    }
    spec.placement
        .validate()
        .map_err(Status::invalid_argument)?;
    crate::ports::validate(&spec.ports).map_err(Status::invalid_argument)?;
    super::resolve::service_spec(st, spec)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("cluster objects always serialize")
}

impl ControlService {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ControlService { daemon }
    }

    pub fn into_server(self) -> pb::control_server::ControlServer<Self> {
        pb::control_server::ControlServer::new(self)
    }

    /// A new root CA for a rotation, cross-signed by the current one, its
    /// key sealed as the CA key is.
    fn new_root(&self) -> Result<crate::types::CaRotation, Status> {
        use crate::keyring::Field;
        let st = self.manager_state()?;
        let cluster = st.cluster.as_ref().expect("manager_state checked");
        let keyring = &self.daemon.keyring;
        let unavailable = |e: &dyn std::fmt::Display| Status::unavailable(e.to_string());
        let old = pki::RootCa {
            cert_pem: cluster.ca_cert_pem.clone(),
            key_pem: keyring
                .open_text(Field::CaKey, &cluster.ca_key)
                .map_err(|e| unavailable(&e))?,
        };
        let new = pki::RootCa::create(&cluster.id).map_err(internal)?;
        Ok(crate::types::CaRotation {
            name: pki::ca_name(&new.cert_pem).map_err(internal)?,
            cross_signed_pem: old.cross_sign(&new).map_err(internal)?,
            ca_key: keyring
                .seal_field(Field::CaKey, new.key_pem.as_bytes())
                .map_err(|e| unavailable(&e))?,
            ca_cert_pem: new.cert_pem,
            renewed: Default::default(),
        })
    }

    /// The current state, if this node is a manager of an initialised swarm.
    fn manager_state(&self) -> Result<Arc<State>, Status> {
        if self.daemon.locked() {
            return Err(Status::failed_precondition(crate::daemon::LOCKED));
        }
        let st = self.daemon.store.state();
        // A demoted manager keeps a stale copy of the state: not to be served.
        let demoted = self
            .daemon
            .store
            .peers()
            .tls()
            .is_some_and(|t| t.identity().role != NodeRole::Manager);
        if st.cluster.is_none() || demoted {
            return Err(Status::failed_precondition(NOT_A_MANAGER));
        }
        Ok(st)
    }

    /// Change a service as `change` says, on top of the latest version: a
    /// concurrent writer (the allocator, another client) makes it re-read
    /// and try again rather than fail. `change` sees the state it reads
    /// from, and may refuse.
    async fn change_service(
        &self,
        key: &str,
        change: impl Fn(&State, &mut Service) -> Result<(), Status>,
    ) -> Result<Service, Status> {
        let mut tries = 0;
        loop {
            let st = self.manager_state()?;
            let cur = self.find_service(key)?;
            let mut next = cur.clone();
            change(&st, &mut next)?;
            next.meta.updated_at = now_ms();
            let cmd = Command::UpdateService {
                service: next,
                expected_version: cur.meta.version,
            };
            match self.daemon.store.write(cmd).await {
                Ok(()) => return self.find_service(&cur.id),
                Err(StoreError::Rejected(Rejection::Conflict { .. })) if tries < 5 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn find_network(&self, key: &str) -> Result<Network, Status> {
        let st = self.manager_state()?;
        st.find_network(key)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("network {key} not found")))
    }

    fn find_service(&self, key: &str) -> Result<Service, Status> {
        let st = self.manager_state()?;
        st.find_service(key)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("service {key} not found")))
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn info(
        &self,
        _req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let st = self.daemon.store.state();
        let raft = self.daemon.store.raft_metrics().borrow().clone();
        Ok(Response::new(pb::InfoResponse {
            node_id: self.daemon.identity.node_id.clone(),
            hostname: self.daemon.config.hostname.clone(),
            // A worker holds no cluster state, but its certificate says it
            // is in a swarm.
            swarm_state: if self.daemon.locked() {
                "locked"
            } else if st.cluster.is_some() || self.daemon.store.peers().tls().is_some() {
                "active"
            } else {
                "inactive"
            }
            .into(),
            cluster_id: st
                .cluster
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default(),
            is_leader: self.daemon.store.is_leader(),
            advertise_addr: self.daemon.advertise(),
            leader_raft_id: raft.current_leader.unwrap_or(0),
            raft_term: raft.current_term,
            dataplane: self
                .daemon
                .mesh
                .get()
                .map(|m| m.lock().expect("mesh lock").mode.as_str().to_string())
                .unwrap_or_default(),
            version: crate::VERSION.into(),
            commit: crate::COMMIT.into(),
            nodes: st.nodes.len() as u32,
            managers: st
                .nodes
                .values()
                .filter(|n| n.role == crate::types::NodeRole::Manager)
                .count() as u32,
            ca_expiry: st
                .cluster
                .as_ref()
                .and_then(|c| crate::pki::not_after(&c.ca_cert_pem).ok())
                .unwrap_or(0),
            autolock: st.cluster.as_ref().is_some_and(|c| c.unlock_key.is_some()),
        }))
    }

    async fn init(
        &self,
        req: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let req = req.into_inner();
        let d = &self.daemon;
        d.set_advertise(&req.advertise_addr).map_err(internal)?;
        let or = |ms: u64, default: Duration| {
            if ms == 0 {
                default
            } else {
                Duration::from_millis(ms)
            }
        };
        let addr_pool = if req.default_addr_pool.is_empty() {
            default_addr_pool()
        } else {
            req.default_addr_pool
                .iter()
                .map(|p| {
                    p.parse().map_err(|_| {
                        Status::invalid_argument(format!(
                            "invalid --default-addr-pool {p:?}: use CIDR notation such as 10.20.0.0/16"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let pool_mask_len = match req.default_addr_pool_mask_length {
            0 => DEFAULT_POOL_MASK_LEN,
            n => u8::try_from(n).unwrap_or(u8::MAX),
        };
        crate::network::check_pool(&addr_pool, pool_mask_len).map_err(Status::invalid_argument)?;
        let cert_expiry = or(req.cert_expiry_ms, pki::DEFAULT_CERT_EXPIRY);
        pki::check_cert_expiry(cert_expiry).map_err(Status::invalid_argument)?;
        let heartbeat = or(req.heartbeat_ms, Duration::from_secs(1));
        if !(Duration::from_millis(50)..=Duration::from_secs(3600)).contains(&heartbeat) {
            return Err(Status::invalid_argument(format!(
                "--dispatcher-heartbeat {heartbeat:?} is outside 50ms-1h"
            )));
        }
        let opts = InitOptions {
            cert_expiry,
            heartbeat,
            addr_pool,
            pool_mask_len,
        };
        let cluster_id = d.init(opts).await.map_err(precondition)?;
        let unlock_key = match req.autolock {
            true => d.set_autolock(true).await.map_err(precondition)?,
            false => None,
        };
        Ok(Response::new(pb::InitResponse {
            node_id: d.identity.node_id.clone(),
            cluster_id,
            unlock_key: unlock_key.unwrap_or_default(),
        }))
    }

    async fn update_swarm(
        &self,
        req: Request<pb::UpdateSwarmRequest>,
    ) -> Result<Response<pb::UnlockKeyResponse>, Status> {
        self.manager_state()?;
        let unlock_key = match req.into_inner().autolock {
            Some(on) => self.daemon.set_autolock(on).await.map_err(precondition)?,
            None => None,
        };
        Ok(Response::new(pb::UnlockKeyResponse {
            unlock_key: unlock_key.unwrap_or_default(),
        }))
    }

    async fn unlock_key(
        &self,
        req: Request<pb::UnlockKeyRequest>,
    ) -> Result<Response<pb::UnlockKeyResponse>, Status> {
        self.manager_state()?;
        let unlock_key = self
            .daemon
            .unlock_key_text(req.into_inner().rotate)
            .await
            .map_err(precondition)?;
        Ok(Response::new(pb::UnlockKeyResponse { unlock_key }))
    }

    async fn unlock(
        &self,
        req: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        self.daemon
            .unlock(&req.into_inner().key)
            .await
            .map_err(precondition)?;
        Ok(Response::new(pb::UnlockResponse {}))
    }

    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let req = req.into_inner();
        let d = &self.daemon;
        d.set_advertise(&req.advertise_addr).map_err(internal)?;
        let (node_id, role) = d
            .join(&req.token, &req.remote_addr)
            .await
            .map_err(precondition)?;
        Ok(Response::new(pb::JoinResponse {
            node_id,
            role: role.as_str().into(),
        }))
    }

    async fn leave(
        &self,
        req: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveResponse>, Status> {
        self.daemon
            .leave(req.into_inner().force)
            .await
            .map_err(precondition)?;
        Ok(Response::new(pb::LeaveResponse {}))
    }

    async fn join_token(
        &self,
        req: Request<pb::JoinTokenRequest>,
    ) -> Result<Response<pb::JoinTokenResponse>, Status> {
        let req = req.into_inner();
        let role: NodeRole = req.role.parse().map_err(Status::invalid_argument)?;
        let keyring = &self.daemon.keyring;
        let field = crate::keyring::Field::JoinSecret(role);
        if req.rotate {
            let secret = keyring
                .seal_field(field, token::new_secret().as_bytes())
                .map_err(|e| Status::unavailable(e.to_string()))?;
            self.daemon
                .store
                .write(Command::SetJoinSecret { role, secret })
                .await
                .map_err(Status::from)?;
        }
        let st = self.manager_state()?;
        let cluster = st.cluster.as_ref().expect("manager_state checked");
        let token = JoinToken {
            ca_digest: pki::ca_digest(&cluster.ca_cert_pem).map_err(internal)?,
            secret: keyring
                .open_text(field, cluster.join_secret(role))
                .map_err(|e| Status::unavailable(e.to_string()))?,
        };
        Ok(Response::new(pb::JoinTokenResponse {
            token: token.to_string(),
            manager_addr: self.daemon.advertise(),
        }))
    }

    async fn ca(&self, req: Request<pb::CaRequest>) -> Result<Response<pb::CaResponse>, Status> {
        if req.into_inner().rotate {
            let rotation = self.new_root()?;
            let store = &self.daemon.store;
            store
                .write(Command::StartCaRotation(rotation))
                .await
                .map_err(Status::from)?;
            // Forwarded to the leader from here, the write must be seen
            // here before it is reported, or a waiting CLI would see no
            // rotation. Other reads answer from the local state, as every
            // read does.
            store.read_barrier().await.map_err(Status::from)?;
        }
        let st = self.manager_state()?;
        let cluster = st.cluster.as_ref().expect("manager_state checked");
        let ca_pem = cluster.issuing_ca().0.to_string();
        let (renewed, nodes) = st.ca_rotation_progress().unwrap_or((0, 0));
        Ok(Response::new(pb::CaResponse {
            ca_digest: pki::ca_digest(&ca_pem).map_err(internal)?,
            ca_pem,
            rotating: cluster.rotation.is_some(),
            renewed: renewed as u32,
            nodes: nodes as u32,
            waiting: st
                .ca_rotation_waits_for()
                .unwrap_or_default()
                .into_iter()
                .map(String::from)
                .collect(),
        }))
    }

    async fn create_service(
        &self,
        req: Request<pb::CreateServiceRequest>,
    ) -> Result<Response<pb::ServiceResponse>, Status> {
        let st = self.manager_state()?;
        let mut spec: ServiceSpec = serde_json::from_str(&req.into_inner().spec_json)
            .map_err(|e| Status::invalid_argument(format!("invalid service spec: {e}")))?;
        if spec.name.is_empty() {
            spec.name = generated_name();
        }
        validate_name("service", &spec.name).map_err(Status::invalid_argument)?;
        if spec.mode == Mode::Global {
            spec.replicas = 0;
        }
        check_spec(&st, &mut spec)?;
        let now = now_ms();
        let svc = Service::new(new_id(), spec, now);
        let id = svc.id.clone();
        self.daemon
            .store
            .write(Command::CreateService(svc))
            .await
            .map_err(Status::from)?;
        let svc = self.find_service(&id)?;
        Ok(Response::new(pb::ServiceResponse {
            service_json: to_json(&svc),
        }))
    }

    async fn update_service(
        &self,
        req: Request<pb::UpdateServiceRequest>,
    ) -> Result<Response<pb::ServiceResponse>, Status> {
        let req = req.into_inner();
        let patch: ServicePatch = serde_json::from_str(&req.patch_json)
            .map_err(|e| Status::invalid_argument(format!("invalid service update: {e}")))?;
        let svc = self
            .change_service(&req.service, |st, svc| {
                let mut patch = patch.clone();
                for n in &mut patch.network_rm {
                    let net = st
                        .find_network(n)
                        .ok_or_else(|| Status::not_found(format!("network {n} not found")))?;
                    *n = net.id.clone();
                }
                let mut spec = patch.apply(&svc.spec).map_err(|e| {
                    Status::invalid_argument(format!("service {}: {e}", svc.spec.name))
                })?;
                check_spec(st, &mut spec)?;
                svc.spec = spec;
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::ServiceResponse {
            service_json: to_json(&svc),
        }))
    }

    async fn rollback_service(
        &self,
        req: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::ServiceResponse>, Status> {
        let cur = self.find_service(&req.into_inner().service)?;
        if cur.previous_spec.is_none() {
            return Err(Status::failed_precondition(format!(
                "service {} does not have a previous spec",
                cur.spec.name
            )));
        }
        let cmd = Command::RollbackService {
            id: cur.id.clone(),
            expected_version: cur.meta.version,
            message: MANUAL_ROLLBACK.into(),
            failed_task: None,
            at: now_ms(),
        };
        self.daemon.store.write(cmd).await.map_err(Status::from)?;
        let svc = self.find_service(&cur.id)?;
        Ok(Response::new(pb::ServiceResponse {
            service_json: to_json(&svc),
        }))
    }

    async fn scale_service(
        &self,
        req: Request<pb::ScaleServiceRequest>,
    ) -> Result<Response<pb::ServiceResponse>, Status> {
        let req = req.into_inner();
        let cur = self.find_service(&req.service)?;
        if cur.spec.mode != Mode::Replicated {
            return Err(Status::failed_precondition(format!(
                "scale can only be used with replicated mode; service {} is global",
                cur.spec.name
            )));
        }
        let svc = self
            .change_service(&cur.id, |_, s| {
                s.spec.replicas = req.replicas;
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::ServiceResponse {
            service_json: to_json(&svc),
        }))
    }

    async fn remove_service(
        &self,
        req: Request<pb::RemoveServiceRequest>,
    ) -> Result<Response<pb::RemoveServiceResponse>, Status> {
        let svc = self.find_service(&req.into_inner().service)?;
        self.daemon
            .store
            .write(Command::RemoveService { id: svc.id.clone() })
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::RemoveServiceResponse { id: svc.id }))
    }

    async fn get_service(
        &self,
        req: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::ServiceResponse>, Status> {
        let req = req.into_inner();
        if req.consistent {
            self.manager_state()?;
            self.daemon
                .store
                .read_barrier()
                .await
                .map_err(Status::from)?;
        }
        let svc = self.find_service(&req.service)?;
        Ok(Response::new(pb::ServiceResponse {
            service_json: to_json(&svc),
        }))
    }

    async fn list_services(
        &self,
        _req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let st = self.manager_state()?;
        Ok(Response::new(pb::ObjectList {
            items_json: st.services.values().map(to_json).collect(),
        }))
    }

    async fn list_tasks(
        &self,
        req: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let key = req.into_inner().service;
        let st = self.manager_state()?;
        let items = if key.is_empty() {
            st.tasks.values().map(to_json).collect()
        } else {
            let svc = self.find_service(&key)?;
            st.tasks_of(&svc.id).map(to_json).collect()
        };
        Ok(Response::new(pb::ObjectList { items_json: items }))
    }

    async fn list_nodes(
        &self,
        _req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let st = self.manager_state()?;
        Ok(Response::new(pb::ObjectList {
            items_json: st.nodes.values().map(to_json).collect(),
        }))
    }

    async fn update_node(
        &self,
        req: Request<pb::UpdateNodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let req = req.into_inner();
        let st = self.manager_state()?;
        let node = st.find_node(&req.node).map_err(Status::not_found)?.clone();
        let availability = match req.availability.as_str() {
            "" => node.availability,
            other => other.parse().map_err(Status::invalid_argument)?,
        };
        let role = match req.role.as_str() {
            "" => node.role,
            other => other.parse().map_err(Status::invalid_argument)?,
        };
        if node.role == NodeRole::Manager && role == NodeRole::Worker {
            let managers = st
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager)
                .count();
            if managers == 1 {
                return Err(Status::failed_precondition(format!(
                    "node {} is the last manager of the swarm; promote another node first",
                    node.hostname
                )));
            }
        }
        let mut labels = node.labels.clone();
        for kv in &req.label_add {
            let (k, v) = crate::types::parse_label(kv).map_err(Status::invalid_argument)?;
            labels.insert(k, v);
        }
        for k in &req.label_rm {
            if labels.remove(k).is_none() {
                return Err(Status::not_found(format!(
                    "label {k} not found on node {}",
                    node.hostname
                )));
            }
        }
        self.daemon
            .store
            .write(Command::UpdateNode {
                id: node.id.clone(),
                expected_version: node.meta.version,
                availability,
                labels,
                role,
            })
            .await
            .map_err(Status::from)?;
        let st = self.daemon.store.state();
        let updated = st.nodes.get(&node.id).map(to_json).unwrap_or_default();
        Ok(Response::new(pb::NodeResponse { node_json: updated }))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let req = req.into_inner();
        let st = self.manager_state()?;
        let node = st.find_node(&req.node).map_err(Status::not_found)?.clone();
        if node.role == NodeRole::Manager {
            return Err(Status::failed_precondition(format!(
                "node {} is a manager: demote it (swarm node demote) before removing it",
                node.hostname
            )));
        }
        if node.state == NodeState::Ready && !req.force {
            return Err(Status::failed_precondition(format!(
                "node {} is not down and can't be removed; run 'swarm leave' on it, or use --force",
                node.hostname
            )));
        }
        self.daemon
            .store
            .write(Command::RemoveNode {
                id: node.id.clone(),
            })
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::NodeResponse {
            node_json: to_json(&node),
        }))
    }

    async fn deploy_stack(
        &self,
        req: Request<pb::DeployStackRequest>,
    ) -> Result<Response<pb::DeployStackResponse>, Status> {
        let st = self.manager_state()?;
        let d = &self.daemon;
        let out = super::stack::deploy(&d.store, &d.keyring, &st, req.into_inner()).await?;
        Ok(Response::new(out))
    }

    async fn remove_stack(
        &self,
        req: Request<pb::RemoveStackRequest>,
    ) -> Result<Response<pb::DeployStackResponse>, Status> {
        self.manager_state()?;
        let out = super::stack::remove(&self.daemon.store, &req.into_inner().stack).await?;
        Ok(Response::new(out))
    }

    async fn create_secret(
        &self,
        req: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::SecretResponse>, Status> {
        self.manager_state()?;
        let d = &self.daemon;
        let s = super::secret::create(&d.store, &d.keyring, req.into_inner()).await?;
        Ok(Response::new(super::secret::response(&s)))
    }

    async fn update_secret(
        &self,
        req: Request<pb::UpdateSecretRequest>,
    ) -> Result<Response<pb::SecretResponse>, Status> {
        self.manager_state()?;
        let d = &self.daemon;
        let s = super::secret::update(&d.store, &d.keyring, req.into_inner()).await?;
        Ok(Response::new(super::secret::response(&s)))
    }

    async fn remove_secret(
        &self,
        req: Request<pb::SecretRequest>,
    ) -> Result<Response<pb::SecretResponse>, Status> {
        self.manager_state()?;
        let s = super::secret::remove(&self.daemon.store, req.into_inner()).await?;
        Ok(Response::new(super::secret::response(&s)))
    }

    async fn get_secret(
        &self,
        req: Request<pb::SecretRequest>,
    ) -> Result<Response<pb::SecretResponse>, Status> {
        let st = self.manager_state()?;
        let req = req.into_inner();
        let s = super::secret::find(&st, super::secret::kind(req.kind)?, &req.secret)?;
        Ok(Response::new(super::secret::response(&s)))
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let st = self.manager_state()?;
        let kind = super::secret::kind(req.into_inner().kind)?;
        let items_json = st
            .secrets
            .values()
            .filter(|s| s.kind == kind)
            .map(|s| to_json(&s.redacted()))
            .collect();
        Ok(Response::new(pb::ObjectList { items_json }))
    }

    async fn create_network(
        &self,
        req: Request<pb::CreateNetworkRequest>,
    ) -> Result<Response<pb::NetworkResponse>, Status> {
        self.manager_state()?;
        let mut spec: NetworkSpec = serde_json::from_str(&req.into_inner().spec_json)
            .map_err(|e| Status::invalid_argument(format!("invalid network spec: {e}")))?;
        super::resolve::network_spec(&mut spec)?;
        let id = new_id();
        let cmd = Command::CreateNetwork {
            id: id.clone(),
            spec,
            at: now_ms(),
        };
        self.daemon.store.write(cmd).await.map_err(Status::from)?;
        Ok(Response::new(pb::NetworkResponse {
            network_json: to_json(&self.find_network(&id)?),
        }))
    }

    async fn remove_network(
        &self,
        req: Request<pb::RemoveNetworkRequest>,
    ) -> Result<Response<pb::NetworkResponse>, Status> {
        let net = self.find_network(&req.into_inner().network)?;
        let cmd = Command::RemoveNetwork { id: net.id.clone() };
        self.daemon.store.write(cmd).await.map_err(Status::from)?;
        Ok(Response::new(pb::NetworkResponse {
            network_json: to_json(&net),
        }))
    }

    async fn get_network(
        &self,
        req: Request<pb::GetNetworkRequest>,
    ) -> Result<Response<pb::NetworkResponse>, Status> {
        let net = self.find_network(&req.into_inner().network)?;
        Ok(Response::new(pb::NetworkResponse {
            network_json: to_json(&net),
        }))
    }

    async fn list_networks(
        &self,
        _req: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let st = self.manager_state()?;
        Ok(Response::new(pb::ObjectList {
            items_json: st.networks.values().map(to_json).collect(),
        }))
    }

    async fn mesh_dump(
        &self,
        _req: Request<pb::MeshDumpRequest>,
    ) -> Result<Response<pb::MeshDumpResponse>, Status> {
        let mesh = self.daemon.mesh.get().cloned().ok_or_else(|| {
            Status::failed_precondition(
                "this node has no data plane attached: it is not in a swarm, or attaching failed (see the daemon log)",
            )
        })?;
        let dump = tokio::task::spawn_blocking(move || mesh.lock().expect("mesh lock").dump())
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(Response::new(pb::MeshDumpResponse {
            dump_json: to_json(&dump),
        }))
    }

    type ServiceLogsStream = super::task_io::LogStream;

    async fn service_logs(
        &self,
        req: Request<pb::ServiceLogsRequest>,
    ) -> Result<Response<Self::ServiceLogsStream>, Status> {
        let req = req.into_inner();
        let st = self.manager_state()?;
        let options = req.options.unwrap_or_default();
        let stream = super::task_io::logs(&self.daemon, &st, &req.target, options).await?;
        Ok(Response::new(stream))
    }

    async fn clock_skew(
        &self,
        _req: Request<pb::ClockSkewRequest>,
    ) -> Result<Response<pb::ClockSkewResponse>, Status> {
        let daemon = &self.daemon;
        if daemon.store.peers().tls().is_none() {
            return Ok(Response::new(pb::ClockSkewResponse::default()));
        }
        // This node's own clock is no skew.
        let me = daemon.advertise();
        let addrs: Vec<String> = daemon
            .known_managers()
            .into_iter()
            .filter(|a| *a != me)
            .collect();
        let managers = crate::cluster::clock_skews(daemon.store.peers(), &addrs).await;
        Ok(Response::new(pb::ClockSkewResponse {
            managers,
            joined: true,
        }))
    }

    type EventsStream = Pin<Box<dyn Stream<Item = Result<pb::EventMessage, Status>> + Send>>;

    async fn events(
        &self,
        req: Request<pb::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        self.manager_state()?;
        let req = req.into_inner();
        let filter =
            crate::events::Filter::parse(&req.filters).map_err(Status::invalid_argument)?;
        let until = (req.until != 0).then_some(req.until);
        let events = self.daemon.events.stream(req.since, until, filter);
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(|e| {
            Ok(pb::EventMessage {
                event_json: to_json(&e),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type ServiceExecStream = crate::broker::Outputs;

    async fn service_exec(
        &self,
        req: Request<tonic::Streaming<super::broker_pb::ExecInput>>,
    ) -> Result<Response<Self::ServiceExecStream>, Status> {
        let st = self.manager_state()?;
        let outputs = super::task_io::exec(&self.daemon, &st, req.into_inner()).await?;
        Ok(Response::new(outputs))
    }
}

/// A readable default name, as docker gives services created without --name.
fn generated_name() -> String {
    const ADJ: &[&str] = &[
        "brave", "calm", "eager", "fond", "keen", "lucid", "nifty", "quirky", "sharp", "witty",
    ];
    const NOUN: &[&str] = &[
        "curie", "darwin", "hopper", "lovelace", "noether", "pascal", "ritchie", "turing",
    ];
    use rand::seq::SliceRandom;
    let mut rng = rand::thread_rng();
    format!(
        "{}_{}",
        ADJ.choose(&mut rng).expect("non-empty"),
        NOUN.choose(&mut rng).expect("non-empty")
    )
}
