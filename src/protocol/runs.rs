//! Wire shapes of runs: the task a run is started from, its status, and the summary that
//! `run.get`/`run.list` return. The session log's event types live here too, because the
//! gateway, the node worker and every client fold the same events into the same summary.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task, as in a task file (DESIGN.md section 6). Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub goal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Where commands run; relative paths are resolved against the task file's directory
    /// by the client before the task is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default)]
    pub budget: Budget,
    /// A scripted plan: used when no LLM is configured.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Acceptance checks, run by the verifier, never by the agent.
    #[serde(default)]
    pub accept: Vec<Check>,
    /// Rules for this task, on top of config.yaml's (strictest wins).
    #[serde(default, skip_serializing_if = "PolicyRules::is_empty")]
    pub policy: PolicyRules,
    /// How long an approval may wait before the run ends `blocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_secs: Option<u64>,
}

/// `allow` / `ask` / `deny` rules by command prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyRules {
    pub allow: Vec<String>,
    pub ask: Vec<String>,
    pub deny: Vec<String>,
}

impl PolicyRules {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.ask.is_empty() && self.deny.is_empty()
    }
}

/// What a run has used so far, checked against its [`Budget`] before every step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub steps: u32,
    pub wall_secs: u64,
    pub tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    AlwaysAsk,
    AgentDecides,
    AlwaysExecute,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::AlwaysAsk => "always-ask",
            Mode::AgentDecides => "agent-decides",
            Mode::AlwaysExecute => "always-execute",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A shell command line (run by `sh -c` in a tmux pane).
    pub run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Keep it running (a server) while later steps and the verifier run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
}

/// One acceptance check: a claim and exactly one way to prove it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub claim: String,
    // command
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_exit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_regex: Option<String>,
    // file
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    // http
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub screenshot: bool,
    // terminal: a step's pane log, by step name or 1-based index
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<String>,
    // shared by file and terminal
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl Check {
    /// The check's kind, or why it has none / too many.
    pub fn kind(&self) -> Result<&'static str, String> {
        let kinds: Vec<&'static str> = [
            ("command", self.command.is_some()),
            ("file", self.file.is_some()),
            ("http", self.http.is_some()),
            ("terminal", self.terminal.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(k, _)| k)
        .collect();
        match kinds.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "accept entry {:?} has no check: give one of command, file, http, terminal",
                self.claim
            )),
            many => Err(format!(
                "accept entry {:?} mixes check types {}: give exactly one",
                self.claim,
                many.join(", ")
            )),
        }
    }
}

impl Task {
    /// Rules serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.goal.trim().is_empty() {
            return Err("goal must not be empty".into());
        }
        for (i, s) in self.steps.iter().enumerate() {
            if s.run.trim().is_empty() {
                return Err(format!("steps[{i}].run must not be empty"));
            }
        }
        for c in &self.accept {
            c.kind()?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Paused,
    AwaitingApproval,
    /// Every claim proven.
    Succeeded,
    /// A claim failed or an action errored.
    Failed,
    /// Nothing proved the work: no checks, or a check could not run.
    Unverified,
    Blocked,
    BudgetExhausted,
    Cancelled,
    Interrupted,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            RunStatus::Queued
                | RunStatus::Running
                | RunStatus::Paused
                | RunStatus::AwaitingApproval
        )
    }

    /// The CLI exit code for a run that ended this way (DESIGN.md section 8).
    pub fn exit_code(self) -> u8 {
        match self {
            RunStatus::Succeeded => 0,
            RunStatus::Failed | RunStatus::Unverified => 1,
            RunStatus::Blocked => 4,
            RunStatus::BudgetExhausted => 5,
            RunStatus::Cancelled | RunStatus::Interrupted => 6,
            // Not ended: a client that stops watching early has proven nothing.
            RunStatus::Queued
            | RunStatus::Running
            | RunStatus::Paused
            | RunStatus::AwaitingApproval => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Unverified => "unverified",
            RunStatus::Blocked => "blocked",
            RunStatus::BudgetExhausted => "budget_exhausted",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Exited,
    Killed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepSummary {
    /// 1-based, as people count steps.
    pub index: u32,
    pub name: String,
    pub command: String,
    pub background: bool,
    pub state: StepState,
    #[serde(default)]
    pub exit_status: Option<i32>,
    /// The pane log, relative to the run's workspace.
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TmuxInfo {
    pub socket: String,
    pub session: String,
    /// What a person types to watch the run live, read-only.
    pub attach: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    #[serde(default)]
    pub phase: Option<String>,
    pub goal: String,
    pub mode: Mode,
    pub agent: String,
    pub workspace: String,
    pub session_log: String,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
    #[serde(default)]
    pub ended_at: Option<jiff::Timestamp>,
    #[serde(default)]
    pub reason: Option<String>,
    pub exit_code: u8,
    pub steps: Vec<StepSummary>,
    pub tmux: TmuxInfo,
    #[serde(default)]
    pub worker_pid: Option<u32>,
    /// Position in the queue (1 = next) while queued.
    #[serde(default)]
    pub queue_position: Option<usize>,
    /// seq of the last session-log event folded into this summary.
    pub seq: u64,
    /// The limits in force (config's budget_policies tightened by the task).
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub usage: Usage,
    /// Earlier goals, oldest first, when an operator re-scoped the run.
    #[serde(default)]
    pub goal_history: Vec<String>,
    /// The action waiting for an operator, while `awaiting_approval`.
    #[serde(default)]
    pub pending_approval: Option<Value>,
    /// `script` or `llm`.
    #[serde(default)]
    pub planner: Option<String>,
}

/// One line of a session log: `agents/{agent}/sessions/{run}.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEvent {
    pub ts: jiff::Timestamp,
    pub run_id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Value,
}

/// Session event types.
pub mod kind {
    pub const CREATED: &str = "run.created";
    pub const STATUS: &str = "run.status";
    pub const PROGRESS: &str = "run.progress";
    pub const WORKER: &str = "worker.started";
    pub const BUDGET: &str = "run.budget";
    pub const USAGE: &str = "run.usage";
    pub const RESCOPED: &str = "run.rescoped";
    pub const CHAT: &str = "run.chat";
    pub const APPROVAL_REQUESTED: &str = "approval.requested";
    pub const APPROVAL_RESOLVED: &str = "approval.resolved";
    pub const PLANNER: &str = "planner";
}
