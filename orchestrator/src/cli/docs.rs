//! Shell completions and man pages, generated from the clap definitions the
//! parser itself uses, so they cannot drift from the flags.

use super::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// `swarm completion SHELL`: the completion script on standard output.
/// (Built in memory first: the generator panics on a failed write, such
/// as a pipe closed by `head`.)
pub fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "swarm", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout(), &script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing the completion script")
        }
        _ => Ok(()),
    }
}

/// `swarm man DIR`: one page per command (`swarm.1`, `swarm-service.1`,
/// `swarm-service-create.1`, ...) into `dir`. Returns the pages written.
pub fn man(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_the_subcommands_and_their_flags() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "swarm",
            &mut out,
        );
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("complete -F _swarm"), "{script:.200}");
        for word in ["service", "deploy", "--replicas", "--advertise-addr"] {
            assert!(script.contains(word), "no {word} in the bash completion");
        }
    }

    #[test]
    fn a_man_page_is_written_for_every_command_with_its_flags() {
        let dir = std::env::temp_dir().join(format!("swarm-man-{}", std::process::id()));
        let pages = man(&dir).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "swarm.1",
            "swarm-service-create.1",
            "swarm-node-ls.1",
            "swarm-service-ls.1",
        ] {
            assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
        }
        let create = std::fs::read_to_string(dir.join("swarm-service-create.1")).unwrap();
        assert!(
            create.contains(".SH NAME") && create.contains("replicas"),
            "{create:.300}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
