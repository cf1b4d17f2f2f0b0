//! One connection's life: upgrade, challenge, `connect`, then requests and events until
//! either side closes. The state machine is linear on purpose: before `connect` succeeds
//! the only legal frame is a small `connect` request, and any violation ends the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HttpRequest, Response as HttpResponse,
};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::auth::{self, OriginCheck, Peer};
use super::outbox::{Next, Outbox};
use super::{ConnHandle, Gateway, methods};
use crate::protocol::handshake::{
    Features, HelloAuth, HelloOk, PresenceEntry, ServerInfo, Snapshot, negotiate,
};
use crate::protocol::{
    CONNECT_TIMEOUT_MS, Challenge, ConnectParams, ErrorCode, ErrorShape, Frame, PRE_AUTH_MAX_FRAME,
    PROTOCOL_VERSION, Response, close, events,
};

type Ws = WebSocketStream<TcpStream>;

pub async fn handle(
    gw: Arc<Gateway>,
    stream: TcpStream,
    peer_addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let local_addr = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut origin = OriginCheck::Absent;
    let mut local = false;
    // The error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &HttpRequest, resp: HttpResponse| -> Result<HttpResponse, ErrorResponse> {
        origin = auth::check_origin(req.headers(), local_addr);
        local = auth::is_local(peer_addr, req.headers(), &origin);
        if let OriginCheck::Foreign(o) = &origin {
            tracing::warn!(peer = %peer_addr, origin = %o, "refused a foreign Origin");
            let mut r = ErrorResponse::new(Some(format!("origin {o} is not allowed\n")));
            *r.status_mut() = StatusCode::FORBIDDEN;
            return Err(r);
        }
        Ok(resp)
    };
    // tungstenite allocates a 128 KiB read buffer per connection up front; a gateway holds
    // thousands of mostly idle connections with small frames, so 4 KiB (it still grows
    // for a large frame) keeps 10,000 of them within a few hundred MB (BENCHMARKS.md).
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(Some(gw.config.gateway.max_payload))
        .max_frame_size(Some(gw.config.gateway.max_payload));
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    let mut ws =
        match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), upgrade).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer_addr, "upgrade failed: {e}");
                return;
            }
            Err(_) => return,
        };
    let peer = Peer {
        addr: peer_addr,
        local,
    };

    let nonce = crate::identity::random_b64(32);
    let challenge = Challenge {
        nonce: nonce.clone(),
        ts: now_ms(),
    };
    let challenge = Frame::Event(crate::protocol::EventFrame {
        event: events::CONNECT_CHALLENGE.into(),
        payload: serde_json::to_value(challenge).unwrap_or_default(),
        seq: None,
    });
    if ws.send(Message::text(challenge.to_text())).await.is_err() {
        return;
    }

    let first = tokio::select! {
        r = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), ws.next()) => r,
        _ = stop.changed() => {
            close_ws(&mut ws, close::GOING_AWAY, "gateway shutting down").await;
            return;
        }
    };
    let text = match first {
        Err(_) => {
            close_ws(&mut ws, close::POLICY_VIOLATION, "no connect within 10 s").await;
            return;
        }
        Ok(None) | Ok(Some(Err(WsError::ConnectionClosed))) => return,
        Ok(Some(Err(WsError::Capacity(_)))) => {
            close_ws(
                &mut ws,
                close::MESSAGE_TOO_BIG,
                "frame too large before connect",
            )
            .await;
            return;
        }
        Ok(Some(Err(_))) => return,
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(Message::Binary(_)))) => {
            close_ws(
                &mut ws,
                close::UNSUPPORTED_DATA,
                "binary frames are not supported",
            )
            .await;
            return;
        }
        Ok(Some(Ok(Message::Close(_)))) => return,
        Ok(Some(Ok(_))) => {
            close_ws(&mut ws, close::POLICY_VIOLATION, "expected connect").await;
            return;
        }
    };
    if text.len() > PRE_AUTH_MAX_FRAME {
        close_ws(
            &mut ws,
            close::MESSAGE_TOO_BIG,
            "frame too large before connect",
        )
        .await;
        return;
    }

    let (req_id, params) = match parse_connect(text.as_str()) {
        Ok(x) => x,
        Err((id, e)) => {
            reject(&mut ws, &id, e, close::POLICY_VIOLATION).await;
            return;
        }
    };
    if !negotiate(params.min_protocol, params.max_protocol, PROTOCOL_VERSION) {
        let e = ErrorShape::new(
            ErrorCode::ProtocolMismatch,
            format!(
                "gateway speaks protocol {PROTOCOL_VERSION}, client offers {}..={}",
                params.min_protocol, params.max_protocol
            ),
        )
        .with_details(json!({"serverProtocol": PROTOCOL_VERSION}));
        reject(&mut ws, &req_id, e, close::PROTOCOL_ERROR).await;
        return;
    }
    let limited = gw
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check(peer_addr.ip(), Instant::now());
    if let Err(wait) = limited {
        let e = ErrorShape::new(
            ErrorCode::RateLimited,
            "too many failed authentication attempts from this address",
        )
        .retry_after(wait.as_millis() as u64);
        reject(&mut ws, &req_id, e, close::POLICY_VIOLATION).await;
        return;
    }
    let authed = match auth::authenticate(&gw, &params, &nonce, &peer, now_ms()) {
        Ok(a) => a,
        Err(e) => {
            if auth::counts_as_failure(&e) {
                let tipped = gw
                    .limiter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fail(peer_addr.ip(), Instant::now());
                if tipped {
                    tracing::warn!(peer = %peer_addr, "failed-auth limit reached: blocking for 5 minutes");
                }
            }
            tracing::info!(peer = %peer_addr, code = %e.code, "connect refused: {}", e.message);
            reject(&mut ws, &req_id, e, close::POLICY_VIOLATION).await;
            return;
        }
    };

    let id = gw.next_conn_id();
    let conn_id = format!("c{id}");
    let outbox = Arc::new(Outbox::new(gw.config.gateway.max_buffered_bytes));
    let presence = PresenceEntry {
        conn_id: conn_id.clone(),
        device_id: authed.device_id.clone(),
        client_id: params.client.id.clone(),
        mode: params.client.mode,
        role: authed.role,
        platform: params.client.platform.clone(),
        local: peer.local,
        connected_at_ms: now_ms(),
    };
    let handle = Arc::new(ConnHandle {
        id,
        conn_id: conn_id.clone(),
        outbox: outbox.clone(),
        role: authed.role,
        scopes: authed.scopes.clone(),
        device_id: authed.device_id.clone(),
        presence,
        subscriptions: Default::default(),
    });
    gw.touch_device(&authed.device_id);
    // hello-ok goes out before the connection can receive events, so seq 1 follows it.
    gw.register(handle.clone());
    let hello = HelloOk {
        kind: "hello-ok".into(),
        protocol: PROTOCOL_VERSION,
        server: ServerInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            conn_id: conn_id.clone(),
        },
        features: Features {
            methods: crate::protocol::methods::method_names(),
            events: events::ALL.iter().map(|e| e.to_string()).collect(),
        },
        snapshot: Snapshot {
            presence: gw.presence_snapshot(),
            health: gw.health(),
            state_version: gw.state_version(),
            uptime_ms: gw.uptime_ms(),
        },
        auth: HelloAuth {
            role: authed.role,
            scopes: authed.scopes.clone(),
            device_token: authed.issued_token,
        },
        policy: gw.policy(),
    };
    let hello = Frame::Res(Response::ok(
        req_id,
        serde_json::to_value(hello).unwrap_or_default(),
    ));
    if ws.send(Message::text(hello.to_text())).await.is_err() {
        gw.unregister(id);
        return;
    }
    tracing::debug!(conn = %conn_id, peer = %peer_addr, device = %authed.device_id, "connected");

    let (mut sink, mut stream) = ws.split();
    let writer_box = outbox.clone();
    let writer = tokio::spawn(async move {
        loop {
            match writer_box.next().await {
                Next::Frames(frames) => {
                    for f in frames {
                        if sink.feed(Message::text(f)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                Next::Close(code, reason) => {
                    let frame = CloseFrame {
                        code: code.into(),
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
            }
        }
    });

    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = stop.changed() => {
                outbox.close(close::GOING_AWAY, "gateway shutting down");
                break;
            }
        };
        match msg {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Err(WsError::Capacity(_))) => {
                outbox.close(close::MESSAGE_TOO_BIG, "frame over policy.maxPayload");
                break;
            }
            Some(Err(_)) => break,
            Some(Ok(Message::Binary(_))) => {
                outbox.close(close::UNSUPPORTED_DATA, "binary frames are not supported");
                break;
            }
            Some(Ok(Message::Text(text))) => {
                let res = handle_text(&gw, &handle, text.as_str()).await;
                if !outbox.push_frame(Frame::Res(res).to_text()) {
                    break;
                }
            }
            Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
        }
        if outbox.is_closing() {
            break;
        }
    }
    gw.unregister(id);
    super::runs::node_disconnected(&gw, id);
    outbox.close(close::GOING_AWAY, "bye");
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    tracing::debug!(conn = %conn_id, "disconnected");
}

async fn handle_text(gw: &Arc<Gateway>, conn: &Arc<ConnHandle>, text: &str) -> Response {
    // One parse on the hot path; only a frame that does not parse is read a second time,
    // to answer with its id if it has one.
    let frame: Frame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string));
            let what = if id.is_some() || e.is_data() {
                "not a frame"
            } else {
                "malformed JSON"
            };
            return Response::err(
                id.unwrap_or_default(),
                ErrorShape::invalid(format!("{what}: {e}")),
            );
        }
    };
    let req = match frame {
        Frame::Req(req) => req,
        Frame::Res(Response { id, .. }) => {
            return Response::err(id, ErrorShape::invalid("clients send only req frames"));
        }
        Frame::Event(_) => {
            return Response::err("", ErrorShape::invalid("clients send only req frames"));
        }
    };
    if req.method == "connect" {
        return Response::err(req.id, ErrorShape::invalid("already connected"));
    }
    match methods::dispatch(gw, conn, &req.method, req.params).await {
        Ok(payload) => Response::ok(req.id, payload),
        Err(e) => Response::err(req.id, e),
    }
}

/// Parses the first frame: it must be a `connect` request with well-typed params.
fn parse_connect(text: &str) -> Result<(String, ConnectParams), (String, ErrorShape)> {
    let frame: Frame = serde_json::from_str(text).map_err(|e| {
        (
            String::new(),
            ErrorShape::invalid(format!("malformed first frame: {e}")),
        )
    })?;
    let Frame::Req(req) = frame else {
        return Err((
            String::new(),
            ErrorShape::invalid("the first frame must be a connect request"),
        ));
    };
    if req.method != "connect" {
        return Err((
            req.id,
            ErrorShape::invalid(format!("{:?} before connect: connect first", req.method)),
        ));
    }
    let params: ConnectParams = serde_json::from_value(req.params).map_err(|e| {
        (
            req.id.clone(),
            ErrorShape::invalid(format!("invalid connect params: {e}")),
        )
    })?;
    Ok((req.id, params))
}

async fn reject(ws: &mut Ws, id: &str, error: ErrorShape, code: u16) {
    let reason = error.code.as_str();
    let _ = ws
        .send(Message::text(
            Frame::Res(Response::err(id, error.clone())).to_text(),
        ))
        .await;
    close_ws(ws, code, reason).await;
}

async fn close_ws(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.to_string().into(),
    };
    let _ = ws.send(Message::Close(Some(frame))).await;
    // Give the peer a moment to answer the close so it sees a clean close, not a reset.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

pub fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond().max(0) as u64
}
