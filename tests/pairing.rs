//! Device pairing and trust (issue 4) through the real binary, with two VIBER_HOMEs on one
//! machine: a gateway home with `pairing.auto_approve_local: false`, so even a loopback
//! device must be approved, and one or more new device homes. The wire-level rules (flood,
//! limiter, replayed nonce) use the raw client.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::raw::{Raw, rt};
use common::{GatewayProc, TestHome, mode_of, stdout_json, wait_for};
use serde_json::{Value, json};
use viber::identity::DeviceKey;

const STRICT: &str = "pairing:\n  auto_approve_local: false\n";

/// A gateway home that approves nothing by itself, with its gateway running.
fn gateway_home() -> (TestHome, GatewayProc) {
    let a = TestHome::new();
    a.write_config(STRICT);
    let gw = a.start_gateway();
    (a, gw)
}

fn key_of(home: &TestHome) -> DeviceKey {
    DeviceKey::load(&home.file("identity/device_ed25519")).unwrap()
}

/// A running `viber pair` requester and the lines it printed so far.
struct Requester {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Requester {
    fn start(b: &TestHome, url: &str, token: &str, extra: &[&str]) -> Requester {
        let mut child = b
            .std_viber()
            .args(["--gateway", url, "pair", "--json"])
            .args(extra)
            .env("VIBER_GATEWAY_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Requester { child, lines: rx }
    }

    fn next_json(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from the requester");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// The pending line: the request id.
    fn request_id(&self) -> String {
        let v = self.next_json();
        assert_eq!(v["schema"], "viber.pair/v1");
        assert_eq!(v["status"], "pending", "{v}");
        v["requestId"].as_str().unwrap().to_string()
    }

    fn exit_code(&mut self) -> i32 {
        let child = &mut self.child;
        wait_for("the requester to exit", Duration::from_secs(20), || {
            child.try_wait().unwrap()
        })
        .code()
        .unwrap()
    }
}

impl Drop for Requester {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pairs device home `b` with the gateway of `a` through the CLI on both sides.
fn pair(a: &TestHome, b: &TestHome, url: &str, scopes: &str) -> String {
    let mut req = Requester::start(b, url, &a.token(), &["--scopes", scopes]);
    let id = req.request_id();
    let out = a
        .viber()
        .args(["pair", "approve", &id, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(req.exit_code(), 0);
    let done = req.next_json();
    assert_eq!(done["status"], "approved", "{done}");
    key_of(b).device_id()
}

fn run(cmd: &mut assert_cmd::Command) -> (i32, Value) {
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap();
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        stdout_json(&out)
    };
    (code, v)
}

#[test]
fn request_approve_token_reconnect_through_the_cli() {
    let (a, gw) = gateway_home();
    let b = TestHome::new();
    // The approver's event stream: device.pair.requested, then device.pair.resolved.
    let watch = a
        .std_viber()
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut watch = scopeguard(watch);
    let events = lines_of(watch.0.stdout.take().unwrap());
    // Our own presence event says the watcher is connected before the request is filed.
    next_event(&events, "presence");

    let mut req = Requester::start(&b, &gw.url, &a.token(), &[]);
    let first = req.next_json();
    assert_eq!(first["status"], "pending");
    let id = first["requestId"].as_str().unwrap().to_string();
    let bkey = key_of(&b);
    assert_eq!(first["fingerprint"], bkey.fingerprint());
    assert!(
        first["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert_eq!(first["deviceId"], bkey.device_id());

    let requested = next_event(&events, "device.pair.requested");
    assert_eq!(requested["payload"]["requestId"], id.as_str());
    assert_eq!(requested["payload"]["fingerprint"], bkey.fingerprint());

    let (code, list) = run(a.viber().args(["pair", "list", "--json"]));
    assert_eq!(code, 0);
    assert_eq!(list["schema"], "viber.pair-requests/v1");
    let r = &list["requests"][0];
    assert_eq!(r["requestId"], id.as_str());
    assert_eq!(r["name"], viber::identity::hostname());
    assert_eq!(r["scopes"], json!(["operator.read", "operator.write"]));
    assert!(r["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(r["ageMs"].as_i64().unwrap() >= 0);

    let (code, approved) = run(a.viber().args(["pair", "approve", &id, "--json"]));
    assert_eq!(code, 0, "{approved}");
    assert_eq!(approved["schema"], "viber.pair-decision/v1");
    assert_eq!(approved["decision"], "approved");
    let resolved = next_event(&events, "device.pair.resolved");
    assert_eq!(resolved["payload"]["requestId"], id.as_str());
    assert_eq!(resolved["payload"]["decision"], "approved");

    assert_eq!(req.exit_code(), 0);
    let done = req.next_json();
    assert_eq!(done["status"], "approved");
    assert_eq!(done["tokenStored"], true);
    let tokens = b.file("identity/tokens.yaml");
    assert_eq!(mode_of(&tokens), 0o600);
    let text = std::fs::read_to_string(&tokens).unwrap();
    assert!(
        text.contains(&gw.url) && text.contains(&bkey.device_id()),
        "{text}"
    );
    // The gateway keeps only the hash.
    let devices = std::fs::read_to_string(a.file("gateway/devices.yaml")).unwrap();
    let token: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let token = token["tokens"][0]["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    assert!(!devices.contains(&token));
    assert!(devices.contains(&viber::identity::hash_token(&token)));

    // Later verbs need no --token; asking for admin yields only what was granted.
    let (code, status) = run(b.viber().args(["--gateway", &gw.url, "status", "--json"]));
    assert_eq!(code, 0, "{status}");
    assert_eq!(
        status["device"]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    let (code, err) = run(b
        .viber()
        .args(["--gateway", &gw.url, "call", "config.get", "--json"]));
    assert_eq!(code, 7);
    assert_eq!(err["code"], "FORBIDDEN");

    // Devices list with last_seen; the request is gone, so approving it again is exit 1.
    let (code, devs) = run(a.viber().args(["pair", "devices", "--json"]));
    assert_eq!(code, 0);
    assert_eq!(devs["schema"], "viber.devices/v1");
    let d = devs["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == bkey.device_id().as_str())
        .unwrap()
        .clone();
    assert!(d["lastSeen"].is_string(), "{d}");
    assert_eq!(d["tokenIssued"], true);
    let (code, err) = run(a.viber().args(["pair", "approve", &id, "--json"]));
    assert_eq!(code, 1);
    assert_eq!(err["code"], "NOT_FOUND");
    let (code, err) = run(a
        .viber()
        .args(["pair", "reject", "no-such-request", "--json"]));
    assert_eq!(code, 1);
    assert_eq!(err["code"], "NOT_FOUND");
}

#[test]
fn reject_ends_the_wait_with_exit_7_and_sticks() {
    let (a, gw) = gateway_home();
    let b = TestHome::new();
    let mut req = Requester::start(&b, &gw.url, &a.token(), &[]);
    let id = req.request_id();
    let (code, v) = run(a.viber().args(["pair", "reject", &id, "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["decision"], "rejected");
    assert_eq!(req.exit_code(), 7);
    let err = req.next_json();
    assert_eq!(err["schema"], "viber.error/v1");
    assert!(
        err["message"].as_str().unwrap().contains("rejected"),
        "{err}"
    );
    // Asking again right away is refused at once with the same request, not re-filed.
    let (code, err) = run(b
        .viber()
        .args(["--gateway", &gw.url, "pair", "--json", "--timeout", "30"])
        .env("VIBER_GATEWAY_TOKEN", a.token()));
    assert_eq!(code, 7);
    assert_eq!(err["details"]["requestId"], id.as_str());
    assert_eq!(err["details"]["status"], "rejected");
    let (_, list) = run(a.viber().args(["pair", "list", "--json"]));
    assert_eq!(list["requests"], json!([]));
    // A second decision on it is a clear NOT_FOUND.
    let (code, _) = run(a.viber().args(["pair", "approve", &id, "--json"]));
    assert_eq!(code, 1);
}

#[test]
fn waiting_past_timeout_exits_7() {
    let (a, gw) = gateway_home();
    let b = TestHome::new();
    let out = b
        .viber()
        .args(["--gateway", &gw.url, "pair", "--json", "--timeout", "1"])
        .env("VIBER_GATEWAY_TOKEN", a.token())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["status"], "pending");
    assert_eq!(lines[1]["schema"], "viber.error/v1");
    assert_eq!(lines[1]["code"], "TIMEOUT");
    assert!(!b.file("identity/tokens.yaml").exists());
}

#[test]
fn revoke_closes_a_live_watch_at_once_and_the_token_stops_working() {
    let (a, gw) = gateway_home();
    let b = TestHome::new();
    let id = pair(&a, &b, &gw.url, "operator.read");
    let watch = b
        .std_viber()
        .args(["--gateway", &gw.url, "watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = scopeguard(watch);
    let events = lines_of(watch.0.stdout.take().unwrap());
    next_event(&events, "presence");

    let (code, v) = run(a.viber().args(["pair", "revoke", &id[..12], "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["schema"], "viber.pair-revoke/v1");
    assert_eq!(v["closedConnections"], 1);
    // Promptly: far sooner than two missed ticks (30 s) would notice.
    let child = &mut watch.0;
    let status = wait_for("watch to exit", Duration::from_secs(5), || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(7));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("1008") && err.contains("revoked"), "{err}");

    let (code, v) = run(b.viber().args(["--gateway", &gw.url, "status", "--json"]));
    assert_eq!(code, 7);
    assert_eq!(v["code"], "NOT_PAIRED");
    let (_, devs) = run(a.viber().args(["pair", "devices", "--json"]));
    assert!(
        !devs["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["deviceId"] == id.as_str())
    );
    let (code, v) = run(a.viber().args(["pair", "revoke", &id, "--json"]));
    assert_eq!(code, 1, "{v}");
}

fn stored_token(home: &TestHome) -> String {
    let text = std::fs::read_to_string(home.file("identity/tokens.yaml")).unwrap();
    let v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    v["tokens"][0]["token"].as_str().unwrap().to_string()
}

#[test]
fn rotate_replaces_the_token_and_can_narrow_scopes() {
    let (a, gw) = gateway_home();
    let b = TestHome::new();
    let id = pair(&a, &b, &gw.url, "operator.read,operator.write");
    let old = stored_token(&b);
    let (code, v) =
        run(a
            .viber()
            .args(["pair", "rotate", &id, "--scopes", "operator.read", "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["schema"], "viber.pair-rotate/v1");
    assert_eq!(v["device"]["scopes"], json!(["operator.read"]));
    assert_eq!(v["device"]["tokenIssued"], false);
    // The old token is dead.
    let (code, v) = run(b.viber().args(["--gateway", &gw.url, "status", "--json"]));
    assert_eq!(code, 7);
    assert_eq!(v["code"], "UNAUTHORIZED");
    // The device fetches its new token with the gateway token, once.
    let (code, v) = run(b
        .viber()
        .args(["--gateway", &gw.url, "pair", "--json"])
        .env("VIBER_GATEWAY_TOKEN", a.token()));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "paired");
    assert_eq!(v["tokenStored"], true);
    let new = stored_token(&b);
    assert_ne!(old, new);
    let (code, v) = run(b.viber().args(["--gateway", &gw.url, "status", "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["device"]["scopes"], json!(["operator.read"]));
    // And the old one still fails on the wire.
    rt().block_on(async {
        let key = key_of(&b);
        let mut raw = Raw::open(&gw.url).await;
        let mut opts = viber::client::ConnectOptions::operator("ws://unused");
        opts.device_token = Some(old.clone());
        let p = viber::client::connect_params(&key, &opts, &raw.nonce);
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "UNAUTHORIZED");
    });
    // Rotating an unknown device: exit 1.
    let (code, _) = run(a
        .viber()
        .args(["pair", "rotate", "0123456789abcdef", "--json"]));
    assert_eq!(code, 1);
}

#[test]
fn an_approver_cannot_grant_what_it_does_not_hold() {
    let (a, gw) = gateway_home();
    let b = TestHome::new();
    let c = TestHome::new();
    // B may pair others but holds no write scope itself.
    pair(&a, &b, &gw.url, "operator.read,operator.pairing");
    let mut req = Requester::start(&c, &gw.url, &a.token(), &[]);
    let id = req.request_id();
    let (code, v) = run(b.viber().args([
        "--gateway",
        &gw.url,
        "pair",
        "approve",
        &id,
        "--scopes",
        "operator.read,operator.write",
        "--json",
    ]));
    assert_eq!(code, 7, "{v}");
    assert_eq!(v["code"], "FORBIDDEN");
    assert_eq!(v["details"]["notHeld"], json!(["operator.write"]));
    let (code, v) = run(b.viber().args([
        "--gateway",
        &gw.url,
        "pair",
        "approve",
        &id,
        "--scopes",
        "operator.admin",
        "--json",
    ]));
    assert_eq!(code, 7, "{v}");
    // The default is what was asked, cut down to what B holds.
    let (code, v) = run(b
        .viber()
        .args(["--gateway", &gw.url, "pair", "approve", &id, "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["device"]["scopes"], json!(["operator.read"]));
    assert_eq!(req.exit_code(), 0);
    let (code, v) = run(c.viber().args(["--gateway", &gw.url, "status", "--json"]));
    assert_eq!(code, 0);
    assert_eq!(v["device"]["scopes"], json!(["operator.read"]));
    // And B, asked with no subcommand, is an approver (not a requester).
    let (code, v) = run(b.viber().args(["--gateway", &gw.url, "pair", "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["schema"], "viber.pair-requests/v1");
    // C holds no pairing scope: asked with no subcommand, it reports it is paired.
    let (code, v) = run(c.viber().args(["--gateway", &gw.url, "pair", "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "paired");

    // B rotates its own token: refused without the gateway token to fetch the new one...
    let b_id = key_of(&b).device_id();
    let old = stored_token(&b);
    let (code, _) = run(b
        .viber()
        .args(["--gateway", &gw.url, "pair", "rotate", &b_id, "--json"]));
    assert_eq!(code, 2);
    assert_eq!(stored_token(&b), old, "nothing rotated");
    // ...and with it, the new token is stored at once and the old one is dead.
    let (code, v) = run(b
        .viber()
        .args(["--gateway", &gw.url, "pair", "rotate", &b_id, "--json"])
        .env("VIBER_GATEWAY_TOKEN", a.token()));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["tokenStored"], true);
    assert_ne!(stored_token(&b), old);
    let (code, v) = run(b.viber().args(["--gateway", &gw.url, "status", "--json"]));
    assert_eq!(code, 0, "{v}");
}

#[test]
fn trusted_keys_pair_without_a_request_with_exactly_their_scopes() {
    let a = TestHome::new();
    a.write_config(STRICT);
    // An existing OpenSSH key outside any VIBER_HOME, as ssh-keygen would make it.
    let keydir = tempfile::tempdir().unwrap();
    let keyfile = keydir.path().join("id_ed25519");
    if which("ssh-keygen").is_some() {
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci@build", "-f"])
            .arg(&keyfile)
            .status()
            .unwrap();
        assert!(st.success());
    } else {
        DeviceKey::load_or_create(&keyfile).unwrap();
    }
    // A broken line first: it is reported by number and the rest still load.
    std::fs::write(a.file("gateway/trusted_keys"), "this is not a key\n").unwrap();
    let (code, v) = run(a
        .viber()
        .args(["pair", "trust"])
        .arg(keyfile.with_extension("pub"))
        .args(["--scopes", "operator.read", "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["added"], true);
    assert_eq!(v["line"], 2);
    assert_eq!(mode_of(&a.file("gateway/trusted_keys")), 0o600);
    // Twice is a no-op; with other scopes it is refused (edit the line instead).
    let (code, v) = run(a
        .viber()
        .args(["pair", "trust"])
        .arg(keyfile.with_extension("pub"))
        .args(["--scopes", "operator.read", "--json"]));
    assert_eq!((code, v["added"].clone()), (0, json!(false)));
    let (code, _) = run(a
        .viber()
        .args(["pair", "trust"])
        .arg(keyfile.with_extension("pub"))
        .args(["--scopes", "operator.admin", "--json"]));
    assert_eq!(code, 1);
    // A private key or garbage is bad input.
    let (code, _) = run(a
        .viber()
        .args(["pair", "trust"])
        .arg(&keyfile)
        .arg("--json"));
    assert_eq!(code, 2);

    let mut gw = a.start_gateway();
    let b = TestHome::new();
    // No token at all: the key is the credential.
    let (code, v) = run(b
        .viber()
        .args(["--gateway", &gw.url, "--key"])
        .arg(&keyfile)
        .args(["status", "--json"]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["device"]["scopes"], json!(["operator.read"]));
    let (code, v) = run(b
        .viber()
        .args(["--gateway", &gw.url, "call", "config.get", "--json"])
        .env("VIBER_KEY", &keyfile));
    assert_eq!(code, 7);
    assert_eq!(v["code"], "FORBIDDEN");
    // B's own key is not trusted: no token, no entry.
    let (code, v) = run(b.viber().args(["--gateway", &gw.url, "status", "--json"]));
    assert_eq!(code, 7);
    assert_eq!(v["code"], "UNAUTHORIZED");
    let (_, devs) = run(a.viber().args(["pair", "devices", "--json"]));
    let trusted: Vec<&Value> = devs["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["trusted"] == true)
        .collect();
    assert_eq!(trusted.len(), 2, "the key and the gateway's own: {devs}");
    // Removing its line unpairs it, device token or not.
    std::fs::write(a.file("gateway/trusted_keys"), "").unwrap();
    let (code, v) = run(b
        .viber()
        .args(["--gateway", &gw.url, "status", "--json"])
        .env("VIBER_KEY", &keyfile));
    assert_eq!(code, 7, "{v}");
    let (_, log) = gw.stop();
    assert!(log.contains("trusted_keys:1:"), "{log}");
}

#[test]
fn pending_requests_survive_a_restart_keep_their_id_and_expire() {
    let (a, mut gw) = gateway_home();
    let stranger = DeviceKey::generate("laptop");
    let token = a.token();
    let request = |url: String| {
        let key = &stranger;
        let token = token.clone();
        rt().block_on(async move {
            let mut raw = Raw::open(&url).await;
            let p = raw.params(key, Some(&token));
            raw.send_connect(&p).await;
            let e = raw.response().await.error.unwrap();
            assert_eq!(e.code.as_str(), "PAIRING_REQUIRED");
            e.details.unwrap()["requestId"]
                .as_str()
                .unwrap()
                .to_string()
        })
    };
    let id = request(gw.url.clone());
    gw.stop();
    drop(gw);
    let gw = a.start_gateway();
    assert_eq!(request(gw.url.clone()), id, "same id after a restart");
    let (_, list) = run(a.viber().args(["pair", "list", "--json"]));
    assert_eq!(list["requests"][0]["requestId"], id.as_str());
    drop(gw);
    // Six minutes later (the file says so), it is gone and cannot be approved.
    let path = a.file("gateway/pending.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(360)).to_string();
    let mut v: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    v["requests"][0]["created"] = serde_norway::Value::String(old);
    std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
    let gw = a.start_gateway();
    let (_, list) = run(a.viber().args(["pair", "list", "--json"]));
    assert_eq!(list["requests"], json!([]));
    let (code, v) = run(a.viber().args(["pair", "approve", &id, "--json"]));
    assert_eq!(code, 1);
    assert!(v["message"].as_str().unwrap().contains("expire"), "{v}");
    assert_ne!(request(gw.url.clone()), id, "a new request after expiry");
}

#[test]
fn a_request_flood_is_capped_at_64_pending() {
    let (a, gw) = gateway_home();
    let token = a.token();
    rt().block_on(async {
        let keys: Vec<DeviceKey> = (0..65)
            .map(|i| DeviceKey::generate(&i.to_string()))
            .collect();
        for key in &keys[..64] {
            let mut raw = Raw::open(&gw.url).await;
            let p = raw.params(key, Some(&token));
            raw.send_connect(&p).await;
            assert_eq!(raw.error_code().await, "PAIRING_REQUIRED");
        }
        let mut raw = Raw::open(&gw.url).await;
        let p = raw.params(&keys[64], Some(&token));
        raw.send_connect(&p).await;
        let e = raw.response().await.error.unwrap();
        assert_eq!(e.code.as_str(), "RATE_LIMITED");
        assert!(e.retry_after_ms.is_some());
        // Devices already waiting still get their request back.
        let mut raw = Raw::open(&gw.url).await;
        let p = raw.params(&keys[0], Some(&token));
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "PAIRING_REQUIRED");
    });
    let (_, list) = run(a.viber().args(["pair", "list", "--json"]));
    assert_eq!(list["requests"].as_array().unwrap().len(), 64);
}

#[test]
fn a_bogus_device_token_neither_bypasses_nor_resets_the_limiter() {
    let (a, gw) = gateway_home();
    let token = a.token();
    let owner = key_of(&a);
    let stranger = DeviceKey::generate("x");
    rt().block_on(async {
        let bogus = |key: &DeviceKey, raw: &Raw| {
            let mut opts = viber::client::ConnectOptions::operator("ws://unused");
            opts.device_token = Some("f".repeat(64));
            viber::client::connect_params(key, &opts, &raw.nonce)
        };
        // Unknown device with a device token, and a known device with a wrong one.
        for i in 0..5 {
            let key = if i % 2 == 0 { &stranger } else { &owner };
            let mut raw = Raw::open(&gw.url).await;
            let p = bogus(key, &raw);
            raw.send_connect(&p).await;
            let code = raw.error_code().await;
            assert!(code == "NOT_PAIRED" || code == "UNAUTHORIZED", "{code}");
        }
        // A success in between resets nothing.
        let mut raw = Raw::open(&gw.url).await;
        raw.connect(&owner, &token).await;
        for _ in 0..5 {
            let mut raw = Raw::open(&gw.url).await;
            let p = bogus(&owner, &raw);
            raw.send_connect(&p).await;
            assert_eq!(raw.error_code().await, "UNAUTHORIZED");
        }
        let mut raw = Raw::open(&gw.url).await;
        let p = raw.params(&owner, Some(&token));
        raw.send_connect(&p).await;
        let e = raw.response().await.error.unwrap();
        assert_eq!(e.code.as_str(), "RATE_LIMITED");
        assert!(e.retry_after_ms.unwrap() > 250_000);
    });
}

#[test]
fn replayed_nonce_bad_key_and_bad_signature_file_no_request() {
    let (a, gw) = gateway_home();
    let token = a.token();
    let stranger = DeviceKey::generate("x");
    rt().block_on(async {
        // A connect frame captured from one connection, replayed on the next.
        let first = Raw::open(&gw.url).await;
        let captured = first.params(&stranger, Some(&token));
        drop(first);
        let mut raw = Raw::open(&gw.url).await;
        raw.send_connect(&captured).await;
        assert_eq!(raw.error_code().await, "DEVICE_AUTH_INVALID");

        let mut raw = Raw::open(&gw.url).await;
        let mut p = raw.params(&stranger, Some(&token));
        p.device.public_key = "AAAA".into();
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "DEVICE_AUTH_INVALID");

        let mut raw = Raw::open(&gw.url).await;
        let mut p = raw.params(&stranger, Some(&token));
        p.scopes = vec![viber::protocol::Scope::OperatorRead]; // signed for admin
        raw.send_connect(&p).await;
        assert_eq!(raw.error_code().await, "DEVICE_AUTH_INVALID");
    });
    let (_, list) = run(a.viber().args(["pair", "list", "--json"]));
    assert_eq!(list["requests"], json!([]));
}

#[test]
fn local_devices_need_approval_when_auto_approve_is_off() {
    let (a, gw) = gateway_home();
    let b = TestHome::new();
    // Loopback, right gateway token, no Origin, no forwarding header: still a request.
    let (code, v) = run(b
        .viber()
        .args(["--gateway", &gw.url, "status", "--json"])
        .env("VIBER_GATEWAY_TOKEN", a.token()));
    assert_eq!(code, 7);
    assert_eq!(v["code"], "PAIRING_REQUIRED");
    assert!(v["details"]["requestId"].is_string());
    // B's own gateway token is never sent to a gateway that is not B's.
    let (code, v) = run(b.viber().args(["--gateway", &gw.url, "status", "--json"]));
    assert_eq!(code, 7);
    assert_eq!(v["code"], "UNAUTHORIZED");
    assert!(v["message"].as_str().unwrap().contains("no token"), "{v}");
}

#[test]
fn a_non_loopback_bind_needs_an_existing_private_token_file() {
    let home = TestHome::empty();
    let out = home
        .viber()
        .args(["gateway", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("without a token file"), "{err}");
    assert!(!home.file("gateway/token").exists(), "no token is made up");
    let out = home
        .viber()
        .args(["gateway", "start", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let home = TestHome::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        home.file("gateway/token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = home
        .viber()
        .args(["gateway", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("readable by other users")
    );
}

// ---- the interactive approver, driven through tmux -------------------------------------

struct Tmux {
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        Tmux {
            socket: dir.path().join("t.sock"),
            _dir: dir,
        }
    }

    fn cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new("tmux");
        // CI runs with no terminal and maybe no TERM; the server needs one to start.
        c.env("TERM", "xterm").arg("-S").arg(&self.socket);
        c
    }

    fn start(&self, shell: &str) {
        let st = self
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "160",
                "-y",
                "50",
                shell,
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_screen(&self, what: &str) {
        wait_for(
            &format!("{what:?} on the tmux screen"),
            Duration::from_secs(20),
            || self.screen().contains(what).then_some(()),
        );
    }

    fn keys(&self, keys: &[&str]) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[test]
fn the_interactive_approver_approves_with_scopes_and_rejects() {
    if which("tmux").is_none() {
        panic!("tmux is required for this test (.ci/run installs it)");
    }
    let (a, gw) = gateway_home();
    let b = TestHome::new();
    let c = TestHome::new();
    let mut rb = Requester::start(
        &b,
        &gw.url,
        &a.token(),
        &["--scopes", "operator.read,operator.write"],
    );
    let id_b = rb.request_id();
    let mut rc = Requester::start(&c, &gw.url, &a.token(), &[]);
    let id_c = rc.request_id();

    let tmux = Tmux::new();
    let shell = format!(
        "env -u VIBER_HOME -u VIBER_GATEWAY_URL -u VIBER_GATEWAY_TOKEN -u VIBER_KEY -u RUST_LOG {} --home {} pair; echo EXIT:$?; sleep 600",
        common::BIN,
        a.path().display()
    );
    tmux.start(&shell);
    // Requests come oldest first: B, then C.
    tmux.wait_screen("Decision");
    let screen = tmux.screen();
    assert!(screen.contains(&id_b), "{screen}");
    assert!(screen.contains(&key_of(&b).fingerprint()), "{screen}");
    assert!(screen.contains("127.0.0.1:"), "{screen}");
    tmux.keys(&["Enter"]); // approve
    tmux.wait_screen("Scopes to grant");
    // Untick operator.write (second option, pre-ticked because it was asked for).
    tmux.keys(&["Down"]);
    tmux.keys(&["Space"]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen(&format!("pairing request {id_c}"));
    wait_for(
        "the second Decision prompt",
        Duration::from_secs(20),
        || (tmux.screen().matches("Decision").count() >= 2).then_some(()),
    );
    tmux.keys(&["Down"]);
    tmux.keys(&["Enter"]); // reject
    tmux.wait_screen("EXIT:0");

    assert_eq!(rb.exit_code(), 0);
    let done = rb.next_json();
    assert_eq!(done["scopes"], json!(["operator.read"]), "{done}");
    assert_eq!(rc.exit_code(), 7);
    let screen = tmux.screen();
    assert!(
        screen.contains("approved") && screen.contains("rejected"),
        "{screen}"
    );
    let _ = id_c;
}

// ---- small helpers ------------------------------------------------------------------

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

/// Kills the child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scopeguard(child: Child) -> Guard {
    Guard(child)
}

fn lines_of(out: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next `viber.event/v1` line for `event`, skipping others.
fn next_event(rx: &mpsc::Receiver<String>, event: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {event} event in time"));
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == event {
            return v;
        }
    }
}
