//! `viber approve`: list the actions waiting for a person, or answer one. Any operator
//! with `operator.approvals` can answer, from any machine paired with the gateway.

use serde_json::{Value, json};

use super::Ctx;
use crate::error::Error;
use crate::output;
use crate::protocol::Scope;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The approval to answer; without it, list pending approvals
    #[arg(value_name = "ID")]
    id: Option<String>,
    /// Let the action run
    #[arg(long, conflicts_with = "deny", requires = "id")]
    allow: bool,
    /// Refuse it: the run ends `blocked`
    #[arg(long, requires = "id")]
    deny: bool,
    /// With --allow: allow this command prefix for the rest of the run
    #[arg(long, requires = "allow")]
    remember: bool,
    /// A note recorded with the answer
    #[arg(long, value_name = "TEXT", requires = "id")]
    message: Option<String>,
    /// Only approvals of this run (when listing)
    #[arg(long, value_name = "RUN", conflicts_with = "id")]
    run: Option<String>,
    /// A stable key so a retried answer is applied once
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let client = ctx.connect(vec![Scope::OperatorApprovals]).await?;
    let Some(id) = args.id else {
        let mut params = json!({});
        if let Some(r) = &args.run {
            params["runId"] = json!(r);
        }
        let v = client.request("approval.list", params).await?;
        client.close();
        let list = v["approvals"].as_array().cloned().unwrap_or_default();
        if ctx.json() {
            output::json(&json!({"schema": "viber.approvals/v1", "approvals": list}));
        } else if list.is_empty() {
            output::line("no approvals pending");
        } else {
            for a in &list {
                output::line(&describe(a));
            }
        }
        return Ok(());
    };
    if !args.allow && !args.deny {
        return Err(Error::Usage("answer with --allow or --deny".into()));
    }
    let resolved = resolve(
        &client,
        &id,
        args.allow,
        args.remember,
        args.message.as_deref(),
        args.idempotency_key,
    )
    .await?;
    client.close();
    if ctx.json() {
        let mut v = resolved;
        v["schema"] = json!("viber.approval/v1");
        output::json(&v);
    } else {
        output::line(&format!(
            "{} `{}` (run {})",
            if args.allow { "allowed" } else { "denied" },
            resolved["command"].as_str().unwrap_or(""),
            resolved["runId"].as_str().unwrap_or("")
        ));
    }
    Ok(())
}

/// One line for a pending approval.
pub fn describe(a: &Value) -> String {
    format!(
        "{}  run {}  `{}`  ({}; expires {})",
        a["approvalId"].as_str().unwrap_or(""),
        a["runId"].as_str().unwrap_or(""),
        a["command"].as_str().unwrap_or(""),
        a["reason"].as_str().unwrap_or(""),
        a["expiresAt"].as_str().unwrap_or("?")
    )
}

pub async fn resolve(
    client: &crate::client::Client,
    id: &str,
    allow: bool,
    remember: bool,
    message: Option<&str>,
    key: Option<String>,
) -> Result<Value, Error> {
    let mut params = json!({
        "approvalId": id,
        "decision": if allow { "allow" } else { "deny" },
        "remember": remember,
        "idempotencyKey": key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    });
    if let Some(m) = message {
        params["message"] = json!(m);
    }
    Ok(client.request("approval.resolve", params).await?)
}
