//! The secret and config handlers of the control API. A secret's bytes are
//! sealed here, on the manager that took the request, before anything is
//! proposed: the raft log, its snapshots and every answer carry only the
//! sealed form (answers not even that).

use super::pb;
use crate::keyring::{binding, Keyring};
use crate::state::{Command, Rejection, State};
use crate::store::{Store, StoreError};
use crate::types::{
    new_id, now_ms, validate_name, Meta, Secret, SecretKind, SecretVersion, MAX_DATA_BYTES,
};
use std::collections::BTreeMap;
use tonic::Status;

pub fn kind(k: i32) -> Result<SecretKind, Status> {
    match pb::DataKind::try_from(k) {
        Ok(pb::DataKind::Secret) => Ok(SecretKind::Secret),
        Ok(pb::DataKind::Config) => Ok(SecretKind::Config),
        Err(_) => Err(Status::invalid_argument(format!("unknown data kind {k}"))),
    }
}

pub fn pb_kind(kind: SecretKind) -> i32 {
    match kind {
        SecretKind::Secret => pb::DataKind::Secret as i32,
        SecretKind::Config => pb::DataKind::Config as i32,
    }
}

pub fn find(st: &State, kind: SecretKind, key: &str) -> Result<Secret, Status> {
    st.find_secret(kind, key)
        .cloned()
        .ok_or_else(|| Status::not_found(format!("{kind} {key} not found")))
}

pub fn response(s: &Secret) -> pb::SecretResponse {
    pb::SecretResponse {
        secret_json: serde_json::to_string(&s.redacted()).expect("secrets serialize"),
    }
}

fn check_data(kind: SecretKind, data: &[u8]) -> Result<(), Status> {
    if data.is_empty() || data.len() > MAX_DATA_BYTES {
        return Err(Status::invalid_argument(format!(
            "{kind} data must be larger than 0 and at most {} KiB (got {} bytes)",
            MAX_DATA_BYTES / 1024,
            data.len()
        )));
    }
    Ok(())
}

/// The stored form of version `version` of `id`: sealed for a secret.
pub fn stored(
    keyring: &Keyring,
    kind: SecretKind,
    id: &str,
    version: u64,
    data: &[u8],
) -> Result<SecretVersion, Status> {
    let data = match kind {
        SecretKind::Config => data.to_vec(),
        SecretKind::Secret => keyring
            .seal(&binding(id, version), data)
            .map_err(|e| Status::unavailable(e.to_string()))?,
    };
    Ok(SecretVersion {
        version,
        created_at: now_ms(),
        data,
    })
}

/// A new secret or config, ready to propose.
pub fn new_secret(
    keyring: &Keyring,
    kind: SecretKind,
    id: String,
    name: &str,
    labels: BTreeMap<String, String>,
    data: &[u8],
) -> Result<Secret, Status> {
    validate_name(kind.as_str(), name).map_err(Status::invalid_argument)?;
    check_data(kind, data)?;
    let first = stored(keyring, kind, &id, 1, data)?;
    Ok(Secret {
        id,
        kind,
        name: name.to_string(),
        labels,
        versions: vec![first],
        meta: Meta::new(now_ms()),
    })
}

pub async fn create(
    store: &Store,
    keyring: &Keyring,
    req: pb::CreateSecretRequest,
) -> Result<Secret, Status> {
    let kind = kind(req.kind)?;
    let labels = req.labels.into_iter().collect();
    let secret = new_secret(keyring, kind, new_id(), &req.name, labels, &req.data)?;
    let id = secret.id.clone();
    store
        .write(Command::CreateSecret(secret))
        .await
        .map_err(Status::from)?;
    find(&store.state(), kind, &id)
}

/// Add a version. The sealed bytes are bound to the version number, so a
/// concurrent update that took that number first makes this one re-seal
/// for the next and try again.
pub async fn update(
    store: &Store,
    keyring: &Keyring,
    req: pb::UpdateSecretRequest,
) -> Result<Secret, Status> {
    let kind = kind(req.kind)?;
    check_data(kind, &req.data)?;
    for _ in 0..5 {
        let cur = find(&store.state(), kind, &req.secret)?;
        let next = cur.latest().map_or(1, |v| v.version + 1);
        let version = stored(keyring, kind, &cur.id, next, &req.data)?;
        let cmd = Command::UpdateSecret {
            id: cur.id.clone(),
            version,
        };
        match store.write(cmd).await {
            Ok(()) => return find(&store.state(), kind, &cur.id),
            Err(StoreError::Rejected(Rejection::Conflict { .. })) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Status::aborted(format!(
        "{kind} {} is being updated concurrently; retry",
        req.secret
    )))
}

pub async fn remove(store: &Store, req: pb::SecretRequest) -> Result<Secret, Status> {
    let kind = kind(req.kind)?;
    let cur = find(&store.state(), kind, &req.secret)?;
    store
        .write(Command::RemoveSecret { id: cur.id.clone() })
        .await
        .map_err(Status::from)?;
    Ok(cur)
}
