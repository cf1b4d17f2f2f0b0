//! The verbs through the real binary: init, gateway lifecycle, status, call, watch, and
//! the exit codes and JSON shapes of DESIGN.md section 8.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{TestHome, mode_of, stdout_json, wait_for};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct InitOut {
    schema: String,
    home: String,
    created: Vec<String>,
    existing: Vec<String>,
    #[serde(rename = "deviceId")]
    device_id: String,
    fingerprint: String,
}

#[test]
fn init_creates_private_files_and_never_overwrites() {
    let home = TestHome::empty();
    let out = home.viber().args(["init", "--json"]).output().unwrap();
    assert!(out.status.success());
    let first: InitOut = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first.schema, "viber.init/v1");
    // config, device key, gateway token, report-signing key (the home dir itself too)
    assert_eq!(first.created.len(), 5, "{first:?}");
    assert!(first.fingerprint.starts_with("SHA256:"));
    for f in [
        "identity/device_ed25519",
        "gateway/token",
        "config.yaml",
        "gateway/signing_ed25519",
    ] {
        assert_eq!(mode_of(&home.file(f)), 0o600, "{f}");
    }
    for d in ["", "identity", "gateway"] {
        assert_eq!(mode_of(&home.file(d)), 0o700, "{d}");
    }
    let key_before = std::fs::read(home.file("identity/device_ed25519")).unwrap();
    let token_before = home.token();
    home.write_config("pairing:\n  auto_approve_local: false\n");

    let out = home.viber().arg("init").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("left unchanged"), "{text}");
    assert_eq!(
        std::fs::read(home.file("identity/device_ed25519")).unwrap(),
        key_before
    );
    assert_eq!(home.token(), token_before);
    assert_eq!(
        std::fs::read_to_string(home.file("config.yaml")).unwrap(),
        "pairing:\n  auto_approve_local: false\n"
    );
    let out = home.viber().args(["init", "--json"]).output().unwrap();
    let again: InitOut = serde_json::from_slice(&out.stdout).unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.device_id, first.device_id);
}

#[test]
fn the_key_is_a_standard_openssh_key() {
    let home = TestHome::new();
    if which("ssh-keygen").is_none() {
        eprintln!("ssh-keygen not installed: skipping the cross-check");
        return;
    }
    let out = std::process::Command::new("ssh-keygen")
        .args(["-l", "-f"])
        .arg(home.file("identity/device_ed25519.pub"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let ours = home.viber().args(["init", "--json"]).output().unwrap();
    let ours: InitOut = serde_json::from_slice(&ours.stdout).unwrap();
    assert!(
        printed.contains(&ours.fingerprint),
        "{printed} vs {}",
        ours.fingerprint
    );
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

#[test]
fn corrupt_config_is_reported_with_file_and_line_and_left_alone() {
    let home = TestHome::new();
    let bad = "gateway:\n  bind: 127.0.0.1:0\n  tick_interval_ms: soon\n";
    home.write_config(bad);
    let out = home
        .viber()
        .args(["gateway", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("config.yaml:3:"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(
        std::fs::read_to_string(home.file("config.yaml")).unwrap(),
        bad
    );
    // Every verb that reads it says the same, with --json carrying the error object.
    let out = home.viber().args(["init", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout_json(&out)["code"], "BAD_FILE");
}

#[test]
fn corrupt_devices_file_stops_the_gateway_without_touching_it() {
    let home = TestHome::new();
    let bad = "devices:\n- id: abc\n  role: emperor\n";
    std::fs::write(home.file("gateway/devices.yaml"), bad).unwrap();
    let out = home
        .viber()
        .args(["gateway", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("devices.yaml:"), "{err}");
    assert_eq!(
        std::fs::read_to_string(home.file("gateway/devices.yaml")).unwrap(),
        bad
    );
    assert!(home.gateway_json().is_none());
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StatusOut {
    schema: String,
    gateway: GatewayOut,
    device: DeviceOut,
    health: HealthOut,
    presence: Vec<Value>,
    features: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct GatewayOut {
    version: String,
    protocol: u32,
    url: String,
    pid: u32,
    home: String,
    started_at: String,
    uptime_ms: u64,
    signing: SigningOut,
}

/// The key that signs run reports, and the allowed_signers line that names it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct SigningOut {
    principal: String,
    fingerprint: String,
    public_key: String,
    allowed_signers: String,
    namespace: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct DeviceOut {
    id: String,
    fingerprint: String,
    role: String,
    scopes: Vec<String>,
    conn_id: String,
    local: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct HealthOut {
    ok: bool,
    version: String,
    pid: u32,
    uptime_ms: u64,
    connections: usize,
}

#[test]
fn status_json_describes_gateway_device_and_health() {
    let home = TestHome::new();
    let gw = home.start_gateway();
    let out = home.viber().args(["status", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "no logs on a quiet success");
    let s: StatusOut = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.schema, "viber.status/v1");
    assert_eq!(s.gateway.url, gw.url);
    assert_eq!(s.gateway.pid, gw.pid);
    assert_eq!(s.gateway.protocol, 1);
    let signing = &s.gateway.signing;
    assert_eq!(signing.namespace, "viber-report");
    assert!(signing.fingerprint.starts_with("SHA256:"));
    assert_eq!(
        signing.allowed_signers,
        format!(
            "{} namespaces=\"viber-report\" {}",
            signing.principal,
            signing
                .public_key
                .rsplit_once(' ')
                .map(|(k, _)| k)
                .unwrap_or("")
        )
    );
    assert!(s.health.ok);
    assert!(s.device.local);
    assert_eq!(s.device.role, "operator");
    assert!(s.device.scopes.contains(&"operator.admin".to_string()));
    assert_eq!(s.device.id.len(), 64);

    let out = home.viber().arg("status").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&format!("gateway  {}", gw.url)), "{text}");
    assert!(text.contains("health   ok"), "{text}");
}

#[test]
fn status_without_a_gateway_exits_7_with_a_hint() {
    let home = TestHome::new();
    // Point the default at a port nothing listens on.
    home.write_config("gateway:\n  bind: 127.0.0.1:9\n");
    let out = home.viber().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    let v = stdout_json(&out);
    assert_eq!(v["schema"], "viber.error/v1");
    assert_eq!(v["code"], "UNREACHABLE");
    assert_eq!(v["exitCode"], 7);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("viber: cannot reach the gateway at ws://127.0.0.1:9"),
        "{err}"
    );
    assert!(
        err.contains("hint: start one with `viber gateway start`"),
        "{err}"
    );
}

#[test]
fn call_any_method_with_params_and_typed_errors() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let out = home
        .viber()
        .args(["call", "health", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = stdout_json(&out);
    assert_eq!(v["schema"], "viber.call/v1");
    assert_eq!(v["method"], "health");
    assert_eq!(v["payload"]["ok"], true);

    let out = home
        .viber()
        .args([
            "call",
            "system.presence",
            "--params",
            r#"{"role":"node"}"#,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        stdout_json(&out)["payload"]["presence"],
        serde_json::json!([])
    );

    let out = home
        .viber()
        .args(["call", "nope", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout_json(&out)["code"], "UNKNOWN_METHOD");

    let out = home
        .viber()
        .args(["call", "health", "--params", "{oops", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout_json(&out)["code"], "USAGE");

    // Asking for fewer scopes than held: least privilege for scripts.
    let out = home
        .viber()
        .args(["call", "config.get", "--scopes", "operator.read", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout_json(&out)["code"], "FORBIDDEN");
    let out = home
        .viber()
        .args(["call", "config.get", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        stdout_json(&out)["payload"]["config"]["gateway"]["tick_interval_ms"],
        15000
    );
}

#[test]
fn wrong_token_from_the_environment_exits_7() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let out = home
        .viber()
        .env("VIBER_GATEWAY_TOKEN", "not-the-token")
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout_json(&out)["code"], "UNAUTHORIZED");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !err.contains("not-the-token"),
        "secrets never in messages: {err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let home = TestHome::new();
    let out = home.viber().args(["status", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = home.viber().args(["call"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn watch_streams_events_with_consecutive_seq() {
    let home = TestHome::new();
    home.fast_ticks(50);
    let gw = home.start_gateway();
    let out = home
        .viber()
        .args(["watch", "--json", "--count", "6"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["schema"], "viber.event/v1");
        assert_eq!(l["seq"], i as u64 + 1, "{lines:?}");
    }
    assert_eq!(lines[0]["event"], "presence");
    assert!(lines.iter().any(|l| l["event"] == "tick"));
    drop(gw);
}

#[test]
fn watch_sees_presence_of_other_clients() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let mut watch = home
        .std_viber()
        .args(["watch", "--json", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "presence");
    // Another client comes and goes: two more presence events.
    home.viber().args(["call", "health"]).assert().success();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let third: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["event"], "presence");
    assert_eq!(second["payload"]["change"], "connected");
    assert_eq!(second["payload"]["count"], 2);
    assert_eq!(third["payload"]["change"], "disconnected");
    assert_eq!(third["payload"]["count"], 1);
    assert_eq!(
        second["payload"]["entry"]["connId"],
        third["payload"]["entry"]["connId"]
    );
    let status = wait_for("watch to exit", Duration::from_secs(20), || {
        watch.try_wait().unwrap()
    });
    assert!(status.success());
}

#[test]
fn watch_exits_7_after_two_missed_ticks() {
    let home = TestHome::new();
    home.fast_ticks(100);
    let gw = home.start_gateway();
    let mut watch = home
        .std_viber()
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    // Wait for a tick so we know the link was alive, then freeze the gateway.
    loop {
        let l: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if l["event"] == "tick" {
            break;
        }
    }
    gw.signal(nix::sys::signal::Signal::SIGSTOP);
    let status = wait_for(
        "watch to notice the dead link",
        Duration::from_secs(10),
        || watch.try_wait().unwrap(),
    );
    gw.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(status.code(), Some(7));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("two missed ticks"), "{err}");
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let home = TestHome::new();
    home.fast_ticks(20);
    let _gw = home.start_gateway();
    let mut watch = home
        .std_viber()
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap();
    drop(lines); // like `viber watch | head -1`
    let status = wait_for("watch to exit on EPIPE", Duration::from_secs(10), || {
        watch.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));
}
