//! `viber runs`: every run this gateway knows, queued ones included.

use serde_json::json;

use super::Ctx;
use crate::error::Error;
use crate::output;
use crate::protocol::Scope;
use crate::protocol::runs::{RunStatus, RunSummary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only runs with this status (queued, running, succeeded, failed, ...)
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let mut params = json!({});
    if let Some(s) = &args.status {
        let status: RunStatus = serde_json::from_value(json!(s))
            .map_err(|_| Error::Usage(format!("unknown status {s:?}")))?;
        params["status"] = json!(status);
    }
    let client = ctx.connect(vec![Scope::OperatorRead]).await?;
    let payload = client.request("run.list", params).await?;
    client.close();
    let runs: Vec<RunSummary> = serde_json::from_value(payload["runs"].clone())
        .map_err(|e| Error::Failed(format!("the gateway sent an unreadable run list: {e}")))?;
    if ctx.json() {
        output::json(&json!({"schema": "viber.runs/v1", "runs": runs}));
        return Ok(());
    }
    if runs.is_empty() {
        output::line("no runs");
        return Ok(());
    }
    output::line(&format!(
        "{:<24} {:<17} {:<20} GOAL",
        "RUN", "STATUS", "CREATED"
    ));
    for r in runs {
        let status = match r.queue_position {
            Some(p) => format!("queued (#{p})"),
            None => r.status.to_string(),
        };
        output::line(&format!(
            "{:<24} {:<17} {:<20} {}",
            r.run_id,
            status,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.goal
        ));
    }
    Ok(())
}
