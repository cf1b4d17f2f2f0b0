//! The gateway's life: foreground and detached start, one instance per home, stale
//! gateway.json, clean shutdown on SIGTERM.

mod common;

use std::time::Duration;

use common::raw::{Raw, rt};
use common::{TestHome, stdout_json, wait_for};
use viber::identity::DeviceKey;

#[test]
fn start_is_idempotent_and_stop_cleans_up() {
    let home = TestHome::new();
    let out = home
        .viber()
        .args(["gateway", "start", "--bind", "127.0.0.1:0", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = stdout_json(&out);
    assert_eq!(started["schema"], "viber.gateway/v1");
    assert_eq!(started["state"], "started");
    let pid = started["pid"].as_u64().unwrap() as u32;
    let url = started["url"].as_str().unwrap().to_string();
    assert_eq!(home.gateway_json().unwrap().url, url);

    // Clients find it through gateway.json, with no flags.
    home.viber().args(["status", "--json"]).assert().success();

    let out = home
        .viber()
        .args(["gateway", "start", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let again = stdout_json(&out);
    assert_eq!(again["state"], "already-running");
    assert_eq!(again["pid"].as_u64().unwrap() as u32, pid);
    let out = home.viber().args(["gateway", "start"]).output().unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("already running")
    );

    let out = home
        .viber()
        .args(["gateway", "stop", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(stdout_json(&out)["state"], "stopped");
    assert!(
        home.gateway_json().is_none(),
        "gateway.json removed on shutdown"
    );
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || zombie(pid));

    let out = home.viber().args(["gateway", "stop"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("no gateway running")
    );
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}

#[test]
fn a_second_gateway_on_the_same_home_fails_naming_the_first() {
    let home = TestHome::new();
    let gw = home.start_gateway();
    let out = home
        .viber()
        .args(["gateway", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&format!("pid {}", gw.pid)), "{err}");
    assert!(err.contains(&gw.url), "{err}");
    // The first one is unharmed.
    assert_eq!(home.gateway_json().unwrap().pid, gw.pid);
    home.viber().arg("status").assert().success();
}

#[test]
fn two_homes_run_side_by_side() {
    let a = TestHome::new();
    let b = TestHome::new();
    let ga = a.start_gateway();
    let gb = b.start_gateway();
    assert_ne!(ga.url, gb.url);
    let sa = stdout_json(&a.viber().args(["status", "--json"]).output().unwrap());
    let sb = stdout_json(&b.viber().args(["status", "--json"]).output().unwrap());
    assert_eq!(sa["gateway"]["pid"], ga.pid);
    assert_eq!(sb["gateway"]["pid"], gb.pid);
    // Home A's token does not open home B's gateway.
    let out = a
        .viber()
        .args(["status", "--json", "--gateway", &gb.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn a_stale_gateway_json_is_ignored_and_replaced() {
    let home = TestHome::new();
    home.write_config("gateway:\n  bind: 127.0.0.1:9\n");
    // A gateway.json left by a process that no longer exists.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(
        home.file("gateway/gateway.json"),
        format!(r#"{{"pid":{dead_pid},"url":"ws://127.0.0.1:1","startedAt":"2026-01-01T00:00:00Z","version":"0.0.0"}}"#),
    )
    .unwrap();
    let out = home.viber().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("127.0.0.1:9"),
        "the stale URL is not used"
    );
    let out = home.viber().args(["gateway", "stop"]).output().unwrap();
    assert!(out.status.success(), "stop of a dead gateway is a no-op");

    let out = home
        .viber()
        .args(["gateway", "start", "--bind", "127.0.0.1:0", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["state"], "started");
    let info = home.gateway_json().unwrap();
    assert_ne!(info.pid, dead_pid);
    home.viber().args(["status"]).assert().success();
    home.viber().args(["gateway", "stop"]).assert().success();
}

#[test]
fn sigterm_closes_connections_with_1001_and_removes_gateway_json() {
    let home = TestHome::new();
    let mut gw = home.start_gateway();
    let key = DeviceKey::load(&home.file("identity/device_ed25519")).unwrap();
    let token = home.token();
    rt().block_on(async {
        let mut raw = Raw::open(&gw.url).await;
        raw.connect(&key, &token).await;
        // A second connection still in the handshake is closed too.
        let mut pending = Raw::open(&gw.url).await;
        let (status, _) = gw.stop();
        assert_eq!(status.code(), Some(0));
        assert_eq!(raw.closed().await, Some(1001));
        assert_eq!(pending.closed().await, Some(1001));
    });
    assert!(home.gateway_json().is_none());
    // And the next start reuses the same files.
    let gw2 = home.start_gateway();
    assert_ne!(gw2.pid, 0);
}

#[test]
fn kill_9_loses_no_pairing() {
    let home = TestHome::new();
    let gw = home.start_gateway();
    home.viber().args(["status"]).assert().success();
    let devices = std::fs::read_to_string(home.file("gateway/devices.yaml")).unwrap();
    let key = DeviceKey::load(&home.file("identity/device_ed25519")).unwrap();
    assert!(devices.contains(&key.device_id()));
    gw.signal(nix::sys::signal::Signal::SIGKILL);
    wait_for("the lock to be released", Duration::from_secs(10), || {
        let out = home.viber().args(["gateway", "stop"]).output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("no gateway running")
            .then_some(())
    });
    drop(gw);
    let _gw = home.start_gateway();
    let after = std::fs::read_to_string(home.file("gateway/devices.yaml")).unwrap();
    assert!(after.contains(&key.device_id()));
    home.viber().args(["status"]).assert().success();
}
