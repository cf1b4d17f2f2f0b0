//! Runs through the real binary: task files, the node worker, tmux, session logs,
//! idempotency, the queue, cancel, a killed worker and a restarted gateway.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{TestHome, json_lines, stdout_json, wait_for};
use serde_json::Value;

fn pid_alive(pattern: &str) -> bool {
    StdCommand::new("pgrep")
        .args(["-f", pattern])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

use std::process::Command as StdCommand;

#[test]
fn the_hello_example_runs_offline_with_autostart_and_is_proven() {
    let home = TestHome::new();
    home.write_config("gateway:\n  bind: 127.0.0.1:0\n");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.yaml");
    let out = home
        .viber()
        .arg("run")
        .arg(&example)
        .arg("--json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no gateway was running"), "{err}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "its accept check proved it: {err}"
    );
    let lines = json_lines(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["schema"], "viber.run/v1");
    assert_eq!(last["status"], "succeeded");
    assert_eq!(last["exitCode"], 0);
    let run_id = last["runId"].as_str().unwrap();
    let workspace = Path::new(last["workspace"].as_str().unwrap());
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["schema"] == "viber.event/v1")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "run.progress" && l["payload"]["event"] == "exited")
    );
    let steps = last["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert!(steps.iter().all(|s| s["exitStatus"] == 0));
    // Evidence and notes on disk.
    let log1 = std::fs::read_to_string(workspace.join("evidence/terminal/1.log")).unwrap();
    assert!(log1.contains("hello from viber"), "{log1}");
    assert!(
        std::fs::read_to_string(workspace.join("plan.md"))
            .unwrap()
            .contains("echo")
    );
    let progress = std::fs::read_to_string(workspace.join("progress.md")).unwrap();
    assert!(
        progress.contains("claim 1") && progress.contains("proven"),
        "{progress}"
    );
    assert!(progress.contains("succeeded"), "{progress}");
    // The verifier's signed report is there by the time `viber run` returns.
    assert!(workspace.join("report.json").is_file());
    assert!(workspace.join("report.json.sig").is_file());
    // The session log holds the whole history, one JSON line per event.
    let session = home.file(&format!("agents/default/sessions/{run_id}.jsonl"));
    let events: Vec<Value> = std::fs::read_to_string(&session)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "run.created");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["runId"], run_id);
        assert!(e["ts"].is_string());
    }
    assert!(
        !home.tmux_has_session(run_id),
        "no tmux session left behind"
    );
    home.viber().args(["gateway", "stop"]).assert().success();
}

#[test]
fn runs_work_when_local_devices_need_approval() {
    let home = TestHome::new();
    home.write_config("pairing:\n  auto_approve_local: false\n");
    let _gw = home.start_gateway();
    let t = home.task(
        "strict.yaml",
        "goal: strict\nsteps:\n  - run: echo strict-ok\n",
    );
    let (_, last) = home.run_json(&t);
    assert_eq!(last["status"], "unverified", "{last}");
    assert_eq!(last["steps"][0]["exitStatus"], 0);
    let pending = stdout_json(
        &home
            .viber()
            .args(["pair", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(pending["schema"], "viber.pair-requests/v1");
    assert!(
        pending["requests"].as_array().unwrap().is_empty(),
        "the worker filed no pairing request: {pending}"
    );
}

#[test]
fn no_autostart_without_a_gateway_exits_7() {
    let home = TestHome::new();
    home.write_config("gateway:\n  bind: 127.0.0.1:9\n");
    let t = home.task("t.yaml", "goal: x\nsteps:\n  - run: echo hi\n");
    let out = home
        .viber()
        .arg("run")
        .arg(&t)
        .args(["--no-autostart", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout_json(&out)["code"], "UNREACHABLE");
    assert!(home.gateway_json().is_none(), "nothing was started");
}

#[test]
fn a_failing_step_and_a_missing_command_end_failed() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "fail.yaml",
        "goal: fail\nsteps:\n  - run: echo before; exit 3\n  - run: echo never\n",
    );
    let (out, last) = home.run_json(&t);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(last["status"], "failed");
    assert_eq!(
        last["steps"].as_array().unwrap().len(),
        1,
        "step 2 never started"
    );
    assert_eq!(last["steps"][0]["exitStatus"], 3);
    assert!(last["reason"].as_str().unwrap().contains("status 3"));

    let t = home.task(
        "nocmd.yaml",
        "goal: x\nsteps:\n  - run: no-such-command-viber-test\n",
    );
    let (out, last) = home.run_json(&t);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(last["status"], "failed");
    assert_eq!(last["steps"][0]["exitStatus"], 127, "the shell's status");
}

#[test]
fn bad_task_files_exit_2_and_start_nothing() {
    let home = TestHome::new();
    home.write_config("gateway:\n  bind: 127.0.0.1:0\n");
    let cases = [
        ("missing.yaml", None, "missing.yaml"),
        ("yaml.yaml", Some("goal: [unclosed\n"), "yaml.yaml:"),
        (
            "unknown.yaml",
            Some("goal: x\nstepz: []\n"),
            "unknown.yaml:2:",
        ),
        (
            "type.yaml",
            Some("goal: x\nsteps:\n  - run: ls\n    background: sometimes\n"),
            "type.yaml:4:",
        ),
        (
            "check.yaml",
            Some("goal: x\naccept:\n  - claim: c\n    ping: example.com\n"),
            "ping",
        ),
    ];
    for (name, body, needle) in cases {
        let p = home.file(&format!("../{name}"));
        if let Some(b) = body {
            std::fs::write(&p, b).unwrap();
        }
        let out = home
            .viber()
            .arg("run")
            .arg(&p)
            .arg("--json")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: {err}");
        assert_eq!(stdout_json(&out)["code"], "BAD_INPUT");
    }
    assert!(
        home.gateway_json().is_none(),
        "no gateway was started for bad input"
    );
    assert!(!home.file("workspace").exists(), "no run was started");
}

#[test]
fn detach_status_runs_and_not_found() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task("ok.yaml", "goal: quick\nsteps:\n  - run: echo hi\n");
    let out = home
        .viber()
        .arg("run")
        .arg(&t)
        .args(["--detach", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let started = stdout_json(&out);
    let run_id = started["runId"].as_str().unwrap().to_string();
    let done = home.wait_run(&run_id, "the run to end", |v| {
        v["exitCode"] == 1 && v["status"] != "queued" && v["status"] != "running"
    });
    assert_eq!(done["schema"], "viber.run/v1");
    assert_eq!(done["status"], "unverified");
    assert!(
        done["tmux"]["attach"]
            .as_str()
            .unwrap()
            .contains("attach -r")
    );
    let human = home.viber().args(["status", &run_id]).output().unwrap();
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(
        text.contains("tmux -S") && text.contains("attach -r"),
        "{text}"
    );

    let list = stdout_json(&home.viber().args(["runs", "--json"]).output().unwrap());
    assert_eq!(list["schema"], "viber.runs/v1");
    assert!(
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["runId"] == run_id)
    );

    let out = home
        .viber()
        .args(["status", "no-such-run", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["code"], "NOT_FOUND");
    let out = home
        .viber()
        .args(["watch", "no-such-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn watch_terminal_prints_exactly_the_pane_logs() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    // A step that waits for the watcher, then prints a lot, fast, with non-UTF-8 bytes.
    let t = home.task(
        "term.yaml",
        "goal: print\nsteps:\n  - run: while [ ! -f go ]; do sleep 0.01; done; seq 1 30000; printf '\\377\\001end\\n'\n  - run: echo second step\n",
    );
    let out = home
        .viber()
        .arg("run")
        .arg(&t)
        .args(["--detach"])
        .output()
        .unwrap();
    let run_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let watch = home
        .std_viber()
        .args(["watch", &run_id, "--terminal"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    home.wait_run(&run_id, "step 1 to start", |v| {
        v["steps"][0]["state"] == "running"
    });
    std::fs::write(t.parent().unwrap().join("go"), "").unwrap();
    let out = watch.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ws = home.wait_run(&run_id, "end", |v| v["status"] == "unverified")["workspace"]
        .as_str()
        .unwrap()
        .to_string();
    let mut expected = std::fs::read(Path::new(&ws).join("evidence/terminal/1.log")).unwrap();
    expected.extend(std::fs::read(Path::new(&ws).join("evidence/terminal/2.log")).unwrap());
    assert!(expected.len() > 150_000);
    assert_eq!(out.stdout.len(), expected.len(), "bytes lost or duplicated");
    assert!(
        out.stdout == expected,
        "the stream differs from the pane logs"
    );
}

#[test]
fn the_same_idempotency_key_starts_one_run_even_across_a_kill_9() {
    let home = TestHome::new();
    let gw = home.start_gateway();
    let t = home.task("idem.yaml", "goal: once\nsteps:\n  - run: echo once\n");
    let start = |h: &TestHome| {
        let out = h
            .viber()
            .arg("run")
            .arg(&t)
            .args(["--detach", "--json", "--idempotency-key", "nightly-42"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_json(&out)["runId"].as_str().unwrap().to_string()
    };
    let first = start(&home);
    assert_eq!(start(&home), first);
    gw.signal(nix::sys::signal::Signal::SIGKILL);
    drop(gw);
    let _gw = home.start_gateway();
    assert_eq!(start(&home), first, "the record survived the kill -9");
    let list = stdout_json(&home.viber().args(["runs", "--json"]).output().unwrap());
    assert_eq!(
        list["runs"].as_array().unwrap().len(),
        1,
        "one run, not three"
    );

    let other = home.task(
        "other.yaml",
        "goal: different\nsteps:\n  - run: echo other\n",
    );
    let out = home
        .viber()
        .arg("run")
        .arg(&other)
        .args(["--json", "--idempotency-key", "nightly-42"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["code"], "IDEMPOTENCY_CONFLICT");
}

#[test]
fn cancel_kills_the_pane_and_everything_it_started() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "long.yaml",
        "goal: long\nsteps:\n  - run: sleep 876543 & sleep 876542\n",
    );
    let run = home
        .std_viber()
        .arg("run")
        .arg(&t)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run_id = wait_for("the run to be listed", Duration::from_secs(30), || {
        let v = stdout_json(&home.viber().args(["runs", "--json"]).output().unwrap());
        v["runs"][0]["runId"].as_str().map(str::to_string)
    });
    home.wait_run(&run_id, "the step to run", |v| {
        v["steps"][0]["state"] == "running"
    });
    wait_for("the sleeps to start", Duration::from_secs(10), || {
        pid_alive("sleep 87654[23]").then_some(())
    });
    let params = format!(r#"{{"runId":"{run_id}","action":"cancel","idempotencyKey":"c1"}}"#);
    home.viber()
        .args(["call", "run.control", "--params", &params])
        .assert()
        .success();
    let out = run.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out).pop().unwrap()["status"], "cancelled");
    wait_for(
        "every process of the run to be gone",
        Duration::from_secs(10),
        || (!pid_alive("sleep 87654[23]")).then_some(()),
    );
    assert!(!home.tmux_has_session(&run_id));
}

#[test]
fn a_killed_worker_marks_the_run_interrupted() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task("w.yaml", "goal: long\nsteps:\n  - run: sleep 765432\n");
    let out = home
        .viber()
        .arg("run")
        .arg(&t)
        .arg("--detach")
        .output()
        .unwrap();
    let run_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let v = home.wait_run(&run_id, "the worker to run the step", |v| {
        v["steps"][0]["state"] == "running" && v["workerPid"].is_u64()
    });
    let pid = v["workerPid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let v = home.wait_run(&run_id, "the run to be interrupted", |v| {
        v["status"] != "running"
    });
    assert_eq!(v["status"], "interrupted");
    assert_eq!(v["exitCode"], 6);
    wait_for(
        "the orphaned step to be killed",
        Duration::from_secs(10),
        || (!pid_alive("sleep 765432")).then_some(()),
    );
    let out = home.viber().args(["watch", &run_id]).output().unwrap();
    assert_eq!(out.status.code(), Some(6));
}

#[test]
fn a_run_survives_a_gateway_restart() {
    let home = TestHome::new();
    let mut gw = home.start_gateway();
    let dir = home.file("../tasks");
    let t = home.task(
        "restart.yaml",
        "goal: survive\nsteps:\n  - run: while [ ! -f go ]; do sleep 0.01; done; echo after-restart\n  - run: echo two\n",
    );
    let out = home
        .viber()
        .arg("run")
        .arg(&t)
        .arg("--detach")
        .output()
        .unwrap();
    let run_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let before = home.wait_run(&run_id, "step 1 to run", |v| {
        v["steps"][0]["state"] == "running"
    });
    let (status, _) = gw.stop();
    assert!(status.success());
    let _gw = home.start_gateway();
    std::fs::write(dir.join("go"), "").unwrap();
    let after = home.wait_run(&run_id, "the run to finish", |v| {
        v["status"] == "unverified"
    });
    assert_eq!(after["steps"].as_array().unwrap().len(), 2);
    assert_eq!(after["steps"][1]["exitStatus"], 0);
    assert_eq!(
        after["workerPid"], before["workerPid"],
        "the same worker finished it"
    );
    // The node reconnected to the new gateway and reported; a watcher sees the outcome.
    let out = home
        .viber()
        .args(["watch", &run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out).pop().unwrap()["status"], "unverified");
    // And a restart after the end shows the same history.
    drop(_gw);
    let _gw = home.start_gateway();
    let again = home.wait_run(&run_id, "the same status", |v| v["status"] == "unverified");
    assert_eq!(again["steps"], after["steps"]);
}

#[test]
fn runs_queue_beyond_the_concurrency_limit() {
    let home = TestHome::new();
    home.write_config("runs:\n  concurrency: 1\n");
    let _gw = home.start_gateway();
    let dir = home.file("../tasks");
    let t1 = home.task(
        "q1.yaml",
        "goal: first\nsteps:\n  - run: while [ ! -f go ]; do sleep 0.01; done\n",
    );
    let t2 = home.task("q2.yaml", "goal: second\nsteps:\n  - run: echo second\n");
    let id1 = String::from_utf8(
        home.viber()
            .arg("run")
            .arg(&t1)
            .arg("--detach")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id2 = String::from_utf8(
        home.viber()
            .arg("run")
            .arg(&t2)
            .arg("--detach")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let (id1, id2) = (id1.trim(), id2.trim());
    home.wait_run(id1, "the first to run", |v| v["status"] == "running");
    let list = stdout_json(&home.viber().args(["runs", "--json"]).output().unwrap());
    let second = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["runId"] == id2)
        .unwrap()
        .clone();
    assert_eq!(second["status"], "queued");
    assert_eq!(second["queuePosition"], 1);
    let text = String::from_utf8(home.viber().arg("runs").output().unwrap().stdout).unwrap();
    assert!(text.contains("queued (#1)"), "{text}");
    std::fs::write(dir.join("go"), "").unwrap();
    home.wait_run(id2, "the second to finish", |v| v["status"] == "unverified");
}

#[test]
fn background_steps_live_until_the_run_ends_then_are_cleaned_up() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "bg.yaml",
        "goal: bg\nsteps:\n  - run: sleep 654321\n    background: true\n  - run: pgrep -f 'sleep 654321'\n",
    );
    let (_, last) = home.run_json(&t);
    assert_eq!(
        last["steps"][1]["exitStatus"], 0,
        "the background step was alive during step 2"
    );
    assert!(!pid_alive("sleep 654321"), "and gone after the run");
    assert!(!home.tmux_has_session(last["runId"].as_str().unwrap()));
}

#[test]
fn node_and_operator_methods_are_kept_apart() {
    let home = TestHome::new();
    let gw = home.start_gateway();
    let out = home
        .viber()
        .args([
            "call",
            "node.run.claim",
            "--params",
            r#"{"runId":"x","pid":1}"#,
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout_json(&out)["details"]["missingScope"], "node.exec");
    let token = home.token();
    common::raw::rt().block_on(async {
        use viber::client::{Client, ConnectOptions};
        let key = viber::identity::DeviceKey::generate("node");
        let mut opts = ConnectOptions::operator(gw.url.clone());
        opts.token = Some(token);
        opts.role = viber::protocol::Role::Node;
        opts.scopes = vec![viber::protocol::Scope::NodeExec];
        opts.mode = viber::protocol::ClientMode::Node;
        let client = Client::connect(&key, &opts).await.unwrap();
        let e = client
            .request("run.list", serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("FORBIDDEN"), "{e}");
        // Asking for operator scopes as a node gets nothing more.
        assert_eq!(
            client.hello.auth.scopes,
            vec![viber::protocol::Scope::NodeExec]
        );
    });
}

#[test]
fn without_tmux_the_run_fails_saying_how_to_install_it() {
    let home = TestHome::new();
    // The gateway (and so its workers) get a PATH without tmux.
    let empty = home.file("../empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let child = home
        .std_viber()
        .env("PATH", &empty)
        .args(["gateway", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut gw = common::GatewayProc {
        pid: child.id(),
        child: Some(child),
        url: String::new(),
    };
    wait_for("gateway.json", Duration::from_secs(20), || {
        home.gateway_json().filter(|g| g.pid == gw.pid)
    });
    let t = home.task("t.yaml", "goal: x\nsteps:\n  - run: echo hi\n");
    let (out, last) = home.run_json(&t);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(last["status"], "failed");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("apt-get install tmux"),
        "{last}"
    );
    gw.stop();
}

#[test]
fn an_unwritable_workspace_fails_loudly_and_the_gateway_stays_up() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    // A file where the workspace directory should be: nothing can be created under it.
    std::fs::write(home.file("workspace"), "not a directory").unwrap();
    let t = home.task("t.yaml", "goal: x\nsteps:\n  - run: echo hi\n");
    let out = home
        .viber()
        .arg("run")
        .arg(&t)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    assert_eq!(v["code"], "UNAVAILABLE");
    assert!(v["message"].as_str().unwrap().contains("workspace"), "{v}");
    home.viber().args(["status"]).assert().success();
}

#[test]
fn only_the_runs_own_worker_can_report_for_it() {
    let home = TestHome::new();
    let gw = home.start_gateway();
    let t = home.task("own.yaml", "goal: own\nsteps:\n  - run: sleep 432101\n");
    let out = home
        .viber()
        .arg("run")
        .arg(&t)
        .arg("--detach")
        .output()
        .unwrap();
    let run_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    home.wait_run(&run_id, "the worker to run the step", |v| {
        v["steps"][0]["state"] == "running"
    });
    let token = home.token();
    common::raw::rt().block_on(async {
        use serde_json::json;
        use viber::client::{Client, ConnectOptions};
        // Another node on this host, paired as a node.
        let key = viber::identity::DeviceKey::generate("rogue");
        let mut opts = ConnectOptions::operator(gw.url.clone());
        opts.token = Some(token);
        opts.role = viber::protocol::Role::Node;
        opts.scopes = vec![viber::protocol::Scope::NodeExec];
        opts.mode = viber::protocol::ClientMode::Node;
        let rogue = Client::connect(&key, &opts).await.unwrap();
        let forged = json!({"ts": "2026-01-01T00:00:00Z", "runId": run_id, "seq": 999,
            "type": "run.status", "payload": {"status": "succeeded", "exitCode": 0}});
        let e = rogue.request("node.run.event", forged).await.unwrap_err();
        assert!(e.to_string().contains("FORBIDDEN"), "{e}");
        let e = rogue
            .request("node.run.claim", json!({"runId": run_id, "pid": 1}))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("CONFLICT"), "{e}");
        let e = rogue
            .request(
                "node.terminal.output",
                json!({"runId": run_id, "step": 1, "offset": 0, "data": ""}),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("FORBIDDEN"), "{e}");
    });
    let s = stdout_json(
        &home
            .viber()
            .args(["status", &run_id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(s["status"], "running", "the forged status changed nothing");
    home.viber()
        .args(["chat", &run_id, "--cancel"])
        .assert()
        .success();
    home.wait_run(&run_id, "the cancel", |v| v["status"] == "cancelled");
}

#[test]
fn what_a_finished_step_left_running_is_ended_with_the_run() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "nohup.yaml",
        // It ignores the hangup and SIGTERM, so only SIGKILL to its group ends it.
        "goal: leftovers\nsteps:\n  - run: trap '' HUP TERM; sleep 321987 </dev/null >/dev/null 2>&1 &\n  - run: pgrep -f 'sleep 321987'\n",
    );
    let (_, last) = home.run_json(&t);
    assert_eq!(
        last["steps"][1]["exitStatus"], 0,
        "it outlived its step: {last}"
    );
    assert!(!pid_alive("sleep 321987"), "and not the run");
}
