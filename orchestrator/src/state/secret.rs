//! Secrets and configs inside the state machine: names unique within a
//! kind, versions numbered by `apply`, no removal while a service uses one,
//! and a new version moving every service that uses the secret onto it
//! (which rolls their tasks, as `secret update` promises).

use super::{bump, not_found, Kind, Rejection, Response, State};
use crate::types::{Secret, SecretKind, SecretVersion, Service};

impl From<SecretKind> for Kind {
    fn from(k: SecretKind) -> Kind {
        match k {
            SecretKind::Secret => Kind::Secret,
            SecretKind::Config => Kind::Config,
        }
    }
}

impl State {
    /// Resolve a secret or config the way docker does: full ID, name, or
    /// unique ID prefix.
    pub fn find_secret(&self, kind: SecretKind, key: &str) -> Option<&Secret> {
        let of_kind = || self.secrets.values().filter(move |s| s.kind == kind);
        if let Some(s) = self.secrets.get(key).filter(|s| s.kind == kind) {
            return Some(s);
        }
        if let Some(s) = of_kind().find(|s| s.name == key) {
            return Some(s);
        }
        let mut matches = of_kind().filter(|s| s.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(s), None) => Some(s),
            _ => None,
        }
    }

    /// The services whose spec uses secret (or config) `id`.
    pub fn users_of_secret<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .values()
            .map(|s| &**s)
            .filter(move |s| s.spec.data_refs().any(|(_, r)| r.id == id))
    }

    pub(super) fn create_secret(&mut self, mut secret: Secret) -> Response {
        let kind = Kind::from(secret.kind);
        let taken = self
            .secrets
            .values()
            .any(|s| s.kind == secret.kind && s.name == secret.name);
        if taken {
            return Response::err(Rejection::NameInUse {
                kind,
                name: secret.name,
            });
        }
        if self.secrets.contains_key(&secret.id) {
            return Response::err(Rejection::IdExists {
                kind,
                id: secret.id,
            });
        }
        if secret.versions.len() != 1 {
            return Response::err(Rejection::Invalid(format!(
                "{} {} must be created with exactly one version",
                secret.kind, secret.name
            )));
        }
        secret.versions[0].version = 1;
        secret.meta.version = 1;
        self.secrets.insert(secret.id.clone(), secret);
        Response::ok()
    }

    /// Add the next version, and move the services using the secret to it.
    /// The writer names the number it sealed the bytes for: another number
    /// (a concurrent update took it) is a conflict.
    pub(super) fn update_secret(&mut self, id: &str, version: SecretVersion) -> Response {
        let Some(s) = self.secrets.get_mut(id) else {
            return not_found(Kind::Secret, id);
        };
        let expected = s.latest().map_or(1, |v| v.version + 1);
        if version.version != expected {
            return Response::err(Rejection::Conflict {
                kind: s.kind.into(),
                name: s.name.clone(),
                current: expected - 1,
                expected: version.version.saturating_sub(1),
            });
        }
        let (next, at) = (version.version, version.created_at);
        s.versions.push(version);
        bump(&mut s.meta, Some(at));
        let users: Vec<String> = self.users_of_secret(id).map(|s| s.id.clone()).collect();
        for sid in users {
            let Some(svc) = self.service_mut(&sid) else {
                continue;
            };
            let old = svc.spec.clone();
            for r in svc
                .spec
                .secrets
                .iter_mut()
                .chain(svc.spec.configs.iter_mut())
            {
                if r.id == id {
                    r.version = next;
                }
            }
            super::update::start_update(svc, &old, at);
            bump(&mut svc.meta, Some(at));
        }
        Response::ok()
    }

    pub(super) fn remove_secret(&mut self, id: &str) -> Response {
        let Some(s) = self.secrets.get(id) else {
            return not_found(Kind::Secret, id);
        };
        let users: Vec<&str> = self
            .users_of_secret(id)
            .map(|s| s.spec.name.as_str())
            .collect();
        if !users.is_empty() {
            let noun = if users.len() == 1 {
                "service"
            } else {
                "services"
            };
            return Response::err(Rejection::Invalid(format!(
                "{} '{}' is in use by the following {noun}: {}",
                s.kind,
                s.name,
                users.join(", ")
            )));
        }
        self.secrets.remove(id);
        Response::ok()
    }

    /// A service's references name stored secrets and configs of the right
    /// kind and an existing version, and no two mount at one path.
    pub(super) fn check_secret_refs(&self, svc: &Service) -> Result<(), Rejection> {
        let mut paths = Vec::new();
        for (kind, r) in svc.spec.data_refs() {
            let found = self.secrets.get(&r.id).filter(|s| s.kind == kind);
            let Some(s) = found else {
                return Err(Rejection::NotFound {
                    kind: kind.into(),
                    id: r.name.clone(),
                });
            };
            if s.version(r.version).is_none() {
                return Err(Rejection::Invalid(format!(
                    "{kind} {} has no version {}",
                    s.name, r.version
                )));
            }
            let path = kind.mount_path(&r.target);
            if paths.contains(&path) {
                return Err(Rejection::Invalid(format!(
                    "service {}: two secrets or configs mount at {path}",
                    svc.spec.name
                )));
            }
            paths.push(path);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Command;
    use super::*;
    use crate::types::{Meta, Mode, SecretRef};

    fn secret(id: &str, name: &str) -> Secret {
        Secret {
            id: id.into(),
            kind: SecretKind::Secret,
            name: name.into(),
            labels: Default::default(),
            versions: vec![SecretVersion {
                version: 9,
                created_at: 1,
                data: b"sealed".to_vec(),
            }],
            meta: Meta::default(),
        }
    }

    fn user(st: &mut State, id: &str, secret_id: &str) -> Response {
        let mut svc = crate::manager::testutil::service(id, Mode::Replicated, 1);
        svc.spec.name = format!("svc-{id}");
        svc.spec.secrets = vec![SecretRef {
            id: secret_id.into(),
            version: 1,
            ..SecretRef::named("db")
        }];
        st.apply(Command::CreateService(svc))
    }

    #[test]
    fn names_are_unique_within_a_kind_only() {
        let mut st = State::default();
        assert!(st
            .apply(Command::CreateSecret(secret("a", "db")))
            .error
            .is_none());
        assert_eq!(
            st.secrets["a"].versions[0].version, 1,
            "apply numbers versions"
        );
        let r = st.apply(Command::CreateSecret(secret("b", "db")));
        assert!(
            matches!(r.error, Some(Rejection::NameInUse { .. })),
            "{r:?}"
        );
        let mut config = secret("c", "db");
        config.kind = SecretKind::Config;
        assert!(st.apply(Command::CreateSecret(config)).error.is_none());
        assert_eq!(st.find_secret(SecretKind::Config, "db").unwrap().id, "c");
        assert_eq!(st.find_secret(SecretKind::Secret, "db").unwrap().id, "a");
    }

    #[test]
    fn a_service_needs_the_secret_it_names() {
        let mut st = State::default();
        let r = user(&mut st, "s1", "missing");
        assert!(
            matches!(
                r.error,
                Some(Rejection::NotFound {
                    kind: Kind::Secret,
                    ..
                })
            ),
            "{r:?}"
        );
        st.apply(Command::CreateSecret(secret("a", "db")));
        assert!(user(&mut st, "s1", "a").error.is_none());
    }

    #[test]
    fn a_secret_in_use_is_not_removed_and_the_error_names_the_users() {
        let mut st = State::default();
        st.apply(Command::CreateSecret(secret("a", "db")));
        user(&mut st, "s1", "a");
        let r = st.apply(Command::RemoveSecret { id: "a".into() });
        assert_eq!(
            r.error.unwrap().to_string(),
            "secret 'db' is in use by the following service: svc-s1"
        );
        st.apply(Command::RemoveService { id: "s1".into() });
        assert!(st
            .apply(Command::RemoveSecret { id: "a".into() })
            .error
            .is_none());
        assert!(st.secrets.is_empty());
    }

    #[test]
    fn a_new_version_moves_its_services_onto_it() {
        let mut st = State::default();
        st.apply(Command::CreateSecret(secret("a", "db")));
        user(&mut st, "s1", "a");
        let before = st.services["s1"].meta.version;
        let r = st.apply(Command::UpdateSecret {
            id: "a".into(),
            version: SecretVersion {
                version: 3,
                created_at: 5,
                data: b"sealed2".to_vec(),
            },
        });
        assert!(matches!(r.error, Some(Rejection::Conflict { .. })), "{r:?}");
        let r = st.apply(Command::UpdateSecret {
            id: "a".into(),
            version: SecretVersion {
                version: 2,
                created_at: 5,
                data: b"sealed2".to_vec(),
            },
        });
        assert!(r.error.is_none());
        assert_eq!(st.secrets["a"].versions.len(), 2);
        assert_eq!(st.services["s1"].spec.secrets[0].version, 2);
        assert!(st.services["s1"].meta.version > before);
        let status = st.services["s1"].update_status.clone().unwrap();
        assert_eq!(
            status.state,
            crate::types::UpdateState::Updating,
            "its tasks roll"
        );
    }
}
