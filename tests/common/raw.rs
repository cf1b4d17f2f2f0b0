//! A raw WebSocket client that speaks frames directly, for the bad-input cases.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use viber::client::{ConnectOptions, connect_params};
use viber::identity::DeviceKey;
use viber::protocol::{ConnectParams, Frame};

pub struct Raw {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub nonce: String,
}

#[derive(Debug)]
pub enum Got {
    Frame(Frame),
    Closed(Option<u16>, String),
}

const STEP: Duration = Duration::from_secs(15);

impl Raw {
    /// Opens the socket and reads the challenge.
    pub async fn open(url: &str) -> Raw {
        Self::open_with(url, &[]).await
    }

    pub async fn open_with(url: &str, headers: &[(&'static str, &str)]) -> Raw {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut raw = Raw {
            ws,
            nonce: String::new(),
        };
        match raw.recv().await {
            Got::Frame(Frame::Event(e)) if e.event == "connect.challenge" => {
                assert!(e.seq.is_none(), "the challenge precedes the sequence");
                raw.nonce = e.payload["nonce"].as_str().unwrap().to_string();
            }
            other => panic!("expected connect.challenge, got {other:?}"),
        }
        raw
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(Bytes::from(bytes)))
            .await
            .unwrap();
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    /// The next frame or the close (skipping pings).
    pub async fn recv(&mut self) -> Got {
        loop {
            let msg = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("no frame from the gateway in time");
            match msg {
                None => return Got::Closed(None, String::new()),
                Some(Err(e)) => return Got::Closed(None, e.to_string()),
                Some(Ok(Message::Close(f))) => {
                    return Got::Closed(
                        f.as_ref().map(|f| u16::from(f.code)),
                        f.map(|f| f.reason.to_string()).unwrap_or_default(),
                    );
                }
                Some(Ok(Message::Text(t))) => {
                    return Got::Frame(serde_json::from_str(t.as_str()).unwrap());
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next response (events are skipped).
    pub async fn response(&mut self) -> viber::protocol::Response {
        loop {
            match self.recv().await {
                Got::Frame(Frame::Res(r)) => return r,
                Got::Frame(_) => continue,
                Got::Closed(code, reason) => {
                    panic!("closed ({code:?} {reason}) instead of a response")
                }
            }
        }
    }

    /// Expects the connection to close, skipping frames; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Got::Closed(code, _) = self.recv().await {
                return code;
            }
        }
    }

    /// The expected error code of the next response.
    pub async fn error_code(&mut self) -> String {
        let r = self.response().await;
        assert!(!r.ok, "expected an error, got {r:?}");
        r.error.unwrap().code.to_string()
    }

    pub async fn request(
        &mut self,
        id: &str,
        method: &str,
        params: Value,
    ) -> viber::protocol::Response {
        self.send_json(json!({"type": "req", "id": id, "method": method, "params": params}))
            .await;
        loop {
            let r = self.response().await;
            if r.id == id {
                return r;
            }
        }
    }

    /// Valid connect params for this connection, to be tampered with.
    pub fn params(&self, key: &DeviceKey, token: Option<&str>) -> ConnectParams {
        let mut opts = ConnectOptions::operator("ws://unused");
        opts.token = token.map(str::to_string);
        connect_params(key, &opts, &self.nonce)
    }

    pub async fn send_connect(&mut self, params: &ConnectParams) {
        self.send_json(json!({"type": "req", "id": "c", "method": "connect", "params": params}))
            .await;
    }

    /// A full successful handshake; returns the hello-ok payload.
    pub async fn connect(&mut self, key: &DeviceKey, token: &str) -> Value {
        let p = self.params(key, Some(token));
        self.send_connect(&p).await;
        let r = self.response().await;
        assert!(r.ok, "connect failed: {:?}", r.error);
        r.payload.unwrap()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
