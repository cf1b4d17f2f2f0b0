//! `viber status`: connect, handshake, and show the gateway, this device and health.

use serde_json::{Value, json};

use super::Ctx;
use crate::client::Client;
use crate::error::Error;
use crate::identity::DeviceKey;
use crate::output;
use crate::protocol::Scope;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show one run instead: status, steps, workspace, and how to attach to its tmux
    #[arg(value_name = "RUN")]
    run: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    if let Some(run_id) = &args.run {
        let client = ctx.connect(vec![Scope::OperatorRead]).await?;
        let s = super::run::get(&client, run_id).await?;
        client.close();
        if ctx.json() {
            output::json(&super::run::run_json(&s));
        } else {
            output::line(&human_run(&s));
        }
        return Ok(());
    }
    let client = ctx.connect(vec![Scope::OperatorAdmin]).await?;
    let key = ctx.device_key()?;
    let status = fetch(&client, &key).await?;
    client.close();
    if ctx.json() {
        output::json(&status);
    } else {
        output::line(&human(&status));
    }
    Ok(())
}

/// The `viber.status/v1` object: the gateway's `status` answer plus what this side knows.
pub async fn fetch(client: &Client, key: &DeviceKey) -> Result<Value, Error> {
    let s = client.request("status", json!({})).await?;
    Ok(json!({
        "schema": "viber.status/v1",
        "gateway": s["gateway"],
        "device": {
            "id": key.device_id(),
            "fingerprint": key.fingerprint(),
            "role": client.hello.auth.role,
            "scopes": client.hello.auth.scopes,
            "connId": client.hello.server.conn_id,
            "local": s["connection"]["local"],
        },
        "health": s["health"],
        "presence": s["presence"],
        "features": client.hello.features,
    }))
}

fn human(s: &Value) -> String {
    let g = &s["gateway"];
    let d = &s["device"];
    let h = &s["health"];
    let uptime = g["uptimeMs"].as_u64().unwrap_or(0) / 1000;
    let scopes: Vec<&str> = d["scopes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "gateway  {}  viber {}, protocol {}, pid {}, up {}\n\
         device   {}  {} [{}]\n\
         health   {}, {} connection(s)",
        g["url"].as_str().unwrap_or("?"),
        g["version"].as_str().unwrap_or("?"),
        g["protocol"],
        g["pid"],
        duration(uptime),
        d["fingerprint"].as_str().unwrap_or("?"),
        d["role"].as_str().unwrap_or("?"),
        scopes.join(", "),
        if h["ok"].as_bool() == Some(true) {
            "ok"
        } else {
            "NOT OK"
        },
        h["connections"],
    ) + &signer(&g["signing"])
}

/// The report-signing key's allowed_signers line, when the gateway has one.
fn signer(signing: &Value) -> String {
    match signing["allowedSigners"].as_str() {
        Some(line) => format!("\nsigner   {line}"),
        None => String::new(),
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn human_run(s: &crate::protocol::runs::RunSummary) -> String {
    let mut out = format!(
        "run       {}  {}{}\ngoal      {}\n",
        s.run_id,
        s.status,
        s.phase
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default(),
        s.goal
    );
    if let Some(r) = &s.reason {
        out.push_str(&format!("reason    {r}\n"));
    }
    for st in &s.steps {
        let state = match st.exit_status {
            Some(code) => format!("exited {code}"),
            None => format!("{:?}", st.state).to_lowercase(),
        };
        out.push_str(&format!(
            "step {:<4} {state:<10} `{}`\n",
            st.index, st.command
        ));
    }
    out.push_str(&format!(
        "workspace {}\nlog       {}\nattach    {}",
        s.workspace, s.session_log, s.tmux.attach
    ));
    out
}
