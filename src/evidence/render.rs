//! Renderings of a report: Markdown for people, JUnit XML for CI systems (one testcase
//! per claim; failures carry evidence excerpts), and a self-contained HTML page.
//! They only present what `report.json` says; the caller checks it first.

use std::path::Path;

use super::audit::Audit;
use super::checks::Verdict;
use super::report::{ClaimEntry, Report};

/// How far into an evidence file an excerpt reaches.
const EXCERPT: usize = 2048;

/// How evidence is linked: relative to the workspace when the rendering sits inside it,
/// absolute otherwise (a rendering on stdout can end up anywhere).
pub struct Links<'a> {
    pub workspace: &'a Path,
    pub relative: bool,
}

impl Links<'_> {
    fn href(&self, rel: &str) -> String {
        if self.relative {
            rel.to_string()
        } else {
            self.workspace.join(rel).display().to_string()
        }
    }
}

fn signature_line(a: &Audit) -> String {
    if a.signature.ok {
        format!(
            "valid, signed by {} ({}, namespace viber-report)",
            a.signature.principal.as_deref().unwrap_or("?"),
            a.signature.fingerprint.as_deref().unwrap_or("?")
        )
    } else {
        format!(
            "NOT VALID: {}",
            a.signature.error.as_deref().unwrap_or("unknown")
        )
    }
}

fn budget_line(r: &Report) -> String {
    let b = &r.predicate.budget;
    let u = &r.predicate.usage;
    let of = |limit: Option<String>| limit.map(|l| format!(" of {l}")).unwrap_or_default();
    let mut parts = vec![
        format!(
            "{} step(s){}",
            u["steps"],
            of(b.max_steps.map(|x| x.to_string()))
        ),
        format!(
            "{:.1} s wall time{}",
            u["wallSecs"].as_f64().unwrap_or(0.0),
            of(b.max_wall_secs.map(|x| format!("{x} s")))
        ),
    ];
    if u.get("tokens").is_some() || b.max_tokens.is_some() {
        parts.push(format!(
            "{} tokens{}",
            u.get("tokens").cloned().unwrap_or(0.into()),
            of(b.max_tokens.map(|x| x.to_string()))
        ));
    }
    if u.get("costUsd").is_some() || b.max_cost_usd.is_some() {
        parts.push(format!(
            "${:.4}{}",
            u.get("costUsd").and_then(|v| v.as_f64()).unwrap_or(0.0),
            of(b.max_cost_usd.map(|x| format!("${x}")))
        ));
    }
    parts.join(", ")
}

fn md_escape_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown: outcome, claims with verdicts and evidence links, screenshots embedded,
/// budget used, steps and the timeline.
pub fn markdown(r: &Report, a: &Audit, links: &Links<'_>) -> String {
    let p = &r.predicate;
    let mut s = format!("# viber report: {}\n\n", p.run_id);
    s.push_str(&format!("- **Goal:** {}\n", p.goal));
    s.push_str(&format!(
        "- **Outcome:** {} (exit {}): {}\n",
        p.outcome.status, p.outcome.exit_code, p.outcome.reason
    ));
    s.push_str(&format!(
        "- **Claims:** {} proven, {} failed, {} unproven\n",
        p.summary.proven, p.summary.failed, p.summary.unproven
    ));
    s.push_str(&format!("- **Signature:** {}\n", signature_line(a)));
    s.push_str(&format!(
        "- **Evidence:** {} of {} files match their sha256\n",
        a.evidence_ok, a.evidence_files
    ));
    s.push_str(&format!("- **Budget used:** {}\n", budget_line(r)));
    s.push_str(&format!(
        "- **Mode:** {} · **Host:** {} · **Workdir:** `{}`\n",
        p.mode.as_str(),
        p.host,
        p.workdir
    ));
    s.push_str(&format!(
        "- **Started:** {} · **Ended:** {}\n\n",
        p.created_at, p.ended_at
    ));

    s.push_str("## Claims\n\n| # | Claim | Check | Verdict |\n|---|---|---|---|\n");
    for c in &p.claims {
        s.push_str(&format!(
            "| {} | {} | {} | **{}** |\n",
            c.index,
            md_escape_cell(&c.claim),
            c.kind,
            c.verdict
        ));
    }
    for c in &p.claims {
        s.push_str(&format!(
            "\n### {}. {} — {}\n\n{}\n",
            c.index, c.claim, c.verdict, c.reason
        ));
        if !c.evidence.is_empty() {
            s.push_str("\nEvidence:\n\n");
            for e in &c.evidence {
                s.push_str(&format!(
                    "- [{}]({}) ({} bytes, sha256 `{}`)\n",
                    e.path,
                    links.href(&e.path),
                    e.bytes,
                    e.sha256
                ));
            }
            for e in c.evidence.iter().filter(|e| e.label == "screenshot") {
                s.push_str(&format!(
                    "\n![screenshot of claim {}]({})\n",
                    c.index,
                    links.href(&e.path)
                ));
            }
        }
        s.push_str(&format!("\nReproduce:\n\n```sh\n{}\n```\n", c.reproduce));
    }

    if !p.steps.is_empty() {
        s.push_str("\n## Steps\n\n| # | Name | Command | Exit | Log |\n|---|---|---|---|---|\n");
        for st in &p.steps {
            s.push_str(&format!(
                "| {} | {} | `{}` | {} | [{}]({}) |\n",
                st.index,
                md_escape_cell(&st.name),
                md_escape_cell(&st.command),
                st.exit_status
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| st.state.clone()),
                st.log,
                links.href(&st.log)
            ));
        }
    }
    if !p.timeline.is_empty() {
        s.push_str("\n## Timeline\n\n");
        for t in &p.timeline {
            s.push_str(&format!("- `{}` {}\n", t.ts, t.event));
        }
    }
    s
}

/// Text XML 1.0 can carry: escaped, and without the control characters it forbids.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The start of each text evidence file of a claim, for a failure message.
fn excerpts(c: &ClaimEntry, workspace: &Path) -> String {
    let mut s = format!("{}\n\nreproduce: {}\n", c.reason, c.reproduce);
    for e in &c.evidence {
        if e.label == "screenshot" {
            s.push_str(&format!("\n--- {} (PNG) ---\n", e.path));
            continue;
        }
        let Ok(bytes) = std::fs::read(workspace.join(&e.path)) else {
            continue;
        };
        let cut = bytes.len() > EXCERPT;
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT)]).into_owned();
        s.push_str(&format!("\n--- {} ---\n{text}", e.path));
        if cut {
            s.push_str(&format!("\n[... {} more bytes]", bytes.len() - EXCERPT));
        }
        s.push('\n');
    }
    s
}

/// JUnit XML: one testsuite for the run, one testcase per claim. A failed claim is a
/// `<failure>`, an unproven one an `<error>` (the check could not prove anything), so CI
/// never counts either as passing.
pub fn junit(r: &Report, workspace: &Path) -> String {
    let p = &r.predicate;
    let secs = (p.ended_at.duration_since(p.created_at).as_secs_f64() * 1000.0).round() / 1000.0;
    let attrs = format!(
        "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{secs}\"",
        p.summary.claims, p.summary.failed, p.summary.unproven
    );
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!("<testsuites name=\"viber\" {attrs}>\n"));
    s.push_str(&format!(
        "  <testsuite name=\"{}\" {attrs} timestamp=\"{}\" hostname=\"{}\">\n",
        xml_escape(&format!("viber run {}", p.run_id)),
        xml_escape(&p.created_at.to_string()),
        xml_escape(&p.host)
    ));
    s.push_str("    <properties>\n");
    for (k, v) in [
        ("runId", p.run_id.clone()),
        ("goal", p.goal.clone()),
        ("status", p.outcome.status.to_string()),
        ("reason", p.outcome.reason.clone()),
    ] {
        s.push_str(&format!(
            "      <property name=\"{k}\" value=\"{}\"/>\n",
            xml_escape(&v)
        ));
    }
    s.push_str("    </properties>\n");
    for c in &p.claims {
        s.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\">\n",
            xml_escape(&format!("viber.{}.{}", p.run_id, c.kind)),
            xml_escape(&format!("claim {}: {}", c.index, c.claim))
        ));
        let body = xml_escape(&excerpts(c, workspace));
        match c.verdict {
            Verdict::Proven => {}
            Verdict::Failed => s.push_str(&format!(
                "      <failure message=\"{}\" type=\"failed\">{body}</failure>\n",
                xml_escape(&c.reason)
            )),
            Verdict::Unproven => s.push_str(&format!(
                "      <error message=\"{}\" type=\"unproven\">{body}</error>\n",
                xml_escape(&c.reason)
            )),
        }
        s.push_str(&format!(
            "      <system-out>{}</system-out>\n    </testcase>\n",
            xml_escape(&format!(
                "{}: {}\nreproduce: {}",
                c.verdict, c.reason, c.reproduce
            ))
        ));
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page (no scripts, no external resources), next to the report.
pub fn html(r: &Report, a: &Audit, links: &Links<'_>) -> String {
    let p = &r.predicate;
    let mut s = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    s.push_str(&format!(
        "<title>viber report {}</title>\n<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}\
         .proven{{color:#176f2c}}.failed{{color:#b00020}}.unproven{{color:#8a6100}}pre{{background:#f5f5f5;padding:.6em;overflow:auto}}\
         img{{max-width:100%;border:1px solid #ccc}}</style></head><body>\n",
        html_escape(&p.run_id)
    ));
    s.push_str(&format!(
        "<h1>viber report {}</h1>\n<ul>\n<li><b>Goal:</b> {}</li>\n<li><b>Outcome:</b> {} (exit {}): {}</li>\n\
         <li><b>Signature:</b> {}</li>\n<li><b>Evidence:</b> {} of {} files match their sha256</li>\n\
         <li><b>Budget used:</b> {}</li>\n</ul>\n",
        html_escape(&p.run_id),
        html_escape(&p.goal),
        p.outcome.status,
        p.outcome.exit_code,
        html_escape(&p.outcome.reason),
        html_escape(&signature_line(a)),
        a.evidence_ok,
        a.evidence_files,
        html_escape(&budget_line(r)),
    ));
    s.push_str("<h2>Claims</h2>\n");
    for c in &p.claims {
        s.push_str(&format!(
            "<h3>{}. {} — <span class=\"{v}\">{v}</span></h3>\n<p>{}</p>\n<ul>\n",
            c.index,
            html_escape(&c.claim),
            html_escape(&c.reason),
            v = c.verdict
        ));
        for e in &c.evidence {
            s.push_str(&format!(
                "<li><a href=\"{}\">{}</a> <small>sha256 {}</small></li>\n",
                html_escape(&links.href(&e.path)),
                html_escape(&e.path),
                e.sha256
            ));
        }
        s.push_str("</ul>\n");
        for e in c.evidence.iter().filter(|e| e.label == "screenshot") {
            s.push_str(&format!(
                "<img src=\"{}\" alt=\"screenshot of claim {}\">\n",
                html_escape(&links.href(&e.path)),
                c.index
            ));
        }
        s.push_str(&format!("<pre>{}</pre>\n", html_escape(&c.reproduce)));
    }
    if !p.timeline.is_empty() {
        s.push_str("<h2>Timeline</h2>\n<ul>\n");
        for t in &p.timeline {
            s.push_str(&format!(
                "<li><code>{}</code> {}</li>\n",
                t.ts,
                html_escape(&t.event)
            ));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</body></html>\n");
    s
}
