//! Autolock, as Swarm has it: with it on, a manager's data key and TLS key
//! are sealed on disk by the swarm's unlock key, which the operator keeps,
//! and a restarted manager does nothing until `swarm unlock` gives it.

use super::Daemon;
use crate::keyring::{parse_unlock_key, unlock_key_text, Field, Key};
use crate::net::Tls;
use crate::state::Command;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;

/// What a locked manager answers (docker's words, with our command).
pub const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"swarm unlock\" to unlock it.";

impl Daemon {
    /// Whether this manager waits for `swarm unlock`.
    pub fn locked(&self) -> bool {
        self.keyring.is_locked()
    }

    /// `swarm unlock`: open the data key and the TLS key with the unlock
    /// key, and take up the manager's roles.
    pub async fn unlock(self: &Arc<Self>, key_text: &str) -> Result<()> {
        if !self.locked() {
            anyhow::bail!("swarm is not locked");
        }
        let key = parse_unlock_key(key_text).map_err(anyhow::Error::msg)?;
        self.keyring.unlock(&key)?;
        let saved = self.certs.load()?.context("this node has no certificate")?;
        let key_pem = saved
            .key_pem
            .context("the node's key does not open with the unlock key")?;
        self.activate(Tls::new(&saved.ca_pem, &saved.cert_pem, &key_pem)?)
            .await
    }

    /// `swarm init --autolock`, `swarm update --autolock=true|false`: turn
    /// autolock on (a new unlock key, unless it is on already) or off. The
    /// unlock key when on.
    pub async fn set_autolock(&self, on: bool) -> Result<Option<String>> {
        match (on, self.unlock_key()?) {
            (true, Some(key)) => Ok(Some(unlock_key_text(&key))),
            (true, None) => self.new_unlock_key().await.map(Some),
            (false, _) => {
                self.store.write(Command::SetUnlockKey(None)).await?;
                Ok(None)
            }
        }
    }

    /// `swarm unlock-key [--rotate]`: the current unlock key, or a new one.
    pub async fn unlock_key_text(&self, rotate: bool) -> Result<String> {
        let Some(key) = self.unlock_key()? else {
            anyhow::bail!("no unlock key is set: autolock is off (turn it on with `swarm update --autolock=true`)");
        };
        if rotate {
            return self.new_unlock_key().await;
        }
        Ok(unlock_key_text(&key))
    }

    /// The swarm's unlock key, if autolock is on.
    fn unlock_key(&self) -> Result<Option<Key>> {
        self.unlock_key_in(&self.store.state())
    }

    /// The unlock key that the state `st` holds, if autolock is on in it.
    fn unlock_key_in(&self, st: &crate::state::State) -> Result<Option<Key>> {
        let cluster = st
            .cluster
            .as_ref()
            .context("this node is not a swarm manager")?;
        let Some(sealed) = &cluster.unlock_key else {
            return Ok(None);
        };
        let bytes = self.keyring.open_field(Field::UnlockKey, sealed)?;
        Ok(Some(
            Key::try_from(bytes.as_slice()).context("a stored unlock key of the wrong length")?,
        ))
    }

    async fn new_unlock_key(&self) -> Result<String> {
        let key = crate::keyring::random_key()?;
        let sealed = self.keyring.seal_field(Field::UnlockKey, &key)?;
        self.store
            .write(Command::SetUnlockKey(Some(sealed)))
            .await?;
        Ok(unlock_key_text(&key))
    }

    /// Keep this manager's files sealed as the swarm's autolock setting
    /// says: on each change of it (and now and then, for a manager that
    /// got its data key late), the data key is written again sealed by the
    /// unlock key or by a local key, and the TLS key sealed (by the data
    /// key) or not.
    pub(super) async fn follow_autolock(self: Arc<Self>, tls: Arc<Tls>) {
        let mut changes = self.store.subscribe();
        loop {
            let st = changes.borrow_and_update().clone();
            // The unlock key the swarm wants (None inside: autolock off),
            // if this node holds the state and can open it yet.
            if let Ok(key) = self.unlock_key_in(&st) {
                let sealed = self
                    .keyring
                    .follow_autolock(key.as_ref())
                    .and_then(|_| self.certs.reseal(&tls.key_pem()));
                if let Err(e) = sealed {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot seal this manager's keys as autolock says"
                    );
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}
