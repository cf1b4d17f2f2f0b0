//! `report.json`: what a run claimed, what the verifier found, and the hashes of every
//! evidence file, as an in-toto Statement v1 (subjects = evidence files with their sha256,
//! predicate = the run and its claims). Written once at the end of a run, after the
//! terminal logs have drained, then signed by the gateway (see [`super::sign`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::checks::{self, Env, StepRef, Verdict};
use crate::agent::session;
use crate::protocol::runs::{Budget, Check, Mode, RunStatus, RunSummary, SessionEvent, kind};
use crate::store::{StoreError, fsutil};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://viber.dev/report/v1";
pub const SCHEMA: &str = "viber.report/v1";
pub const FILE: &str = "report.json";
pub const SIG_FILE: &str = "report.json.sig";

/// The whole report: an in-toto Statement v1 (consumers ignore the extra `schema` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub schema: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

/// One evidence file: its path relative to the run's workspace and its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    pub run_id: String,
    /// The goal at the end; earlier ones (an operator re-scoped the run) in `goalHistory`.
    pub goal: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goal_history: Vec<String>,
    pub mode: Mode,
    pub agent: String,
    pub host: String,
    pub workdir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_file: Option<String>,
    pub created_at: jiff::Timestamp,
    pub ended_at: jiff::Timestamp,
    pub outcome: Outcome,
    pub budget: Budget,
    pub usage: Value,
    pub summary: Summary,
    pub claims: Vec<ClaimEntry>,
    pub steps: Vec<StepEntry>,
    pub timeline: Vec<TimelineEntry>,
    pub verifier: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub status: RunStatus,
    pub reason: String,
    pub exit_code: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub claims: usize,
    pub proven: usize,
    pub failed: usize,
    pub unproven: usize,
}

impl Summary {
    pub fn of(claims: &[ClaimEntry]) -> Self {
        let n = |v: Verdict| claims.iter().filter(|c| c.verdict == v).count();
        Summary {
            claims: claims.len(),
            proven: n(Verdict::Proven),
            failed: n(Verdict::Failed),
            unproven: n(Verdict::Unproven),
        }
    }
}

/// One claim: the check as the task gave it, the verdict, and the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimEntry {
    /// 1-based, in the task's order.
    pub index: u32,
    pub claim: String,
    pub kind: String,
    pub check: Check,
    pub verdict: Verdict,
    pub reason: String,
    /// Whether the verifier ran this check at all (not when the run ended before).
    pub checked: bool,
    pub evidence: Vec<EvidenceRef>,
    /// A shell command that repeats the check by hand, without viber.
    pub reproduce: String,
    /// What the check saw, as recorded in its `observed.json` evidence file.
    pub observed: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRef {
    pub label: String,
    /// Relative to the run's workspace (the directory holding report.json).
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepEntry {
    pub index: u32,
    pub name: String,
    pub command: String,
    pub background: bool,
    pub state: String,
    #[serde(default)]
    pub exit_status: Option<i32>,
    /// The pane log, relative to the workspace (a subject when it exists).
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub ts: jiff::Timestamp,
    pub event: String,
}

impl Report {
    pub fn outcome(&self) -> &Outcome {
        &self.predicate.outcome
    }

    /// The steps as terminal checks refer to them.
    pub fn step_refs(&self) -> Vec<StepRef> {
        self.predicate
            .steps
            .iter()
            .map(|s| StepRef {
                index: s.index,
                name: s.name.clone(),
            })
            .collect()
    }
}

/// The steps as terminal checks refer to them: those the run executed, from its session
/// log (a planner may run other steps than the task lists); the task's own steps, named
/// `step-N` when unnamed, when the log has none yet.
pub fn steps_of(
    home: &crate::store::Home,
    events: &[SessionEvent],
    task: &crate::protocol::runs::Task,
) -> Vec<StepRef> {
    let executed: Vec<StepRef> = session::fold(home, events)
        .map(|s| {
            s.steps
                .iter()
                .map(|st| StepRef {
                    index: st.index,
                    name: st.name.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    if !executed.is_empty() {
        return executed;
    }
    task.steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepRef {
            index: i as u32 + 1,
            name: s.name.clone().unwrap_or_else(|| format!("step-{}", i + 1)),
        })
        .collect()
}

/// Everything the end of a run knows, to write its report from.
pub struct Input<'a> {
    pub run_id: &'a str,
    pub task: &'a crate::protocol::runs::Task,
    pub workspace: &'a Path,
    pub workdir: &'a Path,
    pub status: RunStatus,
    pub reason: &'a str,
    /// What the verifier found; `None` when the run ended before it ran.
    pub claims: Option<Vec<ClaimEntry>>,
    /// The run's session log so far: steps, timeline and usage come from it.
    pub events: &'a [SessionEvent],
    pub home: &'a crate::store::Home,
}

/// Builds the report (without writing it).
pub fn build(input: Input<'_>) -> Report {
    let summary: Option<RunSummary> = session::fold(input.home, input.events);
    let steps_ref = steps_of(input.home, input.events, input.task);
    let env = Env {
        root: input.workspace,
        workdir: input.workdir,
        logs: input.workspace,
        steps: &steps_ref,
        scrub: &[],
    };
    let claims = match input.claims {
        Some(c) => c,
        None => {
            let why = format!("the run ended {} before verification", input.status);
            input
                .task
                .accept
                .iter()
                .enumerate()
                .map(|(i, c)| checks::unchecked(c, i as u32 + 1, &why, &env))
                .collect()
        }
    };
    let steps: Vec<StepEntry> = summary
        .as_ref()
        .map(|s| {
            s.steps
                .iter()
                .map(|st| StepEntry {
                    index: st.index,
                    name: st.name.clone(),
                    command: st.command.clone(),
                    background: st.background,
                    state: serde_json::to_value(st.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    exit_status: st.exit_status,
                    log: st.log.clone(),
                })
                .collect()
        })
        .unwrap_or_default();

    // Subjects: every claim's evidence, then every step's pane log that exists.
    let mut subject: Vec<Subject> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in &claims {
        for e in &c.evidence {
            if seen.insert(e.path.clone()) {
                subject.push(Subject {
                    name: e.path.clone(),
                    digest: BTreeMap::from([("sha256".to_string(), e.sha256.clone())]),
                });
            }
        }
    }
    for st in &steps {
        let p = input.workspace.join(&st.log);
        if let Ok(h) = super::sha256_file(&p)
            && seen.insert(st.log.clone())
        {
            subject.push(Subject {
                name: st.log.clone(),
                digest: BTreeMap::from([("sha256".to_string(), h)]),
            });
        }
    }

    let now = jiff::Timestamp::now();
    let created_at = summary.as_ref().map(|s| s.created_at).unwrap_or(now);
    let wall = now.duration_since(created_at).as_secs_f64();
    // What the budget counted (steps, wall time, tokens, cost), as the worker last
    // recorded it; the run's own figures when it recorded none.
    let usage = input
        .events
        .iter()
        .rev()
        .find(|e| e.kind == kind::USAGE && e.payload.is_object())
        .map(|e| e.payload.clone())
        .unwrap_or_else(|| {
            json!({
                "steps": steps.len(),
                "wallSecs": (wall * 1000.0).round() / 1000.0,
            })
        });
    // The limits in force (task budget merged with config policies), else the task's.
    let budget: Budget = input
        .events
        .iter()
        .rev()
        .find(|e| e.kind == kind::BUDGET)
        .and_then(|e| serde_json::from_value(e.payload["limits"].clone()).ok())
        .unwrap_or_else(|| input.task.budget.clone());
    let task_file = input
        .events
        .iter()
        .find(|e| e.kind == kind::CREATED)
        .and_then(|e| e.payload["taskFile"].as_str().map(str::to_string));

    Report {
        statement_type: STATEMENT_TYPE.into(),
        schema: SCHEMA.into(),
        subject,
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            run_id: input.run_id.to_string(),
            goal: summary
                .as_ref()
                .map(|s| s.goal.clone())
                .unwrap_or_else(|| input.task.goal.clone()),
            goal_history: summary
                .as_ref()
                .map(|s| s.goal_history.clone())
                .unwrap_or_default(),
            mode: summary
                .as_ref()
                .map(|s| s.mode)
                .or(input.task.mode)
                .unwrap_or(Mode::AgentDecides),
            agent: summary
                .as_ref()
                .map(|s| s.agent.clone())
                .unwrap_or_else(|| session::DEFAULT_AGENT.into()),
            host: crate::identity::hostname(),
            workdir: input.workdir.display().to_string(),
            task_file,
            created_at,
            ended_at: now,
            outcome: Outcome {
                status: input.status,
                reason: input.reason.to_string(),
                exit_code: input.status.exit_code(),
            },
            budget,
            usage,
            summary: Summary::of(&claims),
            claims,
            steps,
            timeline: timeline(input.events),
            verifier: json!({"name": "viber", "version": env!("CARGO_PKG_VERSION")}),
        },
    }
}

/// What happened when, in words, from the session log.
fn timeline(events: &[SessionEvent]) -> Vec<TimelineEntry> {
    let mut out = Vec::new();
    for e in events {
        let p = &e.payload;
        let text = match e.kind.as_str() {
            kind::CREATED => Some("run created".to_string()),
            kind::RESCOPED => p["goal"]
                .as_str()
                .map(|g| format!("re-scoped by an operator to: {g}")),
            kind::CHAT => p["text"]
                .as_str()
                .map(|t| format!("feedback from an operator: {t}")),
            kind::APPROVAL_REQUESTED => p["command"].as_str().map(|c| {
                format!(
                    "approval requested for `{c}` ({})",
                    p["reason"].as_str().unwrap_or("")
                )
            }),
            kind::APPROVAL_RESOLVED => p["decision"].as_str().map(|d| {
                let msg = p["message"].as_str().filter(|m| !m.is_empty());
                format!(
                    "approval {d}{}",
                    msg.map(|m| format!(": {m}")).unwrap_or_default()
                )
            }),
            kind::BUDGET => p["exhausted"]
                .as_str()
                .map(|l| format!("budget exhausted: {l} (usage {})", p["usage"])),
            kind::STATUS => match (p["status"].as_str(), p["phase"].as_str()) {
                (Some(s), Some(ph)) => Some(format!("{s} ({ph})")),
                (Some(s), None) => Some(s.to_string()),
                _ => None,
            },
            kind::PROGRESS => {
                if p["step"].is_object() {
                    let st = &p["step"];
                    match p["event"].as_str() {
                        Some("started") => Some(format!(
                            "step {} `{}` started",
                            st["index"],
                            st["command"].as_str().unwrap_or("")
                        )),
                        Some("exited") => Some(format!(
                            "step {} exited with status {}",
                            st["index"], p["exitStatus"]
                        )),
                        Some(other) => Some(format!("step {} {other}", st["index"])),
                        None => None,
                    }
                } else if p["claim"].is_object() {
                    p["verdict"].as_str().map(|v| {
                        format!(
                            "claim {} {v}: {}",
                            p["claim"]["index"],
                            p["reason"].as_str().unwrap_or("")
                        )
                    })
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(event) = text {
            out.push(TimelineEntry { ts: e.ts, event });
        }
    }
    out
}

/// Serializes the report exactly as it is signed: pretty JSON and a final newline.
pub fn to_bytes(report: &Report) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(report).expect("serializes");
    b.push(b'\n');
    b
}

/// Writes `workspace/report.json` (atomically) and removes a stale signature.
pub fn write(workspace: &Path, report: &Report) -> Result<PathBuf, StoreError> {
    let path = workspace.join(FILE);
    let _ = std::fs::remove_file(workspace.join(SIG_FILE));
    fsutil::write_atomic(&path, &to_bytes(report), 0o644)?;
    Ok(path)
}

/// Reads a report; the error says what is wrong in words.
pub fn parse(bytes: &[u8]) -> Result<Report, String> {
    let r: Report =
        serde_json::from_slice(bytes).map_err(|e| format!("not a viber report: {e}"))?;
    if r.statement_type != STATEMENT_TYPE {
        return Err(format!(
            "_type is {:?}, expected {STATEMENT_TYPE:?}",
            r.statement_type
        ));
    }
    if r.predicate_type != PREDICATE_TYPE {
        return Err(format!(
            "predicateType is {:?}, expected {PREDICATE_TYPE:?}",
            r.predicate_type
        ));
    }
    if r.schema != SCHEMA {
        return Err(format!("schema is {:?}, expected {SCHEMA:?}", r.schema));
    }
    Ok(r)
}

/// The signature file next to a report file.
pub fn sig_path(report: &Path) -> PathBuf {
    let mut name = report
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| FILE.into());
    name.push(".sig");
    report.with_file_name(name)
}
