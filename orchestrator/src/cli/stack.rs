//! `swarm stack ...`: stacks from compose files.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum StackCmd {
    /// Print the final document of the compose files, as deploy reads it.
    Config {
        /// Compose file(s), merged in order.
        #[arg(short = 'c', long = "compose-file", required = true)]
        compose_files: Vec<PathBuf>,
        /// Print `${VAR}` references as written.
        #[arg(long)]
        skip_interpolation: bool,
    },
}

pub fn run(cmd: StackCmd) -> Result<()> {
    match cmd {
        StackCmd::Config {
            compose_files,
            skip_interpolation,
        } => {
            let opts = swarm_compose::Options { skip_interpolation };
            let doc = swarm_compose::load(&compose_files, &opts)?;
            print!("{}", swarm_compose::emit::yaml(&doc));
            Ok(())
        }
    }
}
