//! The three frame shapes (request, response, event), tagged by `type` as in the OpenClaw
//! gateway protocol so its tooling can read our traffic.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ErrorShape;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Frame {
    Req(Request),
    Res(Response),
    Event(EventFrame),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub method: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorShape>,
}

impl Response {
    pub fn ok(id: impl Into<String>, payload: Value) -> Self {
        Response {
            id: id.into(),
            ok: true,
            payload: Some(payload),
            error: None,
        }
    }

    pub fn err(id: impl Into<String>, error: ErrorShape) -> Self {
        Response {
            id: id.into(),
            ok: false,
            payload: None,
            error: Some(error),
        }
    }

    /// The outcome as a `Result`; a malformed response (ok without payload, error without
    /// error) reads as an empty payload or an `INTERNAL` error rather than a panic.
    pub fn into_result(self) -> Result<Value, ErrorShape> {
        if self.ok {
            Ok(self.payload.unwrap_or(Value::Null))
        } else {
            Err(self
                .error
                .unwrap_or_else(|| ErrorShape::internal("error response without an error")))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    pub event: String,
    #[serde(default)]
    pub payload: Value,
    /// Absent only on `connect.challenge`, which precedes the sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Frame {
    pub fn to_text(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self).expect("frame serializes")
    }
}

/// Builds an event frame's text around an already serialized payload, so fan-out to many
/// connections serializes the payload once and only formats the per-connection `seq`.
pub fn event_text(event: &str, payload_json: &str, seq: u64) -> String {
    let mut s = String::with_capacity(payload_json.len() + event.len() + 48);
    s.push_str(r#"{"type":"event","event":"#);
    s.push_str(&serde_json::to_string(event).expect("string serializes"));
    s.push_str(r#","payload":"#);
    s.push_str(payload_json);
    s.push_str(r#","seq":"#);
    s.push_str(&seq.to_string());
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_round_trip_in_the_documented_shape() {
        let req: Frame = serde_json::from_value(json!({
            "type": "req", "id": "1", "method": "run.start", "params": {"a": 1}
        }))
        .unwrap();
        assert_eq!(
            req,
            Frame::Req(Request {
                id: "1".into(),
                method: "run.start".into(),
                params: json!({"a": 1})
            })
        );
        let res = Frame::Res(Response::err(
            "1",
            ErrorShape::new(super::super::ErrorCode::Forbidden, "no"),
        ));
        let v: Value = serde_json::from_str(&res.to_text()).unwrap();
        assert_eq!(v["type"], "res");
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], "FORBIDDEN");
        assert_eq!(v["error"]["retryAfterMs"], Value::Null);
    }

    #[test]
    fn event_text_is_a_valid_event_frame() {
        let text = event_text("tick", r#"{"ts":5}"#, 17);
        let f: Frame = serde_json::from_str(&text).unwrap();
        assert_eq!(
            f,
            Frame::Event(EventFrame {
                event: "tick".into(),
                payload: json!({"ts": 5}),
                seq: Some(17)
            })
        );
    }
}
