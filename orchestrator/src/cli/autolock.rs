//! `swarm update --autolock`, `swarm unlock-key` and `swarm unlock`, with
//! docker's words.

use crate::api::client::{connect, status_error};
use crate::api::pb;
use anyhow::Result;

/// How `init --autolock`, `update --autolock=true` and `unlock-key` show
/// the key.
pub fn print_unlock_key(key: &str) {
    println!(
        "To unlock a swarm manager after it restarts, run the `swarm unlock`\n\
         command and provide the following key:\n\n    {key}\n\n\
         Please remember to store this key in a password manager, since without it you\n\
         will not be able to restart the manager."
    );
}

pub async fn update(host: &str, autolock: Option<bool>) -> Result<()> {
    let mut c = connect(host).await?;
    let resp = c
        .update_swarm(pb::UpdateSwarmRequest { autolock })
        .await
        .map_err(status_error)?
        .into_inner();
    println!("Swarm updated.");
    if !resp.unlock_key.is_empty() {
        print_unlock_key(&resp.unlock_key);
    }
    Ok(())
}

pub async fn unlock_key(host: &str, quiet: bool, rotate: bool) -> Result<()> {
    let mut c = connect(host).await?;
    let key = c
        .unlock_key(pb::UnlockKeyRequest { rotate })
        .await
        .map_err(status_error)?
        .into_inner()
        .unlock_key;
    match (quiet, rotate) {
        (true, _) => println!("{key}"),
        (false, true) => {
            println!("Successfully rotated manager unlock key.\n");
            print_unlock_key(&key);
        }
        (false, false) => print_unlock_key(&key),
    }
    Ok(())
}

/// The key comes on standard input (docker prompts for it on a terminal).
pub async fn unlock(host: &str) -> Result<()> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprint!("Please enter unlock key: ");
    }
    let mut key = String::new();
    std::io::stdin().read_line(&mut key)?;
    let mut c = connect(host).await?;
    c.unlock(pb::UnlockRequest {
        key: key.trim().to_string(),
    })
    .await
    .map_err(status_error)?;
    Ok(())
}
