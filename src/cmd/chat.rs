//! `viber chat RUN "text"`: steer a live run. Text reaches the planner as feedback at its
//! next step; the flags pause, resume, cancel, re-scope or re-prioritize the run. Controls
//! take effect between actions: the current action always finishes (cancel kills it).

use serde_json::{Value, json};

use super::Ctx;
use crate::error::Error;
use crate::output;
use crate::protocol::Scope;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["text", "pause", "resume", "cancel", "reprioritize", "rescope"]))]
pub struct Args {
    /// The run to steer
    #[arg(value_name = "RUN")]
    run: String,
    /// Feedback for the planner
    #[arg(value_name = "TEXT")]
    text: Option<String>,
    /// Finish the current action, then start no new one
    #[arg(long)]
    pause: bool,
    /// Continue a paused run where it was
    #[arg(long)]
    resume: bool,
    /// Stop the run (its panes and what they started are killed)
    #[arg(long)]
    cancel: bool,
    /// Move a queued run to this place in the queue (1 = next)
    #[arg(long, value_name = "N")]
    reprioritize: Option<usize>,
    /// Replace the goal; the plan is redone from the current state
    #[arg(long, value_name = "GOAL")]
    rescope: Option<String>,
    /// A stable key so a retried command is applied once
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let (method, params): (&str, Value) = if let Some(text) = &args.text {
        (
            "chat.send",
            json!({"runId": args.run, "text": text, "idempotencyKey": key}),
        )
    } else {
        let mut p = json!({"runId": args.run, "idempotencyKey": key});
        let action = if args.pause {
            "pause"
        } else if args.resume {
            "resume"
        } else if args.cancel {
            "cancel"
        } else if let Some(n) = args.reprioritize {
            p["position"] = json!(n);
            "reprioritize"
        } else if let Some(goal) = &args.rescope {
            p["goal"] = json!(goal);
            "rescope"
        } else {
            return Err(Error::Usage(
                "give TEXT or one of --pause, --resume, --cancel, --reprioritize, --rescope".into(),
            ));
        };
        p["action"] = json!(action);
        ("run.control", p)
    };
    let client = ctx.connect(vec![Scope::OperatorWrite]).await?;
    let mut v = client.request(method, params).await?;
    client.close();
    if ctx.json() {
        v["schema"] = json!("viber.chat/v1");
        output::json(&v);
    } else if method == "chat.send" {
        output::line(&format!("sent to run {}", args.run));
    } else {
        output::line(&format!(
            "{} requested for run {}{}",
            v["action"].as_str().unwrap_or(""),
            args.run,
            v["queuePosition"]
                .as_u64()
                .map(|p| format!(" (now #{p} in the queue)"))
                .unwrap_or_default()
        ));
    }
    Ok(())
}
