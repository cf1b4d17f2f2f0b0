//! Who is on the other end: locality, the device proof, tokens, pairing and the scopes a
//! connection gets. Every check that can refuse a connection lives here, in one order:
//! well-formed key, nonce, freshness, signature, token, then pairing.

use std::net::SocketAddr;

use serde_json::json;
use tokio_tungstenite::tungstenite::http::HeaderMap;

use super::Gateway;
use super::pending::{PendingRequest, Requested};
use crate::identity;
use crate::protocol::methods::effective_scopes;
use crate::protocol::{ConnectParams, ErrorCode, ErrorShape, MAX_SIGNATURE_SKEW_MS, Role, Scope};
use crate::store::devices::DeviceRecord;

/// Headers that mean a proxy stands between the peer and us.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Loopback peer, no forwarding header, no foreign Origin.
    pub local: bool,
}

/// The Origin header's verdict, decided during the upgrade.
#[derive(Debug, PartialEq, Eq)]
pub enum OriginCheck {
    Absent,
    Own,
    Foreign(String),
}

/// Whether `origin` names this gateway itself (http or https on our port, on a loopback
/// name or the bound host).
pub fn check_origin(headers: &HeaderMap, local_addr: SocketAddr) -> OriginCheck {
    let Some(origin) = headers.get("origin") else {
        return OriginCheck::Absent;
    };
    let origin = origin
        .to_str()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    let port = local_addr.port();
    let mut own = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if !local_addr.ip().is_unspecified() {
        own.push(local_addr.to_string());
    }
    let is_own = own.iter().any(|hp| {
        origin.eq_ignore_ascii_case(&format!("http://{hp}"))
            || origin.eq_ignore_ascii_case(&format!("https://{hp}"))
    });
    if is_own {
        OriginCheck::Own
    } else {
        OriginCheck::Foreign(origin)
    }
}

/// DESIGN.md section 3: local only if the TCP peer is loopback AND no forwarding header AND
/// no Origin other than our own.
pub fn is_local(peer: SocketAddr, headers: &HeaderMap, origin: &OriginCheck) -> bool {
    peer.ip().is_loopback()
        && !FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h))
        && !matches!(origin, OriginCheck::Foreign(_))
}

/// A connection that passed the handshake.
#[derive(Debug)]
pub struct Authed {
    pub device_id: String,
    pub role: Role,
    pub scopes: Vec<Scope>,
    /// A device token issued during this handshake (new pairing); the client stores it.
    pub issued_token: Option<String>,
}

/// Whether an error counts against the peer's failed-auth budget.
pub fn counts_as_failure(e: &ErrorShape) -> bool {
    matches!(
        e.code,
        ErrorCode::Unauthorized | ErrorCode::DeviceAuthInvalid | ErrorCode::NotPaired
    )
}

fn device_invalid(msg: &str) -> ErrorShape {
    ErrorShape::new(ErrorCode::DeviceAuthInvalid, msg)
}

pub fn authenticate(
    gw: &Gateway,
    p: &ConnectParams,
    nonce: &str,
    peer: &Peer,
    now_ms: u64,
) -> Result<Authed, ErrorShape> {
    // 1. The device proof.
    let raw = identity::decode_public_key(&p.device.public_key)
        .map_err(|e| device_invalid(&format!("malformed public key: {e}")))?;
    let device_id = identity::device_id_of(&raw);
    if device_id != p.device.id {
        return Err(device_invalid(
            "device id is not the sha256 of the public key",
        ));
    }
    if !identity::secrets_equal(&p.device.nonce, nonce) {
        return Err(device_invalid(
            "nonce does not match this connection's challenge",
        ));
    }
    if now_ms.abs_diff(p.device.signed_at) > MAX_SIGNATURE_SKEW_MS {
        return Err(device_invalid(
            "signature is stale: signedAt is more than 120 s from the gateway's clock",
        )
        .with_details(json!({"serverTime": now_ms})));
    }
    identity::verify(&raw, p.signature_payload().as_bytes(), &p.device.signature)
        .map_err(|e| device_invalid(&format!("device signature invalid: {e}")))?;

    // 2. A secret: the gateway token, or this device's own token. A key listed in
    //    trusted_keys needs neither: like an SSH authorized key, its signature over this
    //    connection's nonce is the credential.
    let trusted = gw.trust.lookup(&raw);
    let known = gw
        .devices
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&device_id)
        .cloned();
    if let Some(token) = p.auth.token.as_deref() {
        if !gw.token_matches(token) {
            return Err(ErrorShape::new(
                ErrorCode::Unauthorized,
                "the gateway token does not match",
            ));
        }
    } else if let Some(device_token) = p.auth.device_token.as_deref() {
        let Some(dev) = &known else {
            return Err(ErrorShape::new(
                ErrorCode::NotPaired,
                "this device is not paired with the gateway",
            ));
        };
        // An empty hash (token owed after approval or rotation) matches nothing.
        if dev.token_hash.is_empty()
            || !identity::secrets_equal(&identity::hash_token(device_token), &dev.token_hash)
        {
            return Err(ErrorShape::new(
                ErrorCode::Unauthorized,
                "the device token does not match (revoked or rotated?)",
            ));
        }
    } else if trusted.as_ref().is_none_or(|t| t.needs_token) {
        return Err(ErrorShape::new(
            ErrorCode::Unauthorized,
            "no token: pass the gateway token or a device token",
        ));
    }

    // 3. Pairing: a known device keeps what it was granted.
    if let Some(mut dev) = known {
        let mut changed = false;
        if dev.trusted {
            // Its scopes follow trusted_keys; a removed line unpairs it.
            let Some(t) = &trusted else {
                let _ = gw
                    .devices
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&device_id);
                return Err(ErrorShape::new(
                    ErrorCode::NotPaired,
                    "this device's key is no longer in the gateway's trusted_keys",
                ));
            };
            changed = dev.scopes != t.scopes;
            dev.scopes = t.scopes.clone();
        } else if dev.role != p.role {
            return Err(ErrorShape::new(
                ErrorCode::Forbidden,
                format!("this device is paired as {}, not {}", dev.role, p.role),
            ));
        }
        // A token is owed (just approved, or rotated): issue it to a connection that proved
        // itself with the gateway token or a trusted key.
        let mut issued = None;
        if dev.token_hash.is_empty() && (p.auth.token.is_some() || trusted.is_some()) {
            let token = identity::random_hex(32);
            dev.token_hash = identity::hash_token(&token);
            issued = Some(token);
        }
        if issued.is_some() || changed {
            gw.devices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .upsert(dev.clone())
                .map_err(|e| ErrorShape::internal(format!("cannot store the device token: {e}")))?;
        }
        return finish(device_id, p, &dev.scopes, issued);
    }
    let requested: Vec<Scope> = p
        .scopes
        .iter()
        .copied()
        .filter(|s| s.role() == p.role)
        .collect();
    let name = p
        .client
        .display_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| p.client.id.clone());
    let pair_now = match &trusted {
        Some(t) => Some((t.scopes.clone(), true, t.source.clone())),
        None if peer.local && gw.config.pairing.auto_approve_local => {
            Some((requested.clone(), false, "local".to_string()))
        }
        None => None,
    };
    if let Some((scopes, is_trusted, how)) = pair_now {
        let token = identity::random_hex(32);
        let record = DeviceRecord {
            id: device_id.clone(),
            public_key: p.device.public_key.clone(),
            name,
            role: p.role,
            scopes: scopes.clone(),
            token_hash: identity::hash_token(&token),
            created: jiff::Timestamp::now(),
            last_seen: Some(jiff::Timestamp::now()),
            trusted: is_trusted,
        };
        gw.devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upsert(record)
            .map_err(|e| ErrorShape::internal(format!("cannot store the pairing: {e}")))?;
        // A request it filed earlier is moot now.
        let _ = gw
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget_device(&device_id);
        tracing::info!(device = %device_id, role = %p.role, "paired device ({how})");
        return finish(device_id, p, &scopes, Some(token));
    }
    let request = PendingRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        device_id: device_id.clone(),
        public_key: p.device.public_key.clone(),
        name,
        role: p.role,
        scopes: requested,
        peer: peer.addr.to_string(),
        created: jiff::Timestamp::now(),
        rejected: false,
    };
    let now = jiff::Timestamp::now();
    let outcome = gw
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .request(request.clone(), now)
        .map_err(|e| ErrorShape::internal(format!("cannot store the pairing request: {e}")))?;
    let request_id = match outcome {
        Requested::New(id) => {
            tracing::info!(device = %device_id, peer = %peer.addr, "pairing request {id} filed");
            gw.broadcast(
                crate::protocol::events::DEVICE_PAIR_REQUESTED,
                &super::pairing::request_view(&request, now),
            );
            id
        }
        Requested::Existing(id) => id,
        Requested::Rejected(id) => {
            return Err(ErrorShape::new(
                ErrorCode::Forbidden,
                format!(
                    "pairing request {id} was rejected by an operator; a new request is possible 5 minutes after it was filed"
                ),
            )
            .with_details(json!({ "requestId": id, "deviceId": device_id, "status": "rejected" })));
        }
        Requested::Full => {
            return Err(ErrorShape::new(
                ErrorCode::RateLimited,
                "too many pending pairing requests; try again later",
            )
            .retry_after(60_000));
        }
    };
    Err(ErrorShape::new(
        ErrorCode::PairingRequired,
        "this device must be approved by an operator before it can connect",
    )
    .with_details(json!({ "requestId": request_id, "deviceId": device_id })))
}

fn finish(
    device_id: String,
    p: &ConnectParams,
    granted: &[Scope],
    issued_token: Option<String>,
) -> Result<Authed, ErrorShape> {
    let scopes = effective_scopes(p.role, &p.scopes, granted);
    if scopes.is_empty() {
        return Err(ErrorShape::new(
            ErrorCode::Forbidden,
            "none of the requested scopes is granted to this device",
        )
        .with_details(json!({"requested": p.scopes, "granted": granted})));
    }
    Ok(Authed {
        device_id,
        role: p.role,
        scopes,
        issued_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn locality_follows_the_design() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let me: SocketAddr = "127.0.0.1:7878".parse().unwrap();
        let remote: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let none = headers(&[]);
        assert!(is_local(lo, &none, &check_origin(&none, me)));
        assert!(!is_local(remote, &none, &check_origin(&none, me)));
        for h in ["forwarded", "x-forwarded-for", "x-real-ip"] {
            let hm = headers(&[(h, "1.2.3.4")]);
            assert!(!is_local(lo, &hm, &check_origin(&hm, me)), "{h}");
        }
        let own = headers(&[("origin", "http://localhost:7878")]);
        assert_eq!(check_origin(&own, me), OriginCheck::Own);
        assert!(is_local(lo, &own, &check_origin(&own, me)));
        let foreign = headers(&[("origin", "http://evil.example")]);
        assert!(matches!(
            check_origin(&foreign, me),
            OriginCheck::Foreign(_)
        ));
        assert!(!is_local(lo, &foreign, &check_origin(&foreign, me)));
    }
}
