//! `viber status`: connect, handshake, and show the gateway, this device and health.

use serde_json::{Value, json};

use super::Ctx;
use crate::client::Client;
use crate::error::Error;
use crate::identity::DeviceKey;
use crate::output;
use crate::protocol::Scope;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(ctx: &Ctx, _args: Args) -> Result<(), Error> {
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
    )
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}
