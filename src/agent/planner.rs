//! Planners decide the next action; the worker's one loop executes it. The scripted planner
//! replays a task's `steps` (offline, deterministic); the LLM planner asks an
//! OpenAI-compatible model. Neither can mark work done: `finish` only hands over to the
//! verifier.

use serde::{Deserialize, Serialize};

use crate::protocol::runs::{Step, Task};

/// One thing the planner wants done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "tool", rename_all = "snake_case")]
pub enum Action {
    Shell {
        command: String,
        #[serde(default)]
        background: bool,
        #[serde(default)]
        name: Option<String>,
    },
    WriteFile {
        path: String,
        content: String,
    },
    ReadFile {
        path: String,
    },
    /// The planner believes it is done; the verifier decides.
    Finish {
        summary: String,
        #[serde(default)]
        claims: Vec<String>,
    },
}

impl Action {
    /// The string the autonomy policy judges.
    pub fn policy_command(&self) -> String {
        match self {
            Action::Shell { command, .. } => command.clone(),
            Action::WriteFile { path, .. } => format!("write_file {path}"),
            Action::ReadFile { path } => format!("read_file {path}"),
            Action::Finish { .. } => "finish".into(),
        }
    }
}

/// What came of an action, as the planner gets to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub action: Action,
    /// Exit status for shell actions.
    pub exit: Option<i32>,
    /// Bounded text: the tail of the pane log, a file's head, an error.
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Failed(String),
}

/// Token use and cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlanUsage {
    pub tokens: u64,
    pub cost_usd: f64,
}

/// Replays the task's steps in order.
pub struct ScriptPlanner {
    steps: Vec<Step>,
    next: usize,
}

impl ScriptPlanner {
    pub fn new(task: &Task) -> Self {
        ScriptPlanner {
            steps: task.steps.clone(),
            next: 0,
        }
    }
}

pub enum Planner {
    Script(ScriptPlanner),
    Llm(Box<super::llm::LlmPlanner>),
}

impl Planner {
    pub fn name(&self) -> &'static str {
        match self {
            Planner::Script(_) => "script",
            Planner::Llm(_) => "llm",
        }
    }

    /// Whether the planner reacts to what it observes. A script cannot: a failed step
    /// ends its run. A model sees the failure and decides what to do next.
    pub fn adapts(&self) -> bool {
        matches!(self, Planner::Llm(_))
    }

    /// The next action; `None` when the plan is exhausted.
    pub async fn next(&mut self) -> Result<Option<Action>, PlanError> {
        match self {
            Planner::Script(p) => {
                let Some(step) = p.steps.get(p.next) else {
                    return Ok(None);
                };
                p.next += 1;
                Ok(Some(Action::Shell {
                    command: step.run.clone(),
                    background: step.background,
                    name: step.name.clone(),
                }))
            }
            Planner::Llm(p) => p.next().await,
        }
    }

    pub fn observe(&mut self, obs: Observation) {
        if let Planner::Llm(p) = self {
            p.observe(obs);
        }
    }

    /// Chat from a person, delivered before the next decision.
    pub fn feedback(&mut self, text: &str) {
        if let Planner::Llm(p) = self {
            p.feedback(text);
        }
    }

    /// A new goal: the plan is redone from the current state.
    pub fn rescope(&mut self, goal: &str) {
        if let Planner::Llm(p) = self {
            p.rescope(goal);
        }
    }

    pub fn usage(&self) -> PlanUsage {
        match self {
            Planner::Script(_) => PlanUsage::default(),
            Planner::Llm(p) => p.usage(),
        }
    }

    /// Summaries of requests and responses since the last call, for the session log.
    pub fn drain_log(&mut self) -> Vec<serde_json::Value> {
        match self {
            Planner::Script(_) => Vec::new(),
            Planner::Llm(p) => p.drain_log(),
        }
    }
}
