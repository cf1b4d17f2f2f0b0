//! Working modes, approvals, chat control and budgets through the real binary: a run in
//! one process, a second client steering it, as a person at another terminal would.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{TestHome, stdout_json, wait_for};
use serde_json::Value;

fn spawn_run(home: &TestHome, task: &std::path::Path, extra: &[&str]) -> Child {
    home.std_viber()
        .arg("run")
        .arg(task)
        .arg("--json")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (Option<i32>, Value) {
    let out = child.wait_with_output().unwrap();
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code(), last)
}

/// Waits for one pending approval and returns it.
fn pending(home: &TestHome) -> Value {
    wait_for("an approval request", Duration::from_secs(30), || {
        let v = stdout_json(&home.viber().args(["approve", "--json"]).output().unwrap());
        v["approvals"].as_array().and_then(|a| a.first().cloned())
    })
}

fn run_id_of(home: &TestHome) -> String {
    wait_for("the run to be listed", Duration::from_secs(30), || {
        let v = stdout_json(&home.viber().args(["runs", "--json"]).output().unwrap());
        v["runs"].as_array()?.last()?["runId"]
            .as_str()
            .map(str::to_string)
    })
}

#[test]
fn always_ask_waits_for_an_operator_and_deny_blocks() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "ask.yaml",
        "goal: ask\nsteps:\n  - run: echo one\n  - run: touch should-not-exist\n",
    );
    let run = spawn_run(&home, &t, &["--mode", "always-ask"]);
    let a = pending(&home);
    assert_eq!(a["command"], "echo one");
    let run_id = a["runId"].as_str().unwrap().to_string();
    let s = stdout_json(
        &home
            .viber()
            .args(["status", &run_id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(s["status"], "awaiting_approval");
    assert_eq!(s["pendingApproval"]["command"], "echo one");
    let id = a["approvalId"].as_str().unwrap();
    let out = home
        .viber()
        .args(["approve", id, "--allow", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["schema"], "viber.approval/v1");
    // The second action is asked about too; deny it with a message.
    let b = wait_for("the second approval", Duration::from_secs(30), || {
        let a = pending(&home);
        (a["approvalId"] != id).then_some(a)
    });
    assert_eq!(b["command"], "touch should-not-exist");
    home.viber()
        .args([
            "approve",
            b["approvalId"].as_str().unwrap(),
            "--deny",
            "--message",
            "not on a Friday",
        ])
        .assert()
        .success();
    let (code, last) = finish(run);
    assert_eq!(code, Some(4));
    assert_eq!(last["status"], "blocked");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("touch should-not-exist") && reason.contains("not on a Friday"),
        "{reason}"
    );
    assert!(!t.parent().unwrap().join("should-not-exist").exists());
    // The report names the action that was refused.
    let report: Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(last["workspace"].as_str().unwrap()).join("report.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let outcome = &report["predicate"]["outcome"];
    assert_eq!(outcome["status"], "blocked");
    assert!(
        outcome["reason"]
            .as_str()
            .unwrap()
            .contains("touch should-not-exist"),
        "{outcome}"
    );
    // Answering a finished approval is a clear error.
    let out = home
        .viber()
        .args(["approve", id, "--allow"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn an_unanswered_approval_ends_the_run_blocked_never_hangs() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task("t.yaml", "goal: wait\nsteps:\n  - run: echo never\n");
    let run = spawn_run(
        &home,
        &t,
        &["--mode", "always-ask", "--approval-timeout", "1"],
    );
    let (code, last) = finish(run);
    assert_eq!(code, Some(4));
    assert_eq!(last["status"], "blocked");
    assert!(
        last["reason"].as_str().unwrap().contains("echo never"),
        "{last}"
    );
    assert!(last["steps"].as_array().unwrap().is_empty());
}

#[test]
fn deny_wins_in_every_mode() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    for mode in ["always-ask", "agent-decides", "always-execute"] {
        let t = home.task(
            &format!("{mode}.yaml"),
            "goal: d\npolicy:\n  allow: [\"rm\"]\n  deny: [\"rm -rf\"]\nsteps:\n  - run: rm -rf keep-me\n",
        );
        std::fs::create_dir_all(t.parent().unwrap().join("keep-me")).unwrap();
        let (code, last) = finish(spawn_run(&home, &t, &["--mode", mode]));
        assert_eq!(code, Some(4), "{mode}");
        assert!(
            last["reason"].as_str().unwrap().contains("denied by rule"),
            "{mode}: {last}"
        );
        assert!(t.parent().unwrap().join("keep-me").exists(), "{mode}");
    }
}

#[test]
fn agent_decides_asks_only_for_risky_or_ask_rules_and_remember_sticks() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "ad.yaml",
        "goal: ad\nsteps:\n  - run: echo safe\n  - run: rm -f scratch-1\n  - run: rm -f scratch-2\n",
    );
    let run = spawn_run(&home, &t, &["--mode", "agent-decides"]);
    let a = pending(&home);
    assert_eq!(a["command"], "rm -f scratch-1", "echo ran without asking");
    home.viber()
        .args([
            "approve",
            a["approvalId"].as_str().unwrap(),
            "--allow",
            "--remember",
        ])
        .assert()
        .success();
    let (code, last) = finish(run);
    assert_eq!(code, Some(1), "{last}");
    assert_eq!(
        last["steps"].as_array().unwrap().len(),
        3,
        "rm was remembered, not asked again"
    );

    // always-execute asks only where a rule says ask.
    let t = home.task(
        "ae.yaml",
        "goal: ae\npolicy:\n  ask: [\"echo ask-me\"]\nsteps:\n  - run: rm -f nothing\n  - run: echo ask-me\n",
    );
    let run = spawn_run(&home, &t, &["--mode", "always-execute"]);
    let a = pending(&home);
    assert_eq!(a["command"], "echo ask-me");
    assert!(a["reason"].as_str().unwrap().contains("says ask"));
    home.viber()
        .args(["approve", a["approvalId"].as_str().unwrap(), "--allow"])
        .assert()
        .success();
    let (code, _) = finish(run);
    assert_eq!(code, Some(1));
}

#[test]
fn pause_resume_chat_and_rescope_a_live_run() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "p.yaml",
        "goal: original goal\nsteps:\n  - run: while [ ! -f go ]; do sleep 0.01; done\n  - run: echo second\n",
    );
    let run = spawn_run(&home, &t, &["--mode", "always-execute"]);
    let run_id = run_id_of(&home);
    home.wait_run(&run_id, "step 1 to run", |v| {
        v["steps"][0]["state"] == "running"
    });
    home.viber()
        .args(["chat", &run_id, "use port 9090 instead"])
        .assert()
        .success();
    home.viber()
        .args(["chat", &run_id, "--rescope", "the new goal"])
        .assert()
        .success();
    let out = home
        .viber()
        .args(["chat", &run_id, "--pause", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["schema"], "viber.chat/v1");
    std::fs::write(t.parent().unwrap().join("go"), "").unwrap();
    // The current action finishes, no new one starts.
    let paused = home.wait_run(&run_id, "the run to pause", |v| v["status"] == "paused");
    assert_eq!(paused["steps"].as_array().unwrap().len(), 1);
    assert_eq!(paused["steps"][0]["exitStatus"], 0);
    assert_eq!(paused["goal"], "the new goal");
    assert_eq!(paused["goalHistory"][0], "original goal");
    home.viber()
        .args(["chat", &run_id, "--resume"])
        .assert()
        .success();
    let (code, last) = finish(run);
    assert_eq!(code, Some(1));
    assert_eq!(last["steps"].as_array().unwrap().len(), 2);
    let log =
        std::fs::read_to_string(home.file(&format!("agents/default/sessions/{run_id}.jsonl")))
            .unwrap();
    assert!(
        log.contains("use port 9090 instead"),
        "chat feedback is in the session log"
    );
    assert!(log.contains("\"run.rescoped\"") && log.contains("original goal"));
    // Both goals and the steering are in the signed report too.
    let report: Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(last["workspace"].as_str().unwrap()).join("report.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pred = &report["predicate"];
    assert_eq!(pred["goal"], "the new goal");
    assert_eq!(pred["goalHistory"][0], "original goal");
    let timeline = pred["timeline"].to_string();
    assert!(
        timeline.contains("re-scoped by an operator to: the new goal"),
        "{timeline}"
    );
    assert!(timeline.contains("use port 9090 instead"), "{timeline}");
    // Steering a finished run is a clear error.
    let out = home
        .viber()
        .args(["chat", &run_id, "--pause"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn chat_cancel_and_reprioritize() {
    let home = TestHome::new();
    home.write_config("runs:\n  concurrency: 1\n");
    let _gw = home.start_gateway();
    let blocker = home.task("b.yaml", "goal: b\nsteps:\n  - run: sleep 543210\n");
    let quick = home.task("q.yaml", "goal: q\nsteps:\n  - run: echo q\n");
    let run = spawn_run(&home, &blocker, &["--mode", "always-execute"]);
    let first = run_id_of(&home);
    let detach = |t: &std::path::Path| {
        let out = home
            .viber()
            .arg("run")
            .arg(t)
            .args(["--detach"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let second = detach(&quick);
    let third = detach(&quick);
    let out = home
        .viber()
        .args(["chat", &third, "--reprioritize", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["queuePosition"], 1);
    let s = stdout_json(
        &home
            .viber()
            .args(["status", &second, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(s["queuePosition"], 2);
    let out = home
        .viber()
        .args(["chat", &first, "--reprioritize", "1"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a running run is not in the queue"
    );
    home.wait_run(&first, "the blocker to run", |v| {
        v["steps"][0]["state"] == "running"
    });
    home.viber()
        .args(["chat", &first, "--cancel"])
        .assert()
        .success();
    let (code, last) = finish(run);
    assert_eq!(code, Some(6));
    assert_eq!(last["status"], "cancelled");
    home.wait_run(&second, "the queue to drain", |v| {
        v["status"] == "unverified"
    });
    let a = stdout_json(
        &home
            .viber()
            .args(["status", &second, "--json"])
            .output()
            .unwrap(),
    );
    let b = stdout_json(
        &home
            .viber()
            .args(["status", &third, "--json"])
            .output()
            .unwrap(),
    );
    assert!(
        b["endedAt"].as_str() <= a["endedAt"].as_str(),
        "the reprioritized run went first"
    );
}

#[test]
fn budgets_end_the_run_with_the_limit_and_figures() {
    let home = TestHome::new();
    // The config's default allows 2 steps; the task asks for 10 but may only tighten.
    home.write_config("budget_policies:\n  default: {max_steps: 2, max_wall_secs: 600}\n");
    let _gw = home.start_gateway();
    let t = home.task(
        "b.yaml",
        "goal: b\nbudget: {max_steps: 10}\nsteps:\n  - run: echo 1\n  - run: echo 2\n  - run: echo 3\n",
    );
    let (code, last) = finish(spawn_run(&home, &t, &["--mode", "always-execute"]));
    assert_eq!(code, Some(5), "{last}");
    assert_eq!(last["status"], "budget_exhausted");
    assert!(
        last["reason"].as_str().unwrap().contains("max_steps"),
        "{last}"
    );
    assert!(
        last["reason"].as_str().unwrap().contains("2 of 2"),
        "{last}"
    );
    assert_eq!(last["budget"]["max_steps"], 2);
    assert_eq!(last["usage"]["steps"], 2);

    let t = home.task(
        "w.yaml",
        "goal: w\nbudget: {max_wall_secs: 1}\nsteps:\n  - run: sleep 1.2\n  - run: echo late\n",
    );
    let (code, last) = finish(spawn_run(&home, &t, &["--mode", "always-execute"]));
    assert_eq!(code, Some(5));
    assert!(
        last["reason"].as_str().unwrap().contains("max_wall_secs"),
        "{last}"
    );
    assert_eq!(last["steps"].as_array().unwrap().len(), 1);
    // A step that never ends is stopped by the wall-clock budget, not waited for.
    let t = home.task(
        "hang.yaml",
        "goal: hang\nbudget: {max_wall_secs: 1}\nsteps:\n  - run: sleep 543219\n",
    );
    let (code, last) = finish(spawn_run(&home, &t, &["--mode", "always-execute"]));
    assert_eq!(code, Some(5), "{last}");
    assert!(
        last["reason"].as_str().unwrap().contains("during step 1"),
        "{last}"
    );
    let alive = std::process::Command::new("pgrep")
        .args(["-f", "sleep 543219"])
        .status()
        .unwrap()
        .success();
    assert!(!alive, "the hung step was killed with the run");
}

#[test]
fn policy_check_says_what_would_happen_and_why() {
    let home = TestHome::new();
    home.write_config("autonomy:\n  deny: [\"git push --force\"]\n  allow: [\"cargo test\"]\n");
    let out = home
        .viber()
        .args(["policy", "check", "git push --force origin", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = stdout_json(&out);
    assert_eq!(v["schema"], "viber.policy/v1");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"]["prefix"], "git push --force");
    assert_eq!(v["rule"]["source"], "config");
    let v = stdout_json(
        &home
            .viber()
            .args([
                "policy",
                "check",
                "cargo test --all",
                "--mode",
                "always-ask",
                "--json",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(v["decision"], "allow");
    let v = stdout_json(
        &home
            .viber()
            .args([
                "policy",
                "check",
                "echo hi",
                "--mode",
                "always-ask",
                "--json",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(v["decision"], "ask");
    let out = home
        .viber()
        .args(["policy", "check", "ls", "--mode", "yolo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_tty_prompt_answers_an_approval() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task("tty.yaml", "goal: tty\nsteps:\n  - run: echo prompted-ok\n");
    let sock = home.file("../prompt-tmux.sock");
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
    };
    let done = home.file("../prompt-done");
    let cmd = format!(
        "env -u VIBER_GATEWAY_URL -u VIBER_GATEWAY_TOKEN {} --home {} run {} --mode always-ask; echo exit=$? > {}",
        common::BIN,
        home.path().display(),
        t.display(),
        done.display()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "p",
        "-x",
        "120",
        "-y",
        "30",
        &cmd,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the prompt", Duration::from_secs(30), || {
        let screen = String::from_utf8(tmux(&["capture-pane", "-p", "-t", "p"]).stdout).unwrap();
        screen.contains("Allow once").then_some(())
    });
    tmux(&["send-keys", "-t", "p", "Enter"]);
    let result = wait_for("the run to end", Duration::from_secs(30), || {
        std::fs::read_to_string(&done).ok()
    });
    let _ = tmux(&["kill-server"]);
    assert_eq!(
        result.trim(),
        "exit=1",
        "allowed, ran, and (with no checks) unverified"
    );
    let list = stdout_json(&home.viber().args(["runs", "--json"]).output().unwrap());
    assert_eq!(list["runs"][0]["steps"][0]["exitStatus"], 0);
}
