//! Verification through the real binary: runs whose accept checks pass or fail, signed
//! reports checked by `viber verify` and by stock `ssh-keygen -Y verify`, every way of
//! tampering with a report, `--rerun` diffs, JUnit/Markdown renderings, screenshots with
//! headless Chromium (when installed), and checks refused before a run starts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::Duration;

use common::{GatewayProc, TestHome, stdout_json, wait_for};
use serde_json::Value;

/// Waits (polling, with a deadline) until a TCP port accepts connections.
const WAIT_PY: &str = r#"import socket, sys, time
port = int(sys.argv[1])
deadline = time.time() + 20
while time.time() < deadline:
    try:
        socket.create_connection(('127.0.0.1', port), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.02)
sys.exit(1)
"#;

fn tasks_dir(home: &TestHome) -> PathBuf {
    let dir = home.file("../tasks");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A site for `python3 -m http.server` and the port-waiting script, in the tasks dir.
fn site(home: &TestHome, body: &str) {
    let dir = tasks_dir(home);
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/index.html"), body).unwrap();
    std::fs::write(dir.join("wait.py"), WAIT_PY).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `viber run TASK --json`: the process output and the final `viber.run/v1` line.
fn run(home: &TestHome, task: &Path) -> (Output, Value) {
    let out = home
        .viber()
        .arg("run")
        .arg(task)
        .arg("--json")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let last: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON from viber run:\n{stdout}\n{stderr}"));
    (out, last)
}

fn report_path(last: &Value) -> PathBuf {
    Path::new(last["workspace"].as_str().unwrap()).join("report.json")
}

fn verify(home: &TestHome, args: &[&str]) -> Output {
    home.viber().arg("verify").args(args).output().unwrap()
}

fn verify_json(home: &TestHome, report: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let out = home
        .viber()
        .arg("verify")
        .arg(report)
        .args(extra)
        .arg("--json")
        .output()
        .unwrap();
    (out.status.code(), stdout_json(&out))
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Starts a gateway whose environment (and so its workers') has `env` set.
fn gateway_with_env(home: &TestHome, env: &[(&str, &str)]) -> GatewayProc {
    let mut cmd = home.std_viber();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .args(["gateway", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut gw = GatewayProc {
        pid,
        child: Some(child),
        url: String::new(),
    };
    gw.url = wait_for("gateway.json", Duration::from_secs(20), || {
        home.gateway_json().filter(|g| g.pid == pid).map(|g| g.url)
    });
    gw
}

#[test]
fn a_run_whose_checks_all_pass_succeeds_and_its_report_verifies_everywhere() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let port = free_port();
    site(
        &home,
        "<html><body><h1>Hello from the site</h1></body></html>\n",
    );
    let sha = viber::evidence::sha256_hex(b"built ok\n");
    let t = home.task(
        "pass.yaml",
        &format!(
            r#"goal: build and serve
mode: always-execute
steps:
  - name: serve
    run: python3 -m http.server {port} --bind 127.0.0.1 --directory site
    background: true
  - name: wait
    run: python3 wait.py {port}
  - name: build
    run: printf 'built ok\n' > out.txt && echo build-finished
accept:
  - claim: the build output is right
    command: cat out.txt && echo to-stderr >&2
    stdout_contains: built ok
    stderr_regex: 'to-std(err|out)'
  - claim: the file is written
    file: out.txt
    sha256: {sha}
    contains: built
  - claim: the build step said it finished
    terminal: build
    contains: build-finished
  - claim: the page answers
    http: http://127.0.0.1:{port}/
    expect_status: 200
    body_contains: Hello from the site
"#
        ),
    );
    let (out, last) = run(&home, &t);
    assert_eq!(out.status.code(), Some(0), "{last}\n{}", text(&out).1);
    assert_eq!(last["status"], "succeeded");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("all 4 claims proven")
    );
    let report = report_path(&last);
    let ws = report.parent().unwrap();

    // The evidence a person would look at is on disk.
    let head = std::fs::read_to_string(ws.join("evidence/claims/4/response-head.txt")).unwrap();
    assert!(head.starts_with("HTTP/1."), "{head}");
    let body = std::fs::read_to_string(ws.join("evidence/claims/4/response-body")).unwrap();
    assert!(body.contains("Hello from the site"));
    let stdout = std::fs::read_to_string(ws.join("evidence/claims/1/stdout.txt")).unwrap();
    assert_eq!(stdout, "built ok\n");
    assert!(
        std::fs::read_to_string(ws.join("evidence/claims/3/terminal.log"))
            .unwrap()
            .contains("build-finished")
    );

    // The report: an in-toto statement whose subjects are the evidence files.
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(r["schema"], "viber.report/v1");
    let subjects = r["subject"].as_array().unwrap();
    assert!(
        subjects
            .iter()
            .any(|s| s["name"] == "evidence/claims/1/stdout.txt")
    );
    assert!(
        subjects
            .iter()
            .any(|s| s["name"] == "evidence/terminal/1.log")
    );
    let claims = r["predicate"]["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 4);
    assert!(claims.iter().all(|c| c["verdict"] == "proven"));
    assert!(
        claims[3]["reproduce"]
            .as_str()
            .unwrap()
            .starts_with("curl ")
    );

    // viber verify, offline, with this home's gateway key.
    let out = verify(&home, &[report.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("signature  ok"), "{stdout}");
    let (code, v) = verify_json(&home, &report, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(v["schema"], "viber.verify/v1");
    assert_eq!(v["signature"]["ok"], true);
    assert_eq!(v["evidenceFiles"], v["evidenceOk"]);
    assert!(
        v["claims"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true)
    );
    // The run id works as well as the path.
    let run_id = last["runId"].as_str().unwrap();
    assert_eq!(verify(&home, &[run_id]).status.code(), Some(0));

    // The allowed_signers line, from `viber report` and from `viber status --json`.
    let out = home
        .viber()
        .args(["report", "--allowed-signers"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = text(&out).0.trim().to_string();
    assert!(
        line.contains("namespaces=\"viber-report\" ssh-ed25519 "),
        "{line}"
    );
    let status = stdout_json(&home.viber().args(["status", "--json"]).output().unwrap());
    assert_eq!(status["gateway"]["signing"]["allowedSigners"], line);

    // Stock OpenSSH accepts the signature, and refuses it for a changed report.
    if which("ssh-keygen") {
        let signers = home.file("../allowed_signers");
        std::fs::write(&signers, format!("{line}\n")).unwrap();
        let principal = line.split_whitespace().next().unwrap();
        let keygen = |input: &Path| {
            StdCommand::new("ssh-keygen")
                .args(["-Y", "verify", "-f"])
                .arg(&signers)
                .args(["-I", principal, "-n", "viber-report", "-s"])
                .arg(ws.join("report.json.sig"))
                .stdin(std::fs::File::open(input).unwrap())
                .output()
                .unwrap()
        };
        let out = keygen(&report);
        assert!(out.status.success(), "{:?}", text(&out));
        let changed = home.file("../changed.json");
        let mut bytes = std::fs::read(&report).unwrap();
        bytes.push(b' ');
        std::fs::write(&changed, bytes).unwrap();
        assert!(!keygen(&changed).status.success());
        // And `viber verify --allowed-signers FILE` takes the same file.
        let out = verify(
            &home,
            &[
                report.to_str().unwrap(),
                "--allowed-signers",
                signers.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    } else {
        eprintln!("ssh-keygen is not installed: skipping the stock OpenSSH cross-check");
    }

    // JUnit for CI: parses, one testcase per claim, no failures.
    let out = home
        .viber()
        .args(["report", run_id, "--format", "junit"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let xml = text(&out).0;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 4);
    assert!(
        !doc.descendants()
            .any(|n| n.has_tag_name("failure") || n.has_tag_name("error"))
    );
    // Markdown for people, and --json for jq.
    let md = text(&home.viber().args(["report", run_id]).output().unwrap()).0;
    assert!(
        md.contains("## Claims") && md.contains("**proven**"),
        "{md}"
    );
    assert!(md.contains("Signature:** valid"), "{md}");
    let j = stdout_json(
        &home
            .viber()
            .args(["report", run_id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(j["predicate"]["runId"], run_id);
    // --open writes an HTML page next to the report and prints its path.
    let out = home
        .viber()
        .args(["report", run_id, "--open"])
        .output()
        .unwrap();
    let html = PathBuf::from(text(&out).0.trim());
    assert!(html.starts_with(ws) && html.is_file(), "{html:?}");
    assert!(ws.join("report.md").is_file());
}

#[test]
fn a_failing_check_fails_the_run_and_verify_with_the_evidence() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let closed = free_port();
    let t = home.task(
        "fail.yaml",
        &format!(
            r#"goal: fail
steps:
  - run: echo working
accept:
  - claim: the command succeeds
    command: echo out; exit 4
  - claim: the server is up
    http: http://127.0.0.1:{closed}/
  - claim: true is true
    command: 'true'
"#
        ),
    );
    let (out, last) = run(&home, &t);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(last["status"], "failed");
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.contains("1 of 3 claims proven"), "{reason}");
    assert!(reason.contains("exited with status 4"), "{reason}");
    let report = report_path(&last);

    let (code, v) = verify_json(&home, &report, &[]);
    assert_eq!(code, Some(1), "the report is intact, the work is not: {v}");
    assert_eq!(v["signature"]["ok"], true);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    let verdicts: Vec<&str> = v["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["failed", "failed", "proven"]);
    // The unreachable URL: the connection error is the evidence.
    let observed: Value = serde_json::from_slice(
        &std::fs::read(
            report
                .parent()
                .unwrap()
                .join("evidence/claims/2/observed.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let err = observed["error"].as_str().unwrap().to_lowercase();
    assert!(err.contains("refused"), "{err}");
    assert!(
        v["claims"][1]["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused")
    );

    // JUnit: two failures with evidence excerpts, one passing case.
    let out = home
        .viber()
        .args([
            "report",
            last["runId"].as_str().unwrap(),
            "--format",
            "junit",
        ])
        .arg("-o")
        .arg(home.file("../junit.xml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let xml = std::fs::read_to_string(home.file("../junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("tests"), Some("3"));
    assert_eq!(suite.attribute("failures"), Some("2"));
    let failures: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(failures.len(), 2);
    let first = failures[0].text().unwrap_or("");
    assert!(
        first.contains("exited with status 4") && first.contains("stdout.txt"),
        "{first}"
    );
}

/// A run with one proven and one failed claim, for tampering with.
fn tamper_fixture(home: &TestHome) -> PathBuf {
    let t = home.task(
        "tamper.yaml",
        r#"goal: tamper
steps:
  - run: echo hi > note.txt
accept:
  - claim: says hi
    command: cat note.txt
    stdout_contains: hi
  - claim: the missing file exists
    file: missing.txt
"#,
    );
    let (out, last) = run(home, &t);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(last["status"], "failed");
    report_path(&last)
}

#[test]
fn every_kind_of_tampering_exits_3_naming_what_does_not_match() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let report = tamper_fixture(&home);
    let ws = report.parent().unwrap().to_path_buf();
    assert_eq!(
        verify(&home, &[report.to_str().unwrap()]).status.code(),
        Some(1)
    );

    let mut n = 0;
    let mut case = |name: &str, tamper: &dyn Fn(&Path), needles: &[&str]| {
        n += 1;
        let dir = home.file(&format!("../cases/{n}-{name}"));
        copy_dir(&ws, &dir);
        tamper(&dir);
        let out = verify(&home, &[dir.join("report.json").to_str().unwrap()]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{name}:\n{stdout}\n{stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle) && stdout.contains(needle),
                "{name}: {needle:?} not in\n{stdout}\n{stderr}"
            );
        }
    };
    let flip = |dir: &Path| {
        let p = dir.join("report.json");
        let mut r: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        r["predicate"]["claims"][1]["verdict"] = "proven".into();
        std::fs::write(&p, serde_json::to_vec_pretty(&r).unwrap()).unwrap();
    };
    case(
        "verdict-flipped",
        &flip,
        &[
            "signature does not match",
            "the report says proven but its evidence shows failed",
        ],
    );
    case(
        "evidence-changed",
        &|d: &Path| std::fs::write(d.join("evidence/claims/1/stdout.txt"), "bye\n").unwrap(),
        &["evidence evidence/claims/1/stdout.txt was changed"],
    );
    case(
        "evidence-deleted",
        &|d: &Path| std::fs::remove_file(d.join("evidence/terminal/1.log")).unwrap(),
        &["evidence evidence/terminal/1.log is missing"],
    );
    case(
        "signature-truncated",
        &|d: &Path| {
            let p = d.join("report.json.sig");
            let s = std::fs::read(&p).unwrap();
            std::fs::write(&p, &s[..s.len() / 2]).unwrap();
        },
        &["not a valid SSH signature"],
    );
    case(
        "signature-missing",
        &|d: &Path| std::fs::remove_file(d.join("report.json.sig")).unwrap(),
        &["report.json.sig is missing"],
    );
    if which("ssh-keygen") {
        let other = home.file("../other_ed25519");
        let st = StdCommand::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "intruder", "-f"])
            .arg(&other)
            .status()
            .unwrap();
        assert!(st.success());
        let sign_with = |key: PathBuf, ns: &'static str| {
            move |d: &Path| {
                std::fs::remove_file(d.join("report.json.sig")).unwrap();
                let out = StdCommand::new("ssh-keygen")
                    .args(["-Y", "sign", "-f"])
                    .arg(&key)
                    .args(["-n", ns])
                    .arg(d.join("report.json"))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{:?}", text(&out));
            }
        };
        case(
            "signed-by-another-key",
            &sign_with(other.clone(), "viber-report"),
            &["which is not an allowed signer"],
        );
        case(
            "signed-for-another-namespace",
            &sign_with(home.file("gateway/signing_ed25519"), "file"),
            &["namespace \"file\""],
        );
        // Even a validly signed report is refused when its verdict does not follow from
        // its evidence (a lying worker, a stolen key): verdicts are re-derived.
        case(
            "verdict-flipped-and-re-signed",
            &|d: &Path| {
                flip(d);
                sign_with(home.file("gateway/signing_ed25519"), "viber-report")(d);
            },
            &["the report says proven but its evidence shows failed"],
        );
        // The intruder's report does verify against the intruder's own allowed_signers:
        // --allowed-signers decides whom to trust.
        let dir = home.file("../cases/intruder-trusted");
        copy_dir(&ws, &dir);
        sign_with(other.clone(), "viber-report")(&dir);
        let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
        let signers = home.file("../intruder_signers");
        std::fs::write(&signers, format!("intruder@x {pubkey}")).unwrap();
        let (code, v) = verify_json(
            &home,
            &dir.join("report.json"),
            &["--allowed-signers", signers.to_str().unwrap()],
        );
        assert_eq!(code, Some(1), "{v}");
        assert_eq!(v["signature"]["principal"], "intruder@x");
    }

    // A report whose run's workspace is gone: the copied report names the missing
    // evidence, and the original path and `viber report` say the workspace is gone.
    let elsewhere = home.file("../copied");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(&report, elsewhere.join("report.json")).unwrap();
    std::fs::copy(
        ws.join("report.json.sig"),
        elsewhere.join("report.json.sig"),
    )
    .unwrap();
    std::fs::remove_dir_all(&ws).unwrap();
    let out = verify(&home, &[elsewhere.join("report.json").to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr.contains("is missing"), "{stdout}\n{stderr}");
    let out = verify(&home, &[report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).1.contains("workspace is gone"),
        "{:?}",
        text(&out)
    );
    let run_id = ws.file_name().unwrap().to_str().unwrap();
    let out = home.viber().args(["report", run_id]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).1.contains("workspace is gone"),
        "{:?}",
        text(&out)
    );
    // A run id this home never had is a typo, not a tampered report.
    let out = verify(&home, &["no-such-run"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("neither a report file nor a run"));
}

#[test]
fn rerun_after_a_file_changed_shows_a_diff() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    std::fs::write(tasks_dir(&home).join("data.txt"), "line one\nv1\n").unwrap();
    let t = home.task(
        "rerun.yaml",
        "goal: data\nsteps:\n  - run: cat data.txt\naccept:\n  - claim: data is v1\n    file: data.txt\n    contains: v1\n",
    );
    let (out, last) = run(&home, &t);
    assert_eq!(out.status.code(), Some(0), "{last}");
    let report = report_path(&last);
    let r = report.to_str().unwrap();
    // The same file again: rerun agrees, nothing changed.
    let out = verify(&home, &[r, "--rerun"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("evidence unchanged"));

    std::fs::write(tasks_dir(&home).join("data.txt"), "line one\nv2\n").unwrap();
    // The recorded report is still intact...
    assert_eq!(verify(&home, &[r]).status.code(), Some(0));
    // ...but on rerun the claim no longer holds, and the diff shows why.
    let out = verify(&home, &[r, "--rerun"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("proven -> failed"), "{stdout}");
    assert!(stdout.contains("-v1") && stdout.contains("+v2"), "{stdout}");
    assert!(stdout.contains("--- recorded/claim-1"), "{stdout}");
    let (code, v) = verify_json(&home, &report, &["--rerun"]);
    assert_eq!(code, Some(1));
    let rerun = &v["claims"][0]["rerun"];
    assert_eq!(rerun["verdict"], "failed");
    assert_eq!(rerun["changed"], true);
    assert!(rerun["diff"].as_str().unwrap().contains("+v2"));
}

#[test]
fn bad_accept_checks_exit_2_before_anything_runs() {
    let home = TestHome::new();
    home.write_config("gateway:\n  bind: 127.0.0.1:0\n");
    let cases = [
        (
            "unknown check type",
            "  - claim: c\n    ping: example.com\n",
            "ping",
        ),
        ("no check", "  - claim: c\n", "no check"),
        (
            "two check types",
            "  - claim: c\n    file: x\n    http: http://127.0.0.1:1/\n",
            "mixes check types",
        ),
        (
            "a field of another kind",
            "  - claim: c\n    file: x\n    expect_status: 200\n",
            "`expect_status` does not apply to a file check",
        ),
        (
            "a regex that does not compile",
            "  - claim: c\n    command: 'true'\n    stdout_regex: '(unclosed'\n",
            "stdout_regex does not compile",
        ),
        (
            "a URL that is not http",
            "  - claim: c\n    http: ftp://example.com/\n",
            "http",
        ),
    ];
    for (i, (name, accept, needle)) in cases.iter().enumerate() {
        let t = home.task(
            &format!("bad{i}.yaml"),
            &format!("goal: x\nsteps:\n  - run: touch ran-{i}\naccept:\n{accept}"),
        );
        let out = home
            .viber()
            .arg("run")
            .arg(&t)
            .arg("--json")
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {stdout}\n{stderr}");
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert_eq!(stdout_json(&out)["code"], "BAD_INPUT", "{name}");
        assert!(
            !tasks_dir(&home).join(format!("ran-{i}")).exists(),
            "{name}"
        );
    }
    assert!(home.gateway_json().is_none(), "no gateway was started");
    assert!(!home.file("workspace").exists(), "no run was started");
}

#[test]
fn a_run_whose_step_failed_still_gets_a_signed_report() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "stepfail.yaml",
        "goal: x\nsteps:\n  - run: exit 3\naccept:\n  - claim: never checked\n    command: 'true'\n",
    );
    let (out, last) = run(&home, &t);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(last["status"], "failed");
    let (code, v) = verify_json(&home, &report_path(&last), &[]);
    assert_eq!(code, Some(1), "intact but unproven: {v}");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["claims"][0]["verdict"], "unproven");
    assert!(
        v["claims"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not checked")
    );
}

#[test]
fn without_a_browser_a_screenshot_claim_is_unproven() {
    let home = TestHome::new();
    let _gw = gateway_with_env(&home, &[("VIBER_CHROMIUM", "none")]);
    let port = free_port();
    site(&home, "<h1>Hi</h1>\n");
    let t = home.task(
        "noshot.yaml",
        &format!(
            r#"goal: x
steps:
  - run: python3 -m http.server {port} --bind 127.0.0.1 --directory site
    background: true
  - run: python3 wait.py {port}
accept:
  - claim: the page looks right
    http: http://127.0.0.1:{port}/
    screenshot: true
"#
        ),
    );
    let (out, last) = run(&home, &t);
    assert_eq!(out.status.code(), Some(1), "{last}");
    assert_eq!(last["status"], "unverified");
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.contains("no screenshot"), "{reason}");
    let (code, _) = verify_json(&home, &report_path(&last), &[]);
    assert_eq!(code, Some(1));
}

#[test]
fn a_screenshot_with_chromium_has_the_window_size() {
    let chromium =
        Path::new("/usr/bin/chromium").is_file() || which("chromium") || which("chromium-browser");
    if !chromium {
        eprintln!("Chromium is not installed: skipping the screenshot test");
        return;
    }
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let port = free_port();
    site(
        &home,
        "<html><body style='background:#3366cc'><h1>Screenshot me</h1></body></html>\n",
    );
    let t = home.task(
        "shot.yaml",
        &format!(
            r#"goal: x
steps:
  - run: python3 -m http.server {port} --bind 127.0.0.1 --directory site
    background: true
  - run: python3 wait.py {port}
accept:
  - claim: the page renders
    http: http://127.0.0.1:{port}/
    body_contains: Screenshot me
    screenshot: true
"#
        ),
    );
    let (out, last) = run(&home, &t);
    assert_eq!(out.status.code(), Some(0), "{last}\n{}", text(&out).1);
    let report = report_path(&last);
    let png = std::fs::read(
        report
            .parent()
            .unwrap()
            .join("evidence/claims/1/screenshot.png"),
    )
    .unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    assert_eq!((frame.width, frame.height), (1280, 720));
    assert!(
        buf.iter().any(|&b| b != 0),
        "the page rendered, not a blank frame"
    );
    let (code, _) = verify_json(&home, &report, &[]);
    assert_eq!(code, Some(0));
    let md = text(
        &home
            .viber()
            .args(["report", last["runId"].as_str().unwrap()])
            .output()
            .unwrap(),
    )
    .0;
    assert!(md.contains("![screenshot of claim 1]"), "{md}");
}

#[test]
fn only_the_runs_own_worker_can_have_its_report_signed() {
    let home = TestHome::new();
    let gw = home.start_gateway();
    // An operator cannot: the method needs node.exec.
    let out = home
        .viber()
        .args([
            "call",
            "node.run.sign",
            "--params",
            r#"{"runId":"x"}"#,
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout_json(&out)["details"]["missingScope"], "node.exec");
    // A node that did not claim the run cannot either, while it runs or after it ended.
    let t = home.task(
        "wait.yaml",
        "goal: x\nsteps:\n  - run: while [ ! -f go ]; do sleep 0.01; done\n",
    );
    let out = home
        .viber()
        .arg("run")
        .arg(&t)
        .arg("--detach")
        .output()
        .unwrap();
    let run_id = text(&out).0.trim().to_string();
    home.wait_run(&run_id, "the step to run", |v| {
        v["steps"][0]["state"] == "running"
    });
    let token = home.token();
    let sign = |url: String, token: String, run_id: String| {
        common::raw::rt().block_on(async move {
            use viber::client::{Client, ConnectOptions};
            let key = viber::identity::DeviceKey::generate("other-node");
            let mut opts = ConnectOptions::operator(url);
            opts.token = Some(token);
            opts.role = viber::protocol::Role::Node;
            opts.scopes = vec![viber::protocol::Scope::NodeExec];
            opts.mode = viber::protocol::ClientMode::Node;
            let client = Client::connect(&key, &opts).await.unwrap();
            client
                .request("node.run.sign", serde_json::json!({ "runId": run_id }))
                .await
                .unwrap_err()
                .to_string()
        })
    };
    let e = sign(gw.url.clone(), token.clone(), run_id.clone());
    assert!(
        e.contains("FORBIDDEN") || e.contains("only the worker"),
        "{e}"
    );
    std::fs::write(tasks_dir(&home).join("go"), "").unwrap();
    home.wait_run(&run_id, "the run to end", |v| v["status"] == "unverified");
    let e = sign(gw.url.clone(), token, run_id);
    assert!(e.contains("already ended"), "{e}");
}

#[test]
fn rerun_never_runs_the_checks_of_an_untrusted_report() {
    let home = TestHome::new();
    let _gw = home.start_gateway();
    let t = home.task(
        "count.yaml",
        "goal: count\nmode: always-execute\nsteps:\n  - run: echo hi\naccept:\n  - claim: counted\n    command: echo x >> counter\n",
    );
    let (out, last) = run(&home, &t);
    assert_eq!(out.status.code(), Some(0), "{last}");
    let counter = t.parent().unwrap().join("counter");
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "x\n");
    // Someone edits the report: its checks must not run on this machine.
    let report = report_path(&last);
    let text = std::fs::read_to_string(&report).unwrap();
    std::fs::write(
        &report,
        text.replace("echo x >> counter", "echo y >> counter"),
    )
    .unwrap();
    let (code, v) = verify_json(&home, &report, &["--rerun"]);
    assert_eq!(code, Some(3), "{v}");
    assert!(v.to_string().contains("--rerun skipped"), "{v}");
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap(),
        "x\n",
        "nothing ran again"
    );
}
