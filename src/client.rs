//! The one client every verb uses: connect, challenge handshake, requests with responses
//! matched by id, and the event stream. [`handshake`] is generic over any WebSocket-like
//! stream so it can be tested without a socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::Value;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::identity::DeviceKey;
use crate::protocol::handshake::signature_payload;
use crate::protocol::{
    AuthParams, Challenge, ClientInfo, ClientMode, ConnectParams, DeviceProof, ErrorShape,
    EventFrame, Frame, HelloOk, PROTOCOL_VERSION, Request, Response, Role, Scope, events,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The gateway answered with an error (handshake or request).
    #[error("{0}")]
    Rejected(ErrorShape),
    #[error("the gateway closed the connection{}", close_text(*.code, .reason))]
    Closed { code: Option<u16>, reason: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("timed out {0}")]
    Timeout(String),
}

fn close_text(code: Option<u16>, reason: &str) -> String {
    match (code, reason.is_empty()) {
        (Some(c), false) => format!(" ({c} {reason})"),
        (Some(c), true) => format!(" ({c})"),
        (None, _) => String::new(),
    }
}

/// Who this client says it is and what it asks for.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub token: Option<String>,
    pub device_token: Option<String>,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub client_id: String,
    pub mode: ClientMode,
    /// A human name for this device, shown when it asks to be paired.
    pub display_name: Option<String>,
}

impl ConnectOptions {
    pub fn operator(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            token: None,
            device_token: None,
            role: Role::Operator,
            scopes: vec![Scope::OperatorAdmin],
            client_id: "viber-cli".into(),
            mode: ClientMode::Cli,
            display_name: None,
        }
    }

    fn client_info(&self) -> ClientInfo {
        ClientInfo {
            id: self.client_id.clone(),
            display_name: self.display_name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: std::env::consts::OS.into(),
            mode: self.mode,
            device_family: None,
        }
    }
}

/// Whether `host` (a name, an IP, or an IPv6 address in brackets) is this machine's
/// loopback: the one test for "local" wherever a URL decides something (tokens, proxies).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_matches(['[', ']']);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Something that arrives without being asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Event(EventFrame),
    Closed { code: Option<u16>, reason: String },
}

fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond().max(0) as u64
}

/// Builds signed `connect` params for `challenge`.
pub fn connect_params(key: &DeviceKey, opts: &ConnectOptions, nonce: &str) -> ConnectParams {
    let client = opts.client_info();
    let auth = AuthParams {
        token: opts.token.clone(),
        device_token: if opts.token.is_some() {
            None
        } else {
            opts.device_token.clone()
        },
    };
    let signed_at = now_ms();
    let device_id = key.device_id();
    let payload = signature_payload(
        &device_id,
        &client,
        opts.role,
        &opts.scopes,
        signed_at,
        auth.signed_secret(),
        nonce,
    );
    ConnectParams {
        min_protocol: PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        client,
        role: opts.role,
        scopes: opts.scopes.clone(),
        device: DeviceProof {
            id: device_id,
            public_key: key.public_b64(),
            signature: key.sign(payload.as_bytes()),
            signed_at,
            nonce: nonce.to_string(),
        },
        auth,
    }
}

fn close_of(msg: &Message) -> Option<ClientError> {
    if let Message::Close(frame) = msg {
        return Some(ClientError::Closed {
            code: frame.as_ref().map(|f| u16::from(f.code)),
            reason: frame
                .as_ref()
                .map(|f| f.reason.to_string())
                .unwrap_or_default(),
        });
    }
    None
}

/// The client half of the handshake over any WebSocket-like stream: wait for the
/// challenge, send a signed `connect`, return `hello-ok` or the gateway's refusal.
pub async fn handshake<S>(
    ws: &mut S,
    key: &DeviceKey,
    opts: &ConnectOptions,
) -> Result<HelloOk, ClientError>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let read_frame = async |ws: &mut S| -> Result<Frame, ClientError> {
        loop {
            let msg = ws
                .next()
                .await
                .ok_or(ClientError::Closed {
                    code: None,
                    reason: String::new(),
                })?
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            if let Some(closed) = close_of(&msg) {
                return Err(closed);
            }
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| ClientError::Protocol(format!("bad frame from gateway: {e}")));
            }
        }
    };
    let challenge = match read_frame(ws).await? {
        Frame::Event(e) if e.event == events::CONNECT_CHALLENGE => e,
        other => {
            return Err(ClientError::Protocol(format!(
                "expected connect.challenge, got {other:?}"
            )));
        }
    };
    let challenge: Challenge = serde_json::from_value(challenge.payload)
        .map_err(|e| ClientError::Protocol(format!("bad challenge: {e}")))?;
    let params = connect_params(key, opts, &challenge.nonce);
    let req = Frame::Req(Request {
        id: "connect".into(),
        method: "connect".into(),
        params: serde_json::to_value(params).expect("serializes"),
    });
    ws.send(Message::text(req.to_text()))
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    loop {
        match read_frame(ws).await? {
            Frame::Res(res) if res.id == "connect" => {
                let payload = res.into_result().map_err(ClientError::Rejected)?;
                return serde_json::from_value(payload)
                    .map_err(|e| ClientError::Protocol(format!("bad hello-ok: {e}")));
            }
            _ => continue,
        }
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Response>>>>;

/// A connected, authenticated client.
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    next_id: AtomicU64,
    pub hello: HelloOk,
    pub url: String,
}

impl Client {
    pub async fn connect(key: &DeviceKey, opts: &ConnectOptions) -> Result<Client, ClientError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .max_message_size(Some(64 << 20));
        let connecting =
            tokio_tungstenite::connect_async_with_config(&opts.url, Some(config), true);
        let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| ClientError::Unreachable {
                url: opts.url.clone(),
                reason: "timed out after 10 s".into(),
            })?
            .map_err(|e| ClientError::Unreachable {
                url: opts.url.clone(),
                reason: unreachable_reason(e),
            })?;
        let hello = tokio::time::timeout(Duration::from_secs(15), handshake(&mut ws, key, opts))
            .await
            .map_err(|_| ClientError::Timeout("waiting for the handshake".into()))??;

        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        tokio::spawn(async move {
            // Feed everything queued, then flush once: pipelined requests share a write.
            'outer: while let Some(first) = out_rx.recv().await {
                let mut next = Some(first);
                while let Some(msg) = next {
                    let closing = matches!(msg, Message::Close(_));
                    if sink.feed(msg).await.is_err() {
                        break 'outer;
                    }
                    if closing {
                        let _ = sink.flush().await;
                        break 'outer;
                    }
                    next = out_rx.try_recv().ok();
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
        });
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            let closed = loop {
                match stream.next().await {
                    None => {
                        break Incoming::Closed {
                            code: None,
                            reason: String::new(),
                        };
                    }
                    Some(Err(e)) => {
                        break Incoming::Closed {
                            code: None,
                            reason: e.to_string(),
                        };
                    }
                    Some(Ok(Message::Close(f))) => {
                        break Incoming::Closed {
                            code: f.as_ref().map(|f| u16::from(f.code)),
                            reason: f.map(|f| f.reason.to_string()).unwrap_or_default(),
                        };
                    }
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<Frame>(t.as_str()) {
                        Ok(Frame::Res(res)) => {
                            if let Some(tx) = reader_pending
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&res.id)
                            {
                                let _ = tx.send(res);
                            }
                        }
                        Ok(Frame::Event(ev)) => {
                            let _ = in_tx.send(Incoming::Event(ev));
                        }
                        Ok(Frame::Req(_)) | Err(_) => {
                            tracing::warn!("ignoring an unexpected frame from the gateway");
                        }
                    },
                    Some(Ok(_)) => {}
                }
            };
            // Fail whoever still waits for an answer, then tell the event reader.
            reader_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            let _ = in_tx.send(closed);
        });
        Ok(Client {
            out: out_tx,
            pending,
            incoming: in_rx,
            next_id: AtomicU64::new(1),
            hello,
            url: opts.url.clone(),
        })
    }

    /// Sends a request and waits for its response.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        let frame = Frame::Req(Request {
            id,
            method: method.into(),
            params,
        });
        self.out
            .send(Message::text(frame.to_text()))
            .map_err(|_| ClientError::Closed {
                code: None,
                reason: String::new(),
            })?;
        let res = rx.await.map_err(|_| ClientError::Closed {
            code: None,
            reason: "before answering".into(),
        })?;
        res.into_result().map_err(ClientError::Rejected)
    }

    /// The next event or the close; `None` after the close was returned once.
    pub async fn next_incoming(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Hands the event stream to another task (the client keeps serving requests).
    pub fn take_incoming(&mut self) -> mpsc::UnboundedReceiver<Incoming> {
        std::mem::replace(&mut self.incoming, mpsc::unbounded_channel().1)
    }

    /// Closes politely (1000).
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}

fn unreachable_reason(e: WsError) -> String {
    match e {
        WsError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is a gateway running?)".into()
            }
            _ => io.to_string(),
        },
        WsError::Http(resp) => format!("HTTP {} during the upgrade", resp.status()),
        other => other.to_string(),
    }
}
