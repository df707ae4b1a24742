//! What the control API settles in a request before it proposes anything:
//! names the user typed become IDs, and defaults docker fills in are
//! filled in. Each failure names the thing at fault and changes nothing.

use crate::ports::{CLUSTER_PORT, DYNAMIC_PORTS};
use crate::state::State;
use crate::types::{
    validate_name, EndpointMode, NetworkSpec, PublishMode, SecretKind, ServiceSpec,
};
use tonic::Status;

/// Turn network names into IDs (refusing unknown ones and ingress, which
/// published ports imply), secret and config names into IDs and their
/// latest version, and give ingress-mode ports without a published port
/// one from the dynamic range.
pub fn service_spec(st: &State, spec: &mut ServiceSpec) -> Result<(), Status> {
    secret_refs(st, spec)?;
    let mut seen = Vec::new();
    for a in &mut spec.networks {
        let net = st
            .find_network(&a.target)
            .ok_or_else(|| Status::not_found(format!("network {} not found", a.target)))?;
        if net.spec.ingress {
            return Err(Status::invalid_argument(format!(
                "service cannot be explicitly attached to the ingress network {:?}; publish a port instead",
                net.spec.name
            )));
        }
        if seen.contains(&net.id) {
            return Err(Status::invalid_argument(format!(
                "network {} is given twice",
                net.spec.name
            )));
        }
        a.target = net.id.clone();
        seen.push(net.id.clone());
    }
    let ingress = spec.ports.iter().any(|p| p.mode == PublishMode::Ingress);
    if ingress && spec.endpoint_mode == EndpointMode::Dnsrr {
        return Err(Status::invalid_argument(
            "port published with ingress mode can't be used with dnsrr mode; publish it with mode=host",
        ));
    }
    if ingress && st.ingress().is_none() {
        return Err(Status::failed_precondition(
            "this swarm has no ingress network, so ingress-mode ports cannot be published; publish with mode=host",
        ));
    }
    for i in 0..spec.ports.len() {
        if spec.ports[i].published != 0 {
            continue;
        }
        let proto = spec.ports[i].protocol;
        let taken = |port: u16| {
            port == CLUSTER_PORT
                || spec
                    .ports
                    .iter()
                    .any(|q| q.protocol == proto && q.published == port)
                || st.services.values().any(|s| {
                    s.spec
                        .ports
                        .iter()
                        .any(|q| q.protocol == proto && q.published == port)
                })
        };
        let port = DYNAMIC_PORTS.clone().find(|p| !taken(*p)).ok_or_else(|| {
            Status::resource_exhausted("no free port left in the dynamic range 30000-32767")
        })?;
        spec.ports[i].published = port;
    }
    Ok(())
}

/// A reference the daemon resolved before (an update that keeps it) keeps
/// its version; a new one gets the latest.
fn secret_refs(st: &State, spec: &mut ServiceSpec) -> Result<(), Status> {
    let kinds = [SecretKind::Secret, SecretKind::Config];
    for (kind, refs) in kinds
        .into_iter()
        .zip([&mut spec.secrets, &mut spec.configs])
    {
        for r in refs.iter_mut() {
            let known = st
                .secrets
                .get(&r.id)
                .filter(|s| s.kind == kind && s.name == r.name);
            if known.is_some_and(|s| s.version(r.version).is_some()) {
                continue;
            }
            let s = st
                .find_secret(kind, &r.name)
                .ok_or_else(|| Status::not_found(format!("{kind} not found: {}", r.name)))?;
            r.id = s.id.clone();
            r.name = s.name.clone();
            r.version = s.latest().map_or(0, |v| v.version);
            if r.target.is_empty() {
                r.target = s.name.clone();
            }
        }
    }
    Ok(())
}

/// Check a `network create` request as docker does; subnet choice and
/// overlap checks belong to the state machine.
pub fn network_spec(spec: &mut NetworkSpec) -> Result<(), Status> {
    validate_name("network", &spec.name).map_err(Status::invalid_argument)?;
    if spec.driver.is_empty() {
        spec.driver = "overlay".into();
    }
    if spec.driver != "overlay" {
        return Err(Status::invalid_argument(format!(
            "driver {:?} is not supported: swarm networks use the overlay driver",
            spec.driver
        )));
    }
    if spec.ingress {
        return Err(Status::invalid_argument(
            "the swarm made its ingress network at init; another cannot be created",
        ));
    }
    if spec.gateway.is_some() && spec.subnet.is_none() {
        return Err(Status::invalid_argument("--gateway needs --subnet"));
    }
    Ok(())
}
