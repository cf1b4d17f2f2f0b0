//! `viber completions SHELL`: print a completion script generated from the CLI definition.

use clap::CommandFactory;

use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> Result<(), Error> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "viber", &mut std::io::stdout());
    Ok(())
}
