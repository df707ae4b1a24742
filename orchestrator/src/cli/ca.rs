//! `swarm ca [--rotate] [-d] [-q]`, as `docker swarm ca` has it: print the
//! root CA certificate; with `--rotate`, start a move to a new root and
//! wait, showing progress, until every node has a certificate from it.

use crate::api::client::{connect, status_error};
use crate::api::pb;
use anyhow::Result;
use std::time::Duration;

pub async fn run(host: &str, rotate: bool, detach: bool, quiet: bool) -> Result<()> {
    let mut c = connect(host).await?;
    let mut status = c
        .ca(pb::CaRequest { rotate })
        .await
        .map_err(status_error)?
        .into_inner();
    if rotate && !detach {
        let mut shown = None;
        // A rotation waits for every node, as Swarm's does: a node that is
        // down holds it until it comes back or is removed (`node rm`), so
        // say which nodes it waits for.
        while status.rotating {
            let now = format!(
                "Progress: {} out of {} nodes (waiting for {})",
                status.renewed,
                status.nodes,
                status.waiting.join(", ")
            );
            if !quiet && shown.as_ref() != Some(&now) {
                eprintln!("{now}");
                shown = Some(now);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            status = c
                .ca(pb::CaRequest { rotate: false })
                .await
                .map_err(status_error)?
                .into_inner();
        }
    }
    print!("{}", status.ca_pem);
    Ok(())
}
