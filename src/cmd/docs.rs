//! Man pages and completion scripts, generated from the clap definition and committed under
//! man/ and completions/, so packagers need no build step. A test fails when they drift;
//! `cargo run -- generate-docs` rewrites them.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory that receives man/ and completions/
    #[arg(long, default_value = ".", value_name = "DIR")]
    out_dir: PathBuf,
}

pub fn run(args: Args) -> Result<(), Error> {
    for (rel, bytes) in render() {
        let path = args.out_dir.join(&rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        std::fs::write(&path, bytes)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    Ok(())
}

/// Every generated file as (path relative to the repository root, contents).
pub fn render() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let cmd = super::Cli::command();
    man_pages(&cmd, "viber", &mut files);
    for (shell, name) in [
        (clap_complete::Shell::Bash, "viber.bash"),
        (clap_complete::Shell::Zsh, "_viber"),
        (clap_complete::Shell::Fish, "viber.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut super::Cli::command(), "viber", &mut buf);
        files.push((Path::new("completions").join(name), buf));
    }
    files
}

fn man_pages(cmd: &clap::Command, name: &str, files: &mut Vec<(PathBuf, Vec<u8>)>) {
    if cmd.is_hide_set() {
        return;
    }
    let page = cmd
        .clone()
        .name(name.to_string())
        .display_name(name.to_string());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .expect("rendering to memory cannot fail");
    files.push((Path::new("man").join(format!("{name}.1")), buf));
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        man_pages(sub, &format!("{name}-{}", sub.get_name()), files);
    }
}
