//! `viber report RUN --format md|json|junit [-o FILE]`: a run's signed report rendered for
//! people, jq or CI; `--open` writes an HTML page next to it; `--allowed-signers` prints
//! the line that lets anyone check reports with stock `ssh-keygen -Y verify`.
//!
//! It works offline from the workspace, and it checks the report first (as `viber verify`
//! does, without rerunning): a rendering of a tampered report would lend it credibility,
//! so that is exit 3 and nothing is rendered.

use std::path::PathBuf;

use serde_json::json;

use super::Ctx;
use super::verify::{allowed_signers, resolve_report};
use crate::error::{Error, exit};
use crate::evidence::render::{self, Links};
use crate::evidence::{audit, sign};
use crate::output;
use crate::store::fsutil;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Markdown for people
    Md,
    /// The report itself (an in-toto Statement), for jq
    Json,
    /// JUnit XML, one testcase per claim, for CI systems
    Junit,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run id (or a report.json path, or a workspace directory)
    #[arg(value_name = "RUN", required_unless_present = "allowed_signers")]
    run: Option<PathBuf>,
    /// Output format [default: md; json with --json]
    #[arg(long, short = 'f', value_enum)]
    format: Option<Format>,
    /// Write to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print this home's gateway allowed_signers line (for `ssh-keygen -Y verify -f`)
    #[arg(long)]
    allowed_signers: bool,
    /// Also write report.md and report.html into the run's workspace and print the HTML path
    #[arg(long)]
    open: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    if args.allowed_signers {
        return print_signer(ctx);
    }
    let given = args.run.as_ref().expect("clap requires RUN");
    let format = match (args.format, ctx.json()) {
        (None, true) | (Some(Format::Json), _) => Format::Json,
        (Some(f), true) => {
            return Err(Error::Usage(format!(
                "--json prints JSON, but --format {} was asked for: drop one",
                format_name(f)
            )));
        }
        (Some(f), false) => f,
        (None, false) => Format::Md,
    };
    let path = resolve_report(ctx, given)?;
    let (allowed, source) = allowed_signers(ctx, None)?;
    let a = audit::audit(
        &path,
        &audit::Options {
            allowed,
            allowed_source: source,
            rerun: false,
        },
    )
    .await;
    if a.exit_code == exit::TAMPERED {
        eprintln!("viber: report invalid: {}", a.problems.join("; "));
        eprintln!(
            "hint: `viber verify {}` shows every finding",
            path.display()
        );
        return Err(Error::Exit(exit::TAMPERED));
    }
    let r = a.parsed.clone().expect("a valid report was parsed");
    let workspace = path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let inside = |out: &std::path::Path| {
        std::path::absolute(out)
            .ok()
            .and_then(|o| o.parent().map(|p| p.to_path_buf()))
            .is_some_and(|p| p == workspace)
    };
    let links = Links {
        workspace: &workspace,
        relative: args.output.as_deref().is_some_and(inside),
    };
    let text = match format {
        Format::Json => String::from_utf8(
            std::fs::read(&path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?,
        )
        .map_err(|_| Error::Failed("report.json is not UTF-8".into()))?,
        Format::Md => render::markdown(&r, &a, &links),
        Format::Junit => render::junit(&r, &workspace),
    };
    if args.open {
        let rel = Links {
            workspace: &workspace,
            relative: true,
        };
        let md = workspace.join("report.md");
        let html = workspace.join("report.html");
        fsutil::write_atomic(&md, render::markdown(&r, &a, &rel).as_bytes(), 0o644)?;
        fsutil::write_atomic(&html, render::html(&r, &a, &rel).as_bytes(), 0o644)?;
        if ctx.json() {
            output::json(&json!({
                "schema": "viber.report-files/v1",
                "runId": r.predicate.run_id,
                "markdown": md,
                "html": html,
            }));
        } else {
            output::line(&html.display().to_string());
        }
        return Ok(());
    }
    match &args.output {
        Some(out) => {
            fsutil::write_atomic(out, text.as_bytes(), 0o644)?;
            if ctx.json() {
                output::json(&json!({
                    "schema": "viber.report-files/v1",
                    "runId": r.predicate.run_id,
                    "format": format_name(format),
                    "path": std::path::absolute(out).unwrap_or_else(|_| out.clone()),
                }));
            } else {
                eprintln!("viber: wrote {}", out.display());
            }
        }
        None => {
            // report.json is one JSON object already: print it on one line, as --json wants.
            if format == Format::Json {
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| Error::Failed(format!("report.json: {e}")))?;
                output::json(&v);
            } else {
                output::line(text.trim_end_matches('\n'));
            }
        }
    }
    Ok(())
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Md => "md",
        Format::Json => "json",
        Format::Junit => "junit",
    }
}

fn print_signer(ctx: &Ctx) -> Result<(), Error> {
    let info = sign::home_signer(&ctx.home).ok_or_else(|| {
        Error::Failed(format!(
            "{} has no gateway signing key yet: `viber init` or starting the gateway creates it",
            ctx.home.root().display()
        ))
    })?;
    if ctx.json() {
        let mut v = serde_json::to_value(&info).expect("serializes");
        v["schema"] = json!("viber.signer/v1");
        output::json(&v);
    } else {
        output::line(&info.allowed_signers);
    }
    Ok(())
}
