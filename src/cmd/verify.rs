//! `viber verify PATH/report.json`: check a report offline, with no gateway: the
//! signature, every evidence hash, every verdict. Exit 0 when every claim is proven,
//! 1 when a claim failed or is unproven, 3 when the report, its evidence or its
//! signature is not what the gateway signed. `--rerun` repeats the checks here and shows
//! what changed per claim.

use std::path::PathBuf;

use serde_json::json;

use super::Ctx;
use crate::error::{Error, exit};
use crate::evidence::audit::{self, Audit};
use crate::evidence::{report, sign};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The report: PATH/report.json, its workspace directory, or a run id of this home
    #[arg(value_name = "REPORT")]
    report: PathBuf,
    /// Trust the keys in this allowed_signers file (ssh-keygen format) [default: this
    /// home's gateway key, as `viber report --allowed-signers` prints it]
    #[arg(long, value_name = "FILE")]
    allowed_signers: Option<PathBuf>,
    /// Run the checks again on this machine and show, per claim, what changed
    #[arg(long)]
    rerun: bool,
}

/// A report path from what the user typed: a file, a workspace directory, or a run id.
/// A run id this home never had is a typo (exit 2); one whose workspace was deleted is
/// left for the audit to report as gone (exit 3).
pub fn resolve_report(ctx: &Ctx, given: &std::path::Path) -> Result<PathBuf, Error> {
    if given.is_dir() {
        return Ok(given.join(report::FILE));
    }
    let s = given.to_string_lossy();
    if !given.exists() && !s.contains('/') && !s.ends_with(".json") {
        let workspace = ctx.home.workspace().join(&*s);
        let known = workspace.exists()
            || std::fs::read_dir(ctx.home.agents())
                .into_iter()
                .flatten()
                .flatten()
                .any(|a| {
                    a.path()
                        .join("sessions")
                        .join(format!("{s}.jsonl"))
                        .exists()
                });
        if !known {
            return Err(Error::BadInput(format!(
                "{s:?} is neither a report file nor a run of {}",
                ctx.home.root().display()
            )));
        }
        return Ok(workspace.join(report::FILE));
    }
    Ok(given.to_path_buf())
}

/// The allowed signers: the file given, else this home's gateway key.
pub fn allowed_signers(
    ctx: &Ctx,
    file: Option<&std::path::Path>,
) -> Result<(Vec<sign::AllowedSigner>, String), Error> {
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| {
                Error::BadInput(format!("cannot read allowed signers {}: {e}", f.display()))
            })?;
            let list = sign::parse_allowed_signers(&text)
                .map_err(|e| Error::BadInput(format!("{}: {e}", f.display())))?;
            if list.is_empty() {
                return Err(Error::BadInput(format!(
                    "{} lists no usable signer",
                    f.display()
                )));
            }
            Ok((list, f.display().to_string()))
        }
        None => {
            let info = sign::home_signer(&ctx.home).ok_or_else(|| {
                Error::Usage(format!(
                    "no allowed signers: {} has no gateway signing key; pass --allowed-signers FILE (from `viber report --allowed-signers` on the gateway's host)",
                    ctx.home.root().display()
                ))
            })?;
            let list = sign::parse_allowed_signers(&info.allowed_signers).map_err(Error::Failed)?;
            Ok((
                list,
                format!(
                    "this home's gateway key {} ({})",
                    info.fingerprint, info.principal
                ),
            ))
        }
    }
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let path = resolve_report(ctx, &args.report)?;
    let (allowed, source) = allowed_signers(ctx, args.allowed_signers.as_deref())?;
    let opts = audit::Options {
        allowed,
        allowed_source: source,
        rerun: args.rerun,
    };
    let a = audit::audit(&path, &opts).await;
    if ctx.json() {
        let mut v = serde_json::to_value(&a).expect("serializes");
        v["schema"] = json!("viber.verify/v1");
        output::json(&v);
    } else {
        output::line(&human(&a));
    }
    if a.exit_code == exit::TAMPERED {
        eprintln!("viber: report invalid: {}", a.problems.join("; "));
    }
    match a.exit_code {
        0 => Ok(()),
        code => Err(Error::Exit(code)),
    }
}

fn human(a: &Audit) -> String {
    let mut s = format!(
        "report     {}{}\n",
        a.report.display(),
        match (&a.run_id, a.status) {
            (Some(id), Some(st)) => format!("  (run {id}, {st})"),
            _ => String::new(),
        }
    );
    if a.signature.ok {
        s.push_str(&format!(
            "signature  ok: {} {} (namespace viber-report)\n",
            a.signature.principal.as_deref().unwrap_or("?"),
            a.signature.fingerprint.as_deref().unwrap_or("?")
        ));
    } else {
        s.push_str(&format!(
            "signature  BAD: {}\n",
            a.signature.error.as_deref().unwrap_or("?")
        ));
    }
    s.push_str(&format!(
        "evidence   {} of {} files match their sha256\n",
        a.evidence_ok, a.evidence_files
    ));
    for c in &a.claims {
        s.push_str(&format!(
            "claim {:<4} {:<9} {} — {}\n",
            c.index, c.verdict, c.claim, c.reason
        ));
        if let Some(r) = &c.rerun {
            if r.changed {
                s.push_str(&format!(
                    "  rerun    {} -> {}: {}\n",
                    c.verdict, r.verdict, r.reason
                ));
                for line in r.diff.lines() {
                    s.push_str(&format!("    {line}\n"));
                }
            } else {
                s.push_str(&format!("  rerun    {}, evidence unchanged\n", r.verdict));
            }
        }
    }
    for p in &a.problems {
        s.push_str(&format!("PROBLEM    {p}\n"));
    }
    s.push_str(&format!("result     {} (exit {})", a.summary, a.exit_code));
    s
}
