//! Checking a report offline, as `viber verify` does: the signature against allowed
//! signers, every evidence file against its sha256, every verdict against what its
//! evidence shows, and the outcome against the verdicts. With `rerun`, the checks run
//! again on this machine and each claim shows what changed, as a unified diff.
//!
//! Findings are of two kinds: *problems* (the report or its evidence is not what was
//! signed, or does not add up: exit 3) and verdicts (exit 0 only when every claim is
//! proven and the run succeeded, else 1).

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::checks::{self, Env, EvidenceSet, Verdict};
use super::report::{self, ClaimEntry, Report};
use super::sign::{self, AllowedSigner};
use crate::error::exit;
use crate::protocol::runs::RunStatus;

pub struct Options {
    /// Who may sign; `allowed_source` says where that list came from, for messages.
    pub allowed: Vec<AllowedSigner>,
    pub allowed_source: String,
    pub rerun: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureResult {
    pub ok: bool,
    pub file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rerun {
    pub verdict: Verdict,
    pub reason: String,
    pub changed: bool,
    /// Unified diff from the recorded evidence to the new one (empty when unchanged).
    pub diff: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimAudit {
    pub index: u32,
    pub claim: String,
    pub kind: String,
    pub verdict: Verdict,
    pub reason: String,
    /// Whether the evidence is intact and supports the recorded verdict.
    pub ok: bool,
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun: Option<Rerun>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    pub report: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    pub signature: SignatureResult,
    /// Evidence files listed as subjects, and how many matched their sha256.
    pub evidence_files: usize,
    pub evidence_ok: usize,
    /// Everything that makes the report invalid or tampered (exit 3).
    pub problems: Vec<String>,
    pub claims: Vec<ClaimAudit>,
    pub exit_code: u8,
    pub summary: String,
    #[serde(skip)]
    pub parsed: Option<Report>,
}

/// Rejects subject paths that would leave the report's directory.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if name.is_empty() || p.is_absolute() {
        return None;
    }
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_path_buf())
}

/// Checks the report at `path` (see the module doc).
pub async fn audit(path: &Path, opts: &Options) -> Audit {
    let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let sig_file = report::sig_path(path);
    let mut a = Audit {
        report: path.to_path_buf(),
        run_id: None,
        status: None,
        signature: SignatureResult {
            ok: false,
            file: sig_file.clone(),
            principal: None,
            fingerprint: None,
            error: None,
        },
        evidence_files: 0,
        evidence_ok: 0,
        problems: Vec::new(),
        claims: Vec::new(),
        exit_code: exit::TAMPERED,
        summary: String::new(),
        parsed: None,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                if root.exists() {
                    "it does not exist".to_string()
                } else {
                    format!(
                        "it does not exist, nor does its directory {}: the run's workspace is gone",
                        root.display()
                    )
                }
            } else {
                e.to_string()
            };
            a.problems
                .push(format!("cannot read the report {}: {why}", path.display()));
            a.signature.error = Some("no report to check".into());
            return finish(a);
        }
    };

    // 1. The signature, over the exact bytes.
    match std::fs::read(&sig_file) {
        Err(e) => {
            let msg = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} is missing: the report is not signed",
                    sig_file.display()
                )
            } else {
                format!("cannot read {}: {e}", sig_file.display())
            };
            a.signature.error = Some(msg.clone());
            a.problems.push(msg);
        }
        Ok(pem) => match sign::verify(&bytes, &pem, &opts.allowed) {
            Ok(v) => {
                a.signature.ok = true;
                a.signature.principal = Some(v.principal);
                a.signature.fingerprint = Some(v.fingerprint);
            }
            Err(e) => {
                let msg = if e.contains("not an allowed signer") {
                    format!("{e} (allowed signers: {})", opts.allowed_source)
                } else {
                    e
                };
                a.signature.error = Some(msg.clone());
                a.problems.push(format!("signature: {msg}"));
            }
        },
    }

    // 2. The report itself.
    let r = match report::parse(&bytes) {
        Ok(r) => r,
        Err(e) => {
            a.problems.push(format!("{}: {e}", path.display()));
            return finish(a);
        }
    };
    a.run_id = Some(r.predicate.run_id.clone());
    a.status = Some(r.predicate.outcome.status);

    // 3. Every evidence file against its digest.
    a.evidence_files = r.subject.len();
    for s in &r.subject {
        let Some(want) = s.digest.get("sha256") else {
            a.problems
                .push(format!("subject {} has no sha256 digest", s.name));
            continue;
        };
        let Some(rel) = safe_relative(&s.name) else {
            a.problems.push(format!(
                "subject {:?} points outside the report's directory",
                s.name
            ));
            continue;
        };
        let file = root.join(rel);
        match super::sha256_file(&file) {
            Ok(h) if h == *want => a.evidence_ok += 1,
            Ok(h) => a.problems.push(format!(
                "evidence {} was changed: its sha256 is {h}, the report says {want}",
                s.name
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => a.problems.push(format!(
                "evidence {} is missing (expected at {})",
                s.name,
                file.display()
            )),
            Err(e) => a
                .problems
                .push(format!("evidence {} cannot be read: {e}", s.name)),
        }
    }

    // 4. Every verdict against its evidence.
    for c in &r.predicate.claims {
        a.claims.push(audit_claim(&r, &root, c));
    }
    for c in &a.claims {
        for p in &c.problems {
            a.problems
                .push(format!("claim {} ({:?}): {p}", c.index, c.claim));
        }
    }

    // 5. The summary and the outcome against the verdicts.
    let claims = &r.predicate.claims;
    if report::Summary::of(claims) != r.predicate.summary {
        a.problems
            .push("the report's summary does not match its claims".into());
    }
    let status = r.predicate.outcome.status;
    let all_checked = !claims.is_empty() && claims.iter().all(|c| c.checked);
    if all_checked {
        let (derived, _) = checks::outcome(claims);
        if derived != status {
            a.problems.push(format!(
                "the report says the run {status}, but its claims make it {derived}"
            ));
        }
    } else if status == RunStatus::Succeeded {
        a.problems
            .push("the report says the run succeeded, but not every claim was checked".into());
    }
    if r.predicate.outcome.exit_code != status.exit_code() {
        a.problems.push(format!(
            "the report's exit code {} does not match its status {status}",
            r.predicate.outcome.exit_code
        ));
    }

    // 6. Optionally, the checks again, here and now. Only for a report that passed every
    // check above: its commands run on this machine, and an unsigned or altered report
    // must never get to run anything.
    if opts.rerun {
        if a.problems.is_empty() && a.claims.iter().all(|c| c.problems.is_empty()) {
            rerun(&r, &root, &mut a.claims).await;
        } else {
            a.problems.push(
                "--rerun skipped: the report is not trusted, so none of its checks were run".into(),
            );
        }
    }
    a.parsed = Some(r);
    finish(a)
}

fn audit_claim(r: &Report, root: &Path, c: &ClaimEntry) -> ClaimAudit {
    let mut out = ClaimAudit {
        index: c.index,
        claim: c.claim.clone(),
        kind: c.kind.clone(),
        verdict: c.verdict,
        reason: c.reason.clone(),
        ok: false,
        problems: Vec::new(),
        rerun: None,
    };
    if !c.checked {
        if c.verdict != Verdict::Unproven {
            out.problems.push(format!(
                "it was never checked, yet the report says {}",
                c.verdict
            ));
        }
        out.ok = out.problems.is_empty();
        return out;
    }
    let mut ev = EvidenceSet::new();
    let mut intact = true;
    for e in &c.evidence {
        let listed = r
            .subject
            .iter()
            .any(|s| s.name == e.path && s.digest.get("sha256") == Some(&e.sha256));
        if !listed {
            out.problems.push(format!(
                "its evidence {} is not among the report's subjects with that digest",
                e.path
            ));
            intact = false;
            continue;
        }
        let Some(rel) = safe_relative(&e.path) else {
            intact = false;
            continue;
        };
        match std::fs::read(root.join(rel)) {
            Ok(b) if super::sha256_hex(&b) == e.sha256 => {
                ev.insert(e.label.clone(), b);
            }
            // Already reported as a subject problem.
            _ => intact = false,
        }
    }
    if intact {
        let (verdict, reason) = checks::judge(&c.check, &ev);
        if verdict != c.verdict {
            out.problems.push(format!(
                "the report says {} but its evidence shows {verdict}: {reason}",
                c.verdict
            ));
        }
        let observed: serde_json::Value = ev
            .get("observed")
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        if observed != c.observed {
            out.problems
                .push("its observations in report.json differ from its observed.json".into());
        }
        if c.check.kind().ok() != Some(c.kind.as_str()) {
            out.problems
                .push(format!("its kind {:?} does not match its check", c.kind));
        }
    }
    out.ok = intact && out.problems.is_empty();
    out
}

async fn rerun(r: &Report, root: &Path, claims: &mut [ClaimAudit]) {
    let scratch = std::env::temp_dir().join(format!(
        "viber-rerun-{}-{}",
        std::process::id(),
        crate::identity::random_hex(6)
    ));
    let steps = r.step_refs();
    let workdir = PathBuf::from(&r.predicate.workdir);
    let env = Env {
        root: &scratch,
        workdir: &workdir,
        logs: root,
        steps: &steps,
        scrub: &crate::store::secret_env_vars(None),
    };
    for (audit, c) in claims.iter_mut().zip(&r.predicate.claims) {
        let now = checks::run(&c.check, c.index, &env).await;
        let before = render_evidence(c.verdict, &load_evidence(root, c));
        let after = render_evidence(now.verdict, &load_evidence(&scratch, &now));
        let diff = if before == after {
            String::new()
        } else {
            similar::TextDiff::from_lines(&before, &after)
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("recorded/claim-{}", c.index),
                    &format!("rerun/claim-{}", c.index),
                )
                .to_string()
        };
        audit.rerun = Some(Rerun {
            verdict: now.verdict,
            reason: now.reason,
            changed: !diff.is_empty(),
            diff,
        });
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

fn load_evidence(root: &Path, c: &ClaimEntry) -> EvidenceSet {
    c.evidence
        .iter()
        .filter_map(|e| {
            let rel = safe_relative(&e.path)?;
            Some((e.label.clone(), std::fs::read(root.join(rel)).ok()?))
        })
        .collect()
}

/// A claim's evidence as text, for diffing: what changes between two honest runs of the
/// same check (timings, `Date:` headers) is left out, so a diff means something changed.
pub fn render_evidence(verdict: Verdict, ev: &EvidenceSet) -> String {
    let mut out = format!("verdict: {verdict}\n");
    for (label, bytes) in ev {
        out.push_str(&format!("== {label} ==\n"));
        match label.as_str() {
            "observed" => {
                let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.remove("durationMs");
                }
                out.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
                out.push('\n');
            }
            "head" => {
                for line in String::from_utf8_lossy(bytes).lines() {
                    if !line.to_ascii_lowercase().starts_with("date:") {
                        out.push_str(line.trim_end_matches('\r'));
                        out.push('\n');
                    }
                }
            }
            "screenshot" => {
                let size = super::screenshot::png_size(bytes)
                    .map(|(w, h)| format!("{w}x{h} PNG"))
                    .unwrap_or_else(|| "not a PNG".into());
                out.push_str(&format!(
                    "{size}, {} bytes, sha256 {}\n",
                    bytes.len(),
                    super::sha256_hex(bytes)
                ));
            }
            _ => match std::str::from_utf8(bytes) {
                Ok(text) if text.len() <= 256 * 1024 => {
                    out.push_str(text);
                    if !text.ends_with('\n') {
                        out.push('\n');
                    }
                }
                _ => out.push_str(&format!(
                    "<{} bytes, sha256 {}>\n",
                    bytes.len(),
                    super::sha256_hex(bytes)
                )),
            },
        }
    }
    out
}

fn finish(mut a: Audit) -> Audit {
    let n = a.claims.len();
    let proven = a
        .claims
        .iter()
        .filter(|c| c.verdict == Verdict::Proven)
        .count();
    let rerun_proven = a.claims.iter().all(|c| {
        c.rerun
            .as_ref()
            .is_none_or(|r| r.verdict == Verdict::Proven)
    });
    let succeeded = a.status == Some(RunStatus::Succeeded);
    (a.exit_code, a.summary) = if !a.problems.is_empty() {
        (
            exit::TAMPERED,
            format!(
                "the report is invalid or was tampered with: {}",
                a.problems[0]
            ),
        )
    } else if n > 0 && proven == n && succeeded && rerun_proven {
        (
            exit::SUCCESS,
            format!(
                "signature, evidence and verdicts check out: all {n} claim{} proven",
                if n == 1 { "" } else { "s" }
            ),
        )
    } else if !rerun_proven {
        let bad = a
            .claims
            .iter()
            .filter(|c| {
                c.rerun
                    .as_ref()
                    .is_some_and(|r| r.verdict != Verdict::Proven)
            })
            .count();
        (
            exit::FAILED,
            format!(
                "the report checks out ({proven} of {n} claims proven), but {bad} claim{} no longer proven on rerun",
                if bad == 1 { " is" } else { "s are" }
            ),
        )
    } else if n == 0 {
        (
            exit::FAILED,
            "the report checks out, but it has no claims: nothing proved the work".into(),
        )
    } else {
        (
            exit::FAILED,
            format!(
                "the report checks out, but only {proven} of {n} claims are proven (run {})",
                a.status.map(|s| s.as_str()).unwrap_or("?")
            ),
        )
    };
    a
}
