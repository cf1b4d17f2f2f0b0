//! `viber policy check "COMMAND"`: what a run would do with a command in a given mode, and
//! which rule decides. Reads config.yaml (and optionally a task file) locally; no gateway.

use serde_json::json;

use super::Ctx;
use crate::agent::policy::{Policy, Verdict};
use crate::error::Error;
use crate::output;
use crate::protocol::runs::Mode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Decide one command: allow, ask or deny, and why
    Check {
        /// The command line, quoted
        command: String,
        /// always-ask, agent-decides or always-execute [default: config autonomy.default_mode]
        #[arg(long, value_name = "MODE", value_parser = parse_mode)]
        mode: Option<Mode>,
        /// Also apply this task file's policy and mode
        #[arg(long, value_name = "FILE")]
        task: Option<std::path::PathBuf>,
    },
}

pub fn parse_mode(s: &str) -> Result<Mode, String> {
    serde_json::from_value(json!(s))
        .map_err(|_| format!("unknown mode {s:?} (always-ask, agent-decides, always-execute)"))
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let Action::Check {
        command,
        mode,
        task,
    } = args.action;
    let config = ctx.config()?;
    let task = match task {
        Some(p) => Some(crate::agent::task::load(&p).map_err(|e| Error::BadInput(e.to_string()))?),
        None => None,
    };
    let mode = mode
        .or(task.as_ref().and_then(|t| t.mode))
        .unwrap_or(config.autonomy.default_mode);
    let mut policy =
        Policy::new(config.autonomy.risky.clone()).with("config", config.autonomy.rules());
    if let Some(t) = &task {
        policy.add("task", t.policy.clone());
    }
    let d = policy.decide(mode, &command);
    if ctx.json() {
        output::json(&json!({
            "schema": "viber.policy/v1",
            "command": command,
            "mode": mode,
            "decision": d.decision,
            "rule": d.rule,
            "reason": d.reason,
            "risky": policy.is_risky(&command),
        }));
    } else {
        let word = match d.decision {
            Verdict::Allow => "allow",
            Verdict::Ask => "ask",
            Verdict::Deny => "deny",
        };
        output::line(&format!("{word}: {} (mode {})", d.reason, mode.as_str()));
    }
    Ok(())
}
