//! The handshake payloads: the server's challenge, the client's `connect` params with their
//! signed device proof, and the server's `hello-ok`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::methods::{Role, Scope};

/// Payload of the `connect.challenge` event the server sends first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes, base64url without padding.
    pub nonce: String,
    /// Server time, ms since the Unix epoch.
    pub ts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientMode {
    Cli,
    Ui,
    Backend,
    Node,
}

impl ClientMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientMode::Cli => "cli",
            ClientMode::Ui => "ui",
            ClientMode::Backend => "backend",
            ClientMode::Node => "node",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub id: String,
    /// The device's human name (host name or `identity.name`), shown to the operator who
    /// approves a pairing request. Not signed: it is a label, never an authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub version: String,
    pub platform: String,
    pub mode: ClientMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProof {
    /// Hex sha256 of the raw public key.
    pub id: String,
    /// Raw 32-byte Ed25519 key, base64url without padding.
    pub public_key: String,
    /// Ed25519 signature over [`signature_payload`], base64url without padding.
    pub signature: String,
    /// ms since the Unix epoch.
    pub signed_at: u64,
    pub nonce: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

impl AuthParams {
    /// The secret that goes into the signature string: the gateway token, else the device
    /// token, else nothing.
    pub fn signed_secret(&self) -> &str {
        self.token
            .as_deref()
            .or(self.device_token.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectParams {
    pub min_protocol: u32,
    pub max_protocol: u32,
    pub client: ClientInfo,
    pub role: Role,
    #[serde(default)]
    pub scopes: Vec<Scope>,
    pub device: DeviceProof,
    #[serde(default)]
    pub auth: AuthParams,
}

impl ConnectParams {
    /// The exact string the device signs (version `v3`).
    pub fn signature_payload(&self) -> String {
        signature_payload(
            &self.device.id,
            &self.client,
            self.role,
            &self.scopes,
            self.device.signed_at,
            self.auth.signed_secret(),
            &self.device.nonce,
        )
    }
}

/// `v3|{deviceId}|{client.id}|{client.mode}|{role}|{scopes,}|{signedAt}|{secret}|{nonce}|{platform}|{deviceFamily}`
pub fn signature_payload(
    device_id: &str,
    client: &ClientInfo,
    role: Role,
    scopes: &[Scope],
    signed_at: u64,
    secret: &str,
    nonce: &str,
) -> String {
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    format!(
        "v3|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
        device_id,
        client.id,
        client.mode.as_str(),
        role.as_str(),
        scopes.join(","),
        signed_at,
        secret,
        nonce,
        client.platform,
        client.device_family.as_deref().unwrap_or("")
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub version: String,
    pub conn_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Features {
    pub methods: Vec<String>,
    pub events: Vec<String>,
}

/// One connected client, as shown in presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub conn_id: String,
    pub device_id: String,
    pub client_id: String,
    pub mode: ClientMode,
    pub role: Role,
    pub platform: String,
    pub local: bool,
    pub connected_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub ok: bool,
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub connections: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub presence: Vec<PresenceEntry>,
    pub health: Health,
    pub state_version: u64,
    pub uptime_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    pub role: Role,
    pub scopes: Vec<Scope>,
    /// Present when the gateway just issued this device a token (pairing, rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub max_payload: usize,
    pub max_buffered_bytes: usize,
    pub tick_interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    /// Always `hello-ok`.
    #[serde(rename = "type")]
    pub kind: String,
    pub protocol: u32,
    pub server: ServerInfo,
    pub features: Features,
    pub snapshot: Snapshot,
    pub auth: HelloAuth,
    pub policy: Policy,
}

/// Whether a client offering `[min, max]` can speak `version`.
pub fn negotiate(min: u32, max: u32, version: u32) -> bool {
    min <= version && version <= max
}

/// Extracts `params.idempotencyKey` when present and valid (1..=128 chars).
pub fn idempotency_key(params: &Value) -> Option<&str> {
    params
        .get("idempotencyKey")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && k.chars().count() <= 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_payload_matches_the_documented_layout() {
        let client = ClientInfo {
            id: "viber-cli".into(),
            display_name: None,
            version: "0.1.0".into(),
            platform: "linux".into(),
            mode: ClientMode::Cli,
            device_family: None,
        };
        let s = signature_payload(
            "abc",
            &client,
            Role::Operator,
            &[Scope::OperatorRead, Scope::OperatorWrite],
            1700000000000,
            "tok",
            "NONCE",
        );
        assert_eq!(
            s,
            "v3|abc|viber-cli|cli|operator|operator.read,operator.write|1700000000000|tok|NONCE|linux|"
        );
    }

    #[test]
    fn negotiation_is_by_range() {
        assert!(negotiate(1, 1, 1));
        assert!(negotiate(1, 3, 1));
        assert!(!negotiate(2, 3, 1));
        assert!(!negotiate(0, 0, 1));
    }
}
