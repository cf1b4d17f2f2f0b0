//! Bad input on the wire, through a raw WebSocket client against the real gateway: each
//! case gets the typed error (or close code) of DESIGN.md section 3, and the gateway keeps
//! serving other connections.

mod common;

use common::TestHome;
use common::raw::{Got, Raw, rt};
use serde_json::json;
use viber::identity::DeviceKey;
use viber::protocol::{ConnectParams, Frame};

fn resign(key: &DeviceKey, p: &mut ConnectParams) {
    p.device.signature = key.sign(p.signature_payload().as_bytes());
}

/// After each bad case, a well-behaved client still gets in and is answered.
async fn still_serving(url: &str, key: &DeviceKey, token: &str) {
    let mut raw = Raw::open(url).await;
    raw.connect(key, token).await;
    let r = raw.request("h", "health", json!({})).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.payload.unwrap()["ok"], true);
}

fn setup() -> (TestHome, common::GatewayProc, DeviceKey, String) {
    let home = TestHome::new();
    let gw = home.start_gateway();
    let key = DeviceKey::load(&home.file("identity/device_ed25519")).unwrap();
    let token = home.token();
    (home, gw, key, token)
}

#[test]
fn handshake_succeeds_with_hello_ok_and_seq_starts_at_one() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        let hello = raw.connect(&key, &token).await;
        assert_eq!(hello["type"], "hello-ok");
        assert_eq!(hello["protocol"], 1);
        assert!(
            hello["features"]["methods"]
                .as_array()
                .unwrap()
                .contains(&json!("health"))
        );
        assert!(
            hello["features"]["events"]
                .as_array()
                .unwrap()
                .contains(&json!("tick"))
        );
        assert_eq!(hello["auth"]["role"], "operator");
        assert!(
            hello["auth"]["deviceToken"].is_string(),
            "a newly paired device gets a token"
        );
        assert_eq!(hello["policy"]["tickIntervalMs"], 15000);
        assert!(hello["snapshot"]["health"]["ok"].as_bool().unwrap());
        // The first event after hello-ok is seq 1 (our own presence).
        match raw.recv().await {
            Got::Frame(Frame::Event(e)) => {
                assert_eq!(e.seq, Some(1));
                assert_eq!(e.event, "presence");
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn malformed_json_before_connect_is_refused_and_closed() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        raw.send_text("{not json").await;
        assert_eq!(raw.error_code().await, "INVALID_REQUEST");
        assert_eq!(raw.closed().await, Some(1008));
        still_serving(&gw.url, &key, &token).await;
    });
}

#[test]
fn binary_frame_closes_with_1003() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        raw.send_binary(vec![1, 2, 3]).await;
        assert_eq!(raw.closed().await, Some(1003));
        // Also after authentication.
        let mut raw = Raw::open(&gw.url).await;
        raw.connect(&key, &token).await;
        raw.send_binary(vec![0; 10]).await;
        assert_eq!(raw.closed().await, Some(1003));
        still_serving(&gw.url, &key, &token).await;
    });
}

#[test]
fn request_before_connect_is_refused_and_closed() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        raw.send_json(json!({"type":"req","id":"1","method":"health","params":{}}))
            .await;
        let r = raw.response().await;
        assert_eq!(r.id, "1");
        assert_eq!(r.error.unwrap().code.as_str(), "INVALID_REQUEST");
        assert_eq!(raw.closed().await, Some(1008));
        still_serving(&gw.url, &key, &token).await;
    });
}

#[test]
fn second_connect_unknown_method_and_wrong_params_are_typed_errors() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        raw.connect(&key, &token).await;
        let p = raw.params(&key, Some(&token));
        let r = raw
            .request("again", "connect", serde_json::to_value(&p).unwrap())
            .await;
        assert_eq!(r.error.unwrap().code.as_str(), "INVALID_REQUEST");

        let r = raw.request("u", "no.such.method", json!({})).await;
        assert_eq!(r.error.unwrap().code.as_str(), "UNKNOWN_METHOD");

        let r = raw
            .request("p", "system.presence", json!({"role": 5}))
            .await;
        assert_eq!(r.error.unwrap().code.as_str(), "INVALID_REQUEST");
        let r = raw.request("p2", "health", json!([1, 2])).await;
        assert_eq!(r.error.unwrap().code.as_str(), "INVALID_REQUEST");
        let r = raw.request("p3", "health", json!({"surprise": true})).await;
        assert_eq!(r.error.unwrap().code.as_str(), "INVALID_REQUEST");

        raw.send_text("[[[").await;
        assert_eq!(raw.error_code().await, "INVALID_REQUEST");

        // The same connection still works after all that.
        let r = raw
            .request("ok", "system.presence", json!({"role": "operator"}))
            .await;
        assert!(r.ok, "{r:?}");
        assert!(
            !r.payload.unwrap()["presence"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn oversized_frames_close_with_1009_before_and_after_auth() {
    let home = TestHome::new();
    home.write_config("gateway:\n  max_payload: 100000\n");
    let gw = home.start_gateway();
    let key = DeviceKey::load(&home.file("identity/device_ed25519")).unwrap();
    let token = home.token();
    rt().block_on(async {
        // Pre-auth limit is 64 KiB even though maxPayload is larger.
        let mut raw = Raw::open(&gw.url).await;
        raw.send_text("x".repeat(70 * 1024)).await;
        assert_eq!(raw.closed().await, Some(1009));

        let mut raw = Raw::open(&gw.url).await;
        let hello = raw.connect(&key, &token).await;
        assert_eq!(hello["policy"]["maxPayload"], 100000);
        let big =
            json!({"type":"req","id":"big","method":"health","params":{"pad":"y".repeat(120_000)}});
        raw.send_json(big).await;
        assert_eq!(raw.closed().await, Some(1009));
        still_serving(&gw.url, &key, &token).await;
    });
}

#[test]
fn bad_stale_and_foreign_nonce_signatures_are_refused() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        // A signature over something else.
        let mut raw = Raw::open(&gw.url).await;
        let mut p = raw.params(&key, Some(&token));
        p.device.signature = key.sign(b"something else");
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "DEVICE_AUTH_INVALID");
        assert_eq!(raw.closed().await, Some(1008));

        // Correctly signed, but 200 s old.
        let mut raw = Raw::open(&gw.url).await;
        let mut p = raw.params(&key, Some(&token));
        p.device.signed_at -= 200_000;
        resign(&key, &mut p);
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "DEVICE_AUTH_INVALID");

        // Correctly signed for another connection's nonce.
        let other = Raw::open(&gw.url).await;
        let mut raw = Raw::open(&gw.url).await;
        let mut p = raw.params(&key, Some(&token));
        p.device.nonce = other.nonce.clone();
        resign(&key, &mut p);
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "DEVICE_AUTH_INVALID");

        // Another device's key under this device's id.
        let mut raw = Raw::open(&gw.url).await;
        let mut p = raw.params(&key, Some(&token));
        p.device.public_key = DeviceKey::generate("x").public_b64();
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "DEVICE_AUTH_INVALID");

        // A public key that is not a key.
        let mut raw = Raw::open(&gw.url).await;
        let mut p = raw.params(&key, Some(&token));
        p.device.public_key = "not-a-key".into();
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "DEVICE_AUTH_INVALID");

        still_serving(&gw.url, &key, &token).await;
    });
}

#[test]
fn wrong_or_missing_token_is_unauthorized() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        let p = raw.params(&key, Some("0000"));
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "UNAUTHORIZED");
        assert_eq!(raw.closed().await, Some(1008));

        let mut raw = Raw::open(&gw.url).await;
        let p = raw.params(&key, None);
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "UNAUTHORIZED");
        still_serving(&gw.url, &key, &token).await;
    });
}

#[test]
fn protocol_mismatch_closes_with_1002() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        let mut p = raw.params(&key, Some(&token));
        p.min_protocol = 2;
        p.max_protocol = 3;
        raw.send_connect(&p).await;
        let r = raw.response().await;
        let e = r.error.unwrap();
        assert_eq!(e.code.as_str(), "PROTOCOL_MISMATCH");
        assert_eq!(e.details.unwrap()["serverProtocol"], 1);
        assert_eq!(raw.closed().await, Some(1002));
        still_serving(&gw.url, &key, &token).await;
    });
}

#[test]
fn a_read_only_device_asking_for_admin_gets_read_and_forbidden() {
    let home = TestHome::new();
    let key = DeviceKey::load(&home.file("identity/device_ed25519")).unwrap();
    // Pair this device with operator.read only, as an operator would have.
    std::fs::write(
        home.file("gateway/devices.yaml"),
        format!(
            "devices:\n- id: {}\n  public_key: {}\n  name: reader\n  role: operator\n  scopes: [operator.read]\n  token_hash: {}\n  created: 2026-01-01T00:00:00Z\n",
            key.device_id(),
            key.public_b64(),
            "0".repeat(64)
        ),
    )
    .unwrap();
    let gw = home.start_gateway();
    let token = home.token();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        let hello = raw.connect(&key, &token).await;
        assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]));
        assert!(hello["auth"].get("deviceToken").is_none());
        let r = raw.request("a", "config.get", json!({})).await;
        let e = r.error.unwrap();
        assert_eq!(e.code.as_str(), "FORBIDDEN");
        assert_eq!(e.details.unwrap()["missingScope"], "operator.admin");
        assert!(raw.request("h", "health", json!({})).await.ok);
    });
    // And through the CLI: exit 7 with the typed error on stdout.
    let out = home
        .viber()
        .args(["call", "config.get", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let v = common::stdout_json(&out);
    assert_eq!(v["schema"], "viber.error/v1");
    assert_eq!(v["code"], "FORBIDDEN");
    assert_eq!(v["details"]["missingScope"], "operator.admin");
}

#[test]
fn forwarded_peers_are_not_local_and_need_pairing() {
    let (home, gw, _key, token) = setup();
    let stranger = DeviceKey::generate("laptop");
    rt().block_on(async {
        let mut ids = Vec::new();
        for header in ["x-forwarded-for", "x-real-ip", "forwarded"] {
            let mut raw = Raw::open_with(&gw.url, &[(header, "203.0.113.9")]).await;
            let p = raw.params(&stranger, Some(&token));
            raw.send_connect(&p).await;
            let e = raw.response().await.error.unwrap();
            assert_eq!(e.code.as_str(), "PAIRING_REQUIRED", "{header}");
            ids.push(
                e.details.unwrap()["requestId"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            assert_eq!(raw.closed().await, Some(1008));
        }
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "same request id while pending: {ids:?}"
        );
    });
    let pending = std::fs::read_to_string(home.file("gateway/pending.yaml")).unwrap();
    assert!(pending.contains(&stranger.device_id()));
    assert_eq!(common::mode_of(&home.file("gateway/pending.yaml")), 0o600);
}

#[test]
fn a_foreign_origin_is_refused_at_the_upgrade() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                gw.url.as_str(),
            )
            .unwrap();
        req.headers_mut()
            .insert("origin", "http://evil.example".parse().unwrap());
        let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
            other => panic!("expected HTTP 403, got {other}"),
        }
        // The gateway's own origin is fine.
        let port = gw.url.rsplit(':').next().unwrap();
        let own = format!("http://127.0.0.1:{port}");
        let mut raw = Raw::open_with(&gw.url, &[("origin", own.as_str())]).await;
        raw.connect(&key, &token).await;
    });
}

#[test]
fn failed_auth_is_rate_limited_per_address_even_on_loopback() {
    let (_home, gw, key, token) = setup();
    rt().block_on(async {
        for _ in 0..10 {
            let mut raw = Raw::open(&gw.url).await;
            let p = raw.params(&key, Some("wrong-token"));
            raw.send_connect(&p).await;
            assert_eq!(raw.error_code().await, "UNAUTHORIZED");
        }
        // Now even the right token is refused, with a retry hint of about 5 minutes.
        let mut raw = Raw::open(&gw.url).await;
        let p = raw.params(&key, Some(&token));
        raw.send_connect(&p).await;
        let e = raw.response().await.error.unwrap();
        assert_eq!(e.code.as_str(), "RATE_LIMITED");
        let retry = e.retry_after_ms.unwrap();
        assert!(retry > 250_000 && retry <= 300_000, "{retry}");
        assert!(e.retryable);
    });
}

#[test]
fn no_connect_within_ten_seconds_closes() {
    let (_home, gw, _key, _token) = setup();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        let start = std::time::Instant::now();
        assert_eq!(raw.closed().await, Some(1008));
        assert!(start.elapsed() >= std::time::Duration::from_secs(9));
    });
}
