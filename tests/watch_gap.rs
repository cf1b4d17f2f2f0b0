//! `viber watch` against a scripted gateway that skips sequence numbers: the client must
//! print a `viber.gap/v1` line, re-read state with `status`, and go on.

mod common;

use std::process::Stdio;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use viber::protocol::handshake::{Features, Health, HelloAuth, HelloOk, ServerInfo, Snapshot};
use viber::protocol::{Frame, Policy, Role, Scope};

fn event(name: &str, seq: u64) -> Message {
    Message::text(json!({"type":"event","event":name,"payload":{"n":seq},"seq":seq}).to_string())
}

async fn scripted_gateway(listener: TcpListener) {
    let (stream, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    ws.send(Message::text(
        json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":0}})
            .to_string(),
    ))
    .await
    .unwrap();
    let connect: Frame = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    let Frame::Req(req) = connect else { panic!() };
    assert_eq!(req.method, "connect");
    let health = Health {
        ok: true,
        version: "x".into(),
        pid: 1,
        uptime_ms: 1,
        connections: 1,
    };
    let hello = HelloOk {
        kind: "hello-ok".into(),
        protocol: 1,
        server: ServerInfo {
            version: "x".into(),
            conn_id: "c1".into(),
        },
        features: Features {
            methods: vec!["status".into()],
            events: vec!["tick".into()],
        },
        snapshot: Snapshot {
            presence: vec![],
            health: health.clone(),
            state_version: 1,
            uptime_ms: 1,
        },
        auth: HelloAuth {
            role: Role::Operator,
            scopes: vec![Scope::OperatorAdmin],
            device_token: None,
        },
        policy: Policy {
            max_payload: 1 << 20,
            max_buffered_bytes: 1 << 20,
            tick_interval_ms: 60_000,
        },
    };
    ws.send(Message::text(
        json!({"type":"res","id":req.id,"ok":true,"payload":hello}).to_string(),
    ))
    .await
    .unwrap();
    for seq in [1, 2, 5] {
        ws.send(event("tick", seq)).await.unwrap();
    }
    // The client re-reads state after the gap.
    let status_req: Frame = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    let Frame::Req(status_req) = status_req else {
        panic!()
    };
    assert_eq!(status_req.method, "status");
    ws.send(Message::text(
        json!({"type":"res","id":status_req.id,"ok":true,"payload":{
            "gateway":{"url":"ws://scripted"},"connection":{"local":true},"health":health,"presence":[]
        }})
        .to_string(),
    ))
    .await
    .unwrap();
    ws.send(event("tick", 6)).await.unwrap();
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

#[test]
fn a_seq_gap_is_reported_and_state_re_read() {
    let home = common::TestHome::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = rt.spawn(scripted_gateway(listener));
    let out = home
        .std_viber()
        .args(["watch", "--json", "--gateway", &url, "--token", "t"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    rt.block_on(server).unwrap();
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| format!("{}:{}", l["schema"].as_str().unwrap(), l["seq"]))
        .collect();
    assert_eq!(
        kinds,
        [
            "viber.event/v1:1",
            "viber.event/v1:2",
            "viber.gap/v1:null",
            "viber.status/v1:null",
            "viber.event/v1:5",
            "viber.event/v1:6",
            "viber.error/v1:null"
        ],
        "{lines:?}"
    );
    assert_eq!(lines[2]["expected"], 3);
    assert_eq!(lines[2]["got"], 5);
    assert_eq!(lines[2]["missed"], 2);
    assert_eq!(lines[3]["gateway"]["url"], "ws://scripted");
    // The gateway went away: exit 7, said once more as JSON.
    assert_eq!(lines[6]["code"], "CLOSED");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
