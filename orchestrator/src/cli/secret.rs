//! `swarm secret ...` and `swarm config ...`: the same verbs for both, as
//! docker has them, plus `update`, which adds a version that the services
//! using it roll onto.

use super::format::{ago, short, table};
use super::{print_inspected, print_items, Format, FORMAT_HELP};
use crate::api::client::{connect, status_error};
use crate::api::pb;
use crate::api::secret::pb_kind;
use crate::types::{now_ms, Secret, SecretKind, SecretRef};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::io::Read;

#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// Create from a file, or from standard input with "-".
    Create {
        /// Set metadata (KEY=VALUE).
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        name: String,
        file: String,
    },
    /// List them.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
    },
    /// Display detailed information (a secret's value is never shown).
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(short, long, value_parser = Format::parse, help = FORMAT_HELP)]
        format: Option<Format>,
    },
    /// Remove them (refused while a service uses one).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Add a new version from a file or "-"; services using it roll onto it.
    Update { name: String, file: String },
}

/// The bytes of FILE, or of standard input for "-".
fn read_data(file: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading standard input")?;
    } else {
        data = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    }
    Ok(data)
}

fn decode(json: &str) -> Result<Secret> {
    serde_json::from_str(json).context("decoding the daemon's answer")
}

pub async fn run(host: &str, kind: SecretKind, cmd: SecretCmd) -> Result<()> {
    // Read local input before touching the daemon.
    let data = match &cmd {
        SecretCmd::Create { file, .. } | SecretCmd::Update { file, .. } => read_data(file)?,
        _ => Vec::new(),
    };
    let mut c = connect(host).await?;
    let k = pb_kind(kind);
    match cmd {
        SecretCmd::Create { labels, name, .. } => {
            let labels = super::network::parse_labels(&labels)?.into_iter().collect();
            let req = pb::CreateSecretRequest {
                kind: k,
                name,
                data,
                labels,
            };
            let resp = c.create_secret(req).await.map_err(status_error)?;
            println!("{}", decode(&resp.into_inner().secret_json)?.id);
        }
        SecretCmd::Update { name, .. } => {
            let req = pb::UpdateSecretRequest {
                kind: k,
                secret: name,
                data,
            };
            let resp = c.update_secret(req).await.map_err(status_error)?;
            let s = decode(&resp.into_inner().secret_json)?;
            let v = s.latest().map_or(0, |v| v.version);
            println!("{} version {v}", s.name);
        }
        SecretCmd::Ls { quiet, format } => {
            let resp = c
                .list_secrets(pb::ListSecretsRequest { kind: k })
                .await
                .map_err(status_error)?;
            let mut all: Vec<Secret> = resp
                .into_inner()
                .items_json
                .iter()
                .map(|j| decode(j))
                .collect::<Result<_>>()?;
            all.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet {
                all.iter().for_each(|s| println!("{}", short(&s.id)));
            } else {
                print_items(&format, &all, || {
                    let now = now_ms();
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|s| {
                            vec![
                                short(&s.id).to_string(),
                                s.name.clone(),
                                s.latest().map_or(0, |v| v.version).to_string(),
                                ago(s.meta.created_at, now),
                                ago(s.meta.updated_at, now),
                            ]
                        })
                        .collect();
                    table(&["ID", "NAME", "VERSION", "CREATED", "UPDATED"], &rows);
                })?;
            }
        }
        SecretCmd::Inspect { names, format } => {
            let mut out = Vec::new();
            for n in names {
                let req = pb::SecretRequest { kind: k, secret: n };
                let resp = c.get_secret(req).await.map_err(status_error)?;
                let secret = decode(&resp.into_inner().secret_json)?;
                out.push(super::engine_json::secret(&secret));
            }
            print_inspected(&format, &out)?;
        }
        SecretCmd::Rm { names } => {
            for n in names {
                let req = pb::SecretRequest {
                    kind: k,
                    secret: n.clone(),
                };
                c.remove_secret(req).await.map_err(status_error)?;
                println!("{n}");
            }
        }
    }
    Ok(())
}

/// `--secret`/`--config`: `NAME`, or `source=NAME[,target=PATH][,uid=N]
/// [,gid=N][,mode=OCTAL]` as docker takes it.
pub fn parse_ref(kind: SecretKind, s: &str) -> Result<SecretRef, String> {
    if !s.contains('=') {
        return Ok(SecretRef::named(s));
    }
    let mut r = SecretRef::named("");
    r.target.clear();
    for field in s.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| {
            format!("invalid field {field:?} in --{kind} {s:?}: expected KEY=VALUE")
        })?;
        match k {
            "source" | "src" => r.name = v.to_string(),
            "target" => r.target = v.to_string(),
            "uid" => r.uid = v.to_string(),
            "gid" => r.gid = v.to_string(),
            "mode" => {
                r.mode = u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        format!(
                            "invalid mode {v:?} in --{kind} {s:?}: expected octal, such as 0400"
                        )
                    })?
            }
            other => return Err(format!("invalid field {other:?} in --{kind} {s:?}")),
        }
    }
    if r.name.is_empty() {
        return Err(format!("--{kind} {s:?}: source is required"));
    }
    if r.target.is_empty() {
        r.target = r.name.clone();
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_take_dockers_short_and_long_forms() {
        let short = parse_ref(SecretKind::Secret, "db").unwrap();
        assert_eq!(
            (short.name.as_str(), short.target.as_str(), short.mode),
            ("db", "db", 0o444)
        );
        let long = parse_ref(
            SecretKind::Secret,
            "source=db,target=pw,uid=33,gid=33,mode=0400",
        )
        .unwrap();
        assert_eq!(long.target, "pw");
        assert_eq!(
            (long.uid.as_str(), long.gid.as_str(), long.mode),
            ("33", "33", 0o400)
        );
        assert!(parse_ref(SecretKind::Config, "target=x")
            .unwrap_err()
            .contains("source is required"));
        assert!(parse_ref(SecretKind::Secret, "source=db,mode=999")
            .unwrap_err()
            .contains("invalid mode"));
        assert!(parse_ref(SecretKind::Secret, "source=db,colour=red").is_err());
    }
}
