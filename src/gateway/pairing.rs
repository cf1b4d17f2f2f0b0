//! Device pairing on the gateway side: the `device.pair.*` and `device.list` methods, and
//! the trust the gateway extends without a request (keys in `gateway/trusted_keys`, and
//! the gateway's own device key).
//!
//! Two rules hold everywhere here. An approver never grants a scope it does not hold
//! itself (`operator.admin` may grant `node.exec`, since it administers the gateway).
//! And tokens never leave this module in the clear except inside the `hello-ok` of the
//! device they belong to: approval and rotation only *owe* the device a token (an empty
//! hash), which its next connect carrying the gateway token is issued. So no token is
//! ever stored (idempotency records, logs) or handed to a third party.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::pending::PendingRequest;
use super::{ConnHandle, Gateway};
use crate::identity::{self, DeviceKey};
use crate::protocol::methods::expand;
use crate::protocol::{ErrorCode, ErrorShape, Role, Scope, events};
use crate::store::devices::DeviceRecord;
use crate::store::trusted_keys;
use crate::store::{Home, StoreError};

/// Why a key is trusted without a pairing request.
#[derive(Debug, Clone, PartialEq)]
pub struct Trusted {
    pub scopes: Vec<Scope>,
    /// `trusted_keys:LINE`, or `owner` for the gateway's own device key.
    pub source: String,
    /// The owner's key still presents the gateway token (it always has it): its trust only
    /// spares it a pairing request. A trusted_keys entry's signature is its credential.
    pub needs_token: bool,
}

struct TrustState {
    /// (mtime, len) of the file when last read: a change re-reads it.
    stamp: Option<(SystemTime, u64)>,
    keys: Vec<trusted_keys::TrustedKey>,
}

/// The keys the gateway pairs without asking. `trusted_keys` is re-read whenever it
/// changes, so `viber pair trust` takes effect without a restart.
pub struct Trust {
    path: PathBuf,
    owner: Option<[u8; 32]>,
    state: Mutex<TrustState>,
}

impl Trust {
    /// Loads the trusted keys (logging every bad line with its number) and the gateway's
    /// own device key: whoever can read that key can read `gateway/token` too, so it is
    /// the gateway's owner and gets `operator.admin`, even with `auto_approve_local` off.
    pub fn load(home: &Home) -> Result<Self, StoreError> {
        let owner = match DeviceKey::load(&home.device_key()) {
            Ok(k) => Some(k.public_raw()),
            Err(e) => {
                tracing::warn!("no owner key ({e}): the gateway's own device is not pre-trusted");
                None
            }
        };
        let trust = Trust {
            path: home.trusted_keys(),
            owner,
            state: Mutex::new(TrustState {
                stamp: None,
                keys: Vec::new(),
            }),
        };
        trust.refresh()?;
        Ok(trust)
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let md = std::fs::metadata(&self.path).ok()?;
        Some((md.modified().ok()?, md.len()))
    }

    fn refresh(&self) -> Result<(), StoreError> {
        let stamp = self.stamp();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.stamp == stamp && stamp.is_some() {
            return Ok(());
        }
        let (keys, errors) = trusted_keys::load(&self.path)?;
        for e in &errors {
            tracing::warn!(
                "{}:{}: {}; line skipped, the other keys still load",
                self.path.display(),
                e.line,
                e.message
            );
        }
        if stamp.is_some() {
            tracing::info!(
                "{} trusted key(s) loaded from {}",
                keys.len(),
                self.path.display()
            );
        }
        state.keys = keys;
        state.stamp = stamp;
        Ok(())
    }

    /// Whether `raw` is trusted, and with which scopes.
    pub fn lookup(&self, raw: &[u8; 32]) -> Option<Trusted> {
        if self.owner.as_ref() == Some(raw) {
            return Some(Trusted {
                scopes: vec![Scope::OperatorAdmin, Scope::NodeExec],
                source: "owner".into(),
                needs_token: true,
            });
        }
        if let Err(e) = self.refresh() {
            tracing::warn!("cannot re-read trusted keys: {e}");
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.keys.iter().find(|k| &k.raw == raw).map(|k| Trusted {
            scopes: k.scopes.clone(),
            source: format!("trusted_keys:{}", k.line),
            needs_token: false,
        })
    }
}

/// Whether a connection holding `held` may grant `scope`.
pub fn can_grant(scope: Scope, held: &[Scope]) -> bool {
    scope.is_satisfied_by(held)
        || (scope == Scope::NodeExec && held.contains(&Scope::OperatorAdmin))
}

/// A pending request as the wire and the CLI show it.
pub fn request_view(r: &PendingRequest, now: jiff::Timestamp) -> Value {
    json!({
        "requestId": r.request_id,
        "deviceId": r.device_id,
        "fingerprint": fingerprint(&r.public_key),
        "name": r.name,
        "role": r.role,
        "scopes": r.scopes,
        "peer": r.peer,
        "createdAt": r.created,
        "expiresAt": r.expires(),
        "ageMs": (now.as_millisecond() - r.created.as_millisecond()).max(0),
        "rejected": r.rejected,
    })
}

fn device_view(gw: &Gateway, d: &DeviceRecord) -> Value {
    let connections = gw.presence().iter().filter(|p| p.device_id == d.id).count();
    json!({
        "deviceId": d.id,
        "fingerprint": fingerprint(&d.public_key),
        "name": d.name,
        "role": d.role,
        "scopes": d.scopes,
        "createdAt": d.created,
        "lastSeen": d.last_seen,
        "trusted": d.trusted,
        "tokenIssued": !d.token_hash.is_empty(),
        "connections": connections,
    })
}

fn fingerprint(public_b64: &str) -> String {
    identity::decode_public_key(public_b64)
        .map(|raw| identity::fingerprint_of(&raw))
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RequestParams {
    request_id: String,
    #[serde(default)]
    scopes: Option<Vec<Scope>>,
    #[allow(dead_code)]
    idempotency_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeviceParams {
    device_id: String,
    #[serde(default)]
    scopes: Option<Vec<Scope>>,
    #[allow(dead_code)]
    idempotency_key: String,
}

fn decode<T: DeserializeOwned>(params: Value) -> Result<T, ErrorShape> {
    let params = if params.is_null() { json!({}) } else { params };
    if !params.is_object() {
        return Err(ErrorShape::invalid("params must be a JSON object"));
    }
    serde_json::from_value(params).map_err(|e| ErrorShape::invalid(format!("invalid params: {e}")))
}

fn internal(e: StoreError) -> ErrorShape {
    ErrorShape::internal(format!("cannot persist the change: {e}"))
}

/// Answers one `device.*` request whose scope and idempotency key were already checked.
pub async fn handle(
    gw: &Arc<Gateway>,
    conn: &Arc<ConnHandle>,
    method: &str,
    params: Value,
) -> Result<Value, ErrorShape> {
    let now = jiff::Timestamp::now();
    match method {
        "device.pair.list" => {
            let _: NoParams = decode(params)?;
            let waiting = gw
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .waiting(now);
            let list: Vec<Value> = waiting.iter().map(|r| request_view(r, now)).collect();
            Ok(json!({ "requests": list }))
        }
        "device.list" => {
            let _: NoParams = decode(params)?;
            let devices: Vec<DeviceRecord> = gw
                .devices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .all()
                .to_vec();
            let list: Vec<Value> = devices.iter().map(|d| device_view(gw, d)).collect();
            Ok(json!({ "devices": list }))
        }
        "device.pair.approve" => {
            let p: RequestParams = decode(params)?;
            approve(gw, conn, p, now)
        }
        "device.pair.reject" => {
            let p: RequestParams = decode(params)?;
            if p.scopes.is_some() {
                return Err(ErrorShape::invalid("reject takes no scopes"));
            }
            let rejected = gw
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reject(&p.request_id, now)
                .map_err(internal)?
                .ok_or_else(|| no_request(&p.request_id))?;
            tracing::info!(device = %rejected.device_id, by = %conn.device_id, "pairing request {} rejected", rejected.request_id);
            gw.broadcast(
                events::DEVICE_PAIR_RESOLVED,
                &json!({
                    "requestId": rejected.request_id,
                    "deviceId": rejected.device_id,
                    "decision": "rejected",
                    "by": conn.device_id,
                }),
            );
            Ok(json!({ "request": request_view(&rejected, now), "decision": "rejected" }))
        }
        "device.pair.revoke" => {
            let p: DeviceParams = decode(params)?;
            if p.scopes.is_some() {
                return Err(ErrorShape::invalid("revoke takes no scopes"));
            }
            let id = resolve_device(gw, &p.device_id)?;
            let removed = gw
                .devices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id)
                .map_err(internal)?
                .ok_or_else(|| no_device(&p.device_id))?;
            // After the record is gone, so a reconnect racing this cannot get back in.
            let closed = gw.close_device(
                &id,
                crate::protocol::close::POLICY_VIOLATION,
                "device revoked",
            );
            let still_trusted = identity::decode_public_key(&removed.public_key)
                .ok()
                .and_then(|raw| gw.trust.lookup(&raw))
                .map(|t| t.source);
            tracing::info!(device = %id, by = %conn.device_id, closed, "device revoked");
            let mut view = device_view(gw, &removed);
            view["connections"] = json!(0);
            Ok(json!({
                "device": view,
                "revoked": true,
                "closedConnections": closed,
                "stillTrusted": still_trusted,
            }))
        }
        "device.pair.rotate" => {
            let p: DeviceParams = decode(params)?;
            let id = resolve_device(gw, &p.device_id)?;
            let record = {
                let mut devices = gw.devices.lock().unwrap_or_else(|p| p.into_inner());
                let mut record = devices
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| no_device(&p.device_id))?;
                if let Some(scopes) = p.scopes {
                    if record.trusted {
                        return Err(ErrorShape::new(
                            ErrorCode::Conflict,
                            "this device's scopes come from gateway/trusted_keys: edit its line there",
                        ));
                    }
                    record.scopes = check_grant(&scopes, record.role, &conn.scopes)?;
                }
                record.token_hash = String::new();
                devices.upsert(record.clone()).map_err(internal)?;
                record
            };
            let closed = gw.close_device_except(
                &id,
                conn.id,
                crate::protocol::close::POLICY_VIOLATION,
                "device token rotated",
            );
            tracing::info!(device = %id, by = %conn.device_id, closed, "device token rotated");
            Ok(json!({
                "device": device_view(gw, &record),
                "rotated": true,
                "closedConnections": closed,
                "reissue": "the device's next connect with the gateway token is issued a new device token",
            }))
        }
        _ => Err(ErrorShape::internal(format!(
            "{method} is in the method table but has no handler"
        ))),
    }
}

fn no_request(id: &str) -> ErrorShape {
    ErrorShape::new(
        ErrorCode::NotFound,
        format!("no pending pairing request {id:?} (unknown, already decided, or expired: requests expire after 5 minutes)"),
    )
    .with_details(json!({ "requestId": id }))
}

fn no_device(id: &str) -> ErrorShape {
    ErrorShape::new(ErrorCode::NotFound, format!("no paired device {id:?}"))
        .with_details(json!({ "deviceId": id }))
}

/// The scopes to grant: within `role`, and each one held by the approver.
fn check_grant(scopes: &[Scope], role: Role, held: &[Scope]) -> Result<Vec<Scope>, ErrorShape> {
    if scopes.is_empty() {
        return Err(ErrorShape::invalid("no scopes to grant"));
    }
    if let Some(s) = scopes.iter().find(|s| s.role() != role) {
        return Err(ErrorShape::invalid(format!(
            "{s} is not a scope of role {role}"
        )));
    }
    let not_held: Vec<Scope> = scopes
        .iter()
        .copied()
        .filter(|s| !can_grant(*s, held))
        .collect();
    if !not_held.is_empty() {
        let names: Vec<&str> = not_held.iter().map(|s| s.as_str()).collect();
        return Err(ErrorShape::new(
            ErrorCode::Forbidden,
            format!(
                "cannot grant {}: this connection does not hold it",
                names.join(", ")
            ),
        )
        .with_details(json!({ "notHeld": not_held, "held": held })));
    }
    let mut out = scopes.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

fn approve(
    gw: &Gateway,
    conn: &ConnHandle,
    p: RequestParams,
    now: jiff::Timestamp,
) -> Result<Value, ErrorShape> {
    // The pending lock is held across the device write so two approvers cannot both
    // approve one request; the order pending -> devices is the only nesting anywhere.
    let mut pending = gw.pending.lock().unwrap_or_else(|p| p.into_inner());
    let req = pending
        .get_waiting(&p.request_id, now)
        .ok_or_else(|| no_request(&p.request_id))?;
    let granted = match p.scopes {
        Some(scopes) => check_grant(&scopes, req.role, &conn.scopes)?,
        None => {
            // Default: what was asked, cut down to what the approver can give.
            let held = expand(&conn.scopes);
            let asked = expand(&req.scopes);
            let mut s: Vec<Scope> = asked.into_iter().filter(|s| can_grant(*s, &held)).collect();
            if req.scopes.contains(&Scope::OperatorAdmin) && can_grant(Scope::OperatorAdmin, &held)
            {
                s = vec![Scope::OperatorAdmin];
            }
            check_grant(&s, req.role, &conn.scopes)?
        }
    };
    let record = DeviceRecord {
        id: req.device_id.clone(),
        public_key: req.public_key.clone(),
        name: req.name.clone(),
        role: req.role,
        scopes: granted.clone(),
        token_hash: String::new(),
        created: now,
        last_seen: None,
        trusted: false,
    };
    gw.devices
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .upsert(record.clone())
        .map_err(internal)?;
    pending.remove(&req.request_id).map_err(internal)?;
    drop(pending);
    tracing::info!(device = %req.device_id, by = %conn.device_id, scopes = ?granted, "pairing request {} approved", req.request_id);
    gw.broadcast(
        events::DEVICE_PAIR_RESOLVED,
        &json!({
            "requestId": req.request_id,
            "deviceId": req.device_id,
            "decision": "approved",
            "role": req.role,
            "scopes": granted,
            "by": conn.device_id,
        }),
    );
    Ok(json!({
        "request": request_view(&req, now),
        "decision": "approved",
        "device": device_view(gw, &record),
    }))
}

/// Finds a paired device by id, `SHA256:` fingerprint, or a unique id prefix (8+ chars).
fn resolve_device(gw: &Gateway, wanted: &str) -> Result<String, ErrorShape> {
    let devices = gw.devices.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(d) = devices.get(wanted) {
        return Ok(d.id.clone());
    }
    let matches: Vec<&DeviceRecord> = if wanted.starts_with("SHA256:") {
        devices
            .all()
            .iter()
            .filter(|d| fingerprint(&d.public_key) == wanted)
            .collect()
    } else if wanted.len() >= 8 {
        let w = wanted.to_ascii_lowercase();
        devices
            .all()
            .iter()
            .filter(|d| d.id.starts_with(&w))
            .collect()
    } else {
        Vec::new()
    };
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(no_device(wanted)),
        _ => Err(ErrorShape::invalid(format!(
            "{wanted:?} matches {} devices: give more of the id",
            matches.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_never_exceed_what_the_approver_holds() {
        let pairing_only = [Scope::OperatorRead, Scope::OperatorPairing];
        assert!(check_grant(&[Scope::OperatorRead], Role::Operator, &pairing_only).is_ok());
        let e = check_grant(&[Scope::OperatorWrite], Role::Operator, &pairing_only).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = check_grant(&[Scope::OperatorAdmin], Role::Operator, &pairing_only).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = check_grant(&[Scope::NodeExec], Role::Node, &pairing_only).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(check_grant(&[Scope::NodeExec], Role::Node, &[Scope::OperatorAdmin]).is_ok());
        let e =
            check_grant(&[Scope::NodeExec], Role::Operator, &[Scope::OperatorAdmin]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "role mismatch");
        assert!(check_grant(&[], Role::Operator, &[Scope::OperatorAdmin]).is_err());
    }
}
