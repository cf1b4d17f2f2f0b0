//! Request dispatch: look the method up in the protocol's table, check the connection's
//! scopes, decode typed params, answer. Adding a method means a row in
//! `protocol::methods::METHODS` and an arm here; nothing else routes requests.

use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ConnHandle, Gateway, runs};
use crate::protocol::handshake::idempotency_key;
use crate::protocol::methods::lookup;
use crate::protocol::{ErrorCode, ErrorShape, PROTOCOL_VERSION, Role};

pub async fn dispatch(
    gw: &Arc<Gateway>,
    conn: &Arc<ConnHandle>,
    method: &str,
    params: Value,
) -> Result<Value, ErrorShape> {
    let spec = lookup(method).ok_or_else(|| {
        ErrorShape::new(
            ErrorCode::UnknownMethod,
            format!("unknown method {method:?}"),
        )
    })?;
    if !spec.scope.is_satisfied_by(&conn.scopes) {
        return Err(ErrorShape::new(
            ErrorCode::Forbidden,
            format!("{method} requires scope {}", spec.scope),
        )
        .with_details(json!({"missingScope": spec.scope, "method": method})));
    }
    if spec.side_effect {
        let Some(key) = idempotency_key(&params).map(str::to_string) else {
            return Err(ErrorShape::invalid(format!(
                "{method} requires params.idempotencyKey (1..128 characters)"
            )));
        };
        let p = params.clone();
        return gw
            .idempotency
            .run(&conn.device_id, &key, method, &params, || {
                handle(gw, conn, method, p)
            })
            .await;
    }
    handle(gw, conn, method, params).await
}

/// Answers one request whose scope and idempotency key were already checked.
async fn handle(
    gw: &Arc<Gateway>,
    conn: &Arc<ConnHandle>,
    method: &str,
    params: Value,
) -> Result<Value, ErrorShape> {
    match method {
        "health" => {
            let _: NoParams = decode(params)?;
            Ok(serde_json::to_value(gw.health()).unwrap_or_default())
        }
        "status" => {
            let _: NoParams = decode(params)?;
            Ok(status(gw, conn))
        }
        "system.presence" => {
            let p: PresenceParams = decode(params)?;
            let list: Vec<_> = gw
                .presence()
                .into_iter()
                .filter(|e| p.role.is_none_or(|r| e.role == r))
                .collect();
            Ok(json!({ "presence": list, "stateVersion": gw.state_version() }))
        }
        "config.get" => {
            let _: NoParams = decode(params)?;
            // The config holds no secrets (API keys come from env vars), so all of it.
            Ok(json!({ "config": gw.config, "path": gw.home.config() }))
        }
        m if m.starts_with("device.") => super::pairing::handle(gw, conn, m, params).await,
        "run.start" => runs::start(gw, params),
        "run.get" => runs::get(gw, params),
        "run.list" => runs::list(gw, params),
        "run.control" => runs::control(gw, params),
        "run.terminal.read" => runs::terminal_read(gw, params),
        "events.subscribe" => runs::subscribe(conn, params, true),
        "events.unsubscribe" => runs::subscribe(conn, params, false),
        "node.run.claim" => runs::claim(gw, conn, params),
        "node.run.event" => runs::node_event(gw, conn, params),
        "node.terminal.output" => runs::node_output(gw, conn, params),
        "node.run.sign" => runs::sign_report(gw, conn, params),
        "node.approval.request" => runs::approval_request(gw, conn, params),
        "chat.send" => runs::chat(gw, params),
        "approval.list" => runs::approval_list(gw, params),
        "approval.resolve" => runs::approval_resolve(gw, conn, params),
        _ => Err(ErrorShape::internal(format!(
            "{method} is in the method table but has no handler"
        ))),
    }
}

fn status(gw: &Gateway, conn: &ConnHandle) -> Value {
    json!({
        "gateway": {
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": PROTOCOL_VERSION,
            "url": gw.url,
            "pid": std::process::id(),
            "home": gw.home.root(),
            "startedAt": gw.started_at,
            "uptimeMs": gw.uptime_ms(),
            // Who signs this gateway's reports: the allowed_signers line lets anyone check
            // them with stock `ssh-keygen -Y verify`.
            "signing": crate::evidence::sign::home_signer(&gw.home),
        },
        "connection": {
            "connId": conn.conn_id,
            "deviceId": conn.device_id,
            "role": conn.role,
            "scopes": conn.scopes,
            "local": conn.presence.local,
        },
        "health": gw.health(),
        "presence": gw.presence(),
        "stateVersion": gw.state_version(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceParams {
    #[serde(default)]
    role: Option<Role>,
}

/// Decodes params into `T`; absent params read as `{}`. A type mismatch is
/// `INVALID_REQUEST` naming the field.
fn decode<T: DeserializeOwned>(params: Value) -> Result<T, ErrorShape> {
    let params = if params.is_null() { json!({}) } else { params };
    if !params.is_object() {
        return Err(ErrorShape::invalid("params must be a JSON object"));
    }
    serde_json::from_value(params).map_err(|e| ErrorShape::invalid(format!("invalid params: {e}")))
}
