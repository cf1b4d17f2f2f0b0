//! The LLM planner through the real binary, against a local OpenAI-compatible server that
//! this test starts and scripts: tool calls doing real work in tmux, usage and cost, a 429
//! and a 5xx retried, a 401 ending the run `failed` without the key leaking anywhere,
//! malformed tool calls recovered from, a token budget, chat feedback reaching the model,
//! and (only with VIBER_TEST_LLM_BASE_URL set) a real model end to end.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{GatewayProc, TestHome, stdout_json, wait_for};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// A scripted OpenAI-compatible chat-completions server (HTTP/1.1, one request per
// connection, `Connection: close`).
// ---------------------------------------------------------------------------------------

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn messages(&self) -> &Vec<Value> {
        self.body["messages"].as_array().expect("messages")
    }

    /// The tool result for a call id, if this request carries it.
    fn tool_result(&self, id: &str) -> Option<String> {
        self.messages()
            .iter()
            .find(|m| m["role"] == "tool" && m["tool_call_id"] == id)
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
    }

    fn has_user_message_containing(&self, needle: &str) -> bool {
        self.messages()
            .iter()
            .any(|m| m["role"] == "user" && m["content"].as_str().unwrap_or("").contains(needle))
    }
}

/// Opens when the test says so: a reply waits on it before it is sent.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            let (o, timeout) = self
                .0
                .1
                .wait_timeout(open, Duration::from_secs(60))
                .unwrap();
            open = o;
            if timeout.timed_out() {
                break;
            }
        }
    }
}

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    hold: Option<Gate>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            hold: None,
        }
    }

    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    fn held(mut self, gate: &Gate) -> Self {
        self.hold = Some(gate.clone());
        self
    }
}

/// A completion whose message carries these tool calls: (id, name, raw arguments).
fn calls(list: &[(&str, &str, &str)], prompt: u64, completion: u64) -> Reply {
    let tool_calls: Vec<Value> = list
        .iter()
        .map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
        })
        .collect();
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": null, "tool_calls": tool_calls}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion},
        }),
    )
}

fn call(id: &str, name: &str, args: Value, prompt: u64, completion: u64) -> Reply {
    calls(&[(id, name, &args.to_string())], prompt, completion)
}

fn text(content: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        }),
    )
}

fn finish(id: &str) -> Reply {
    call(
        id,
        "finish",
        json!({"summary": "done", "claims": ["the work is done"]}),
        10,
        5,
    )
}

type Responder = Box<dyn FnMut(usize, &Recorded) -> Reply + Send>;

struct MockLlm {
    base_url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl MockLlm {
    /// Replays `replies` in order; past the end it answers 400 so a run cannot loop.
    fn scripted(replies: Vec<Reply>) -> Self {
        let mut queue: VecDeque<Reply> = replies.into();
        Self::start(Box::new(move |_, _| {
            queue.pop_front().unwrap_or_else(|| {
                Reply::json(
                    400,
                    json!({"error": {"message": "the test script has no more responses"}}),
                )
            })
        }))
    }

    fn start(responder: Responder) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let responder = Arc::new(Mutex::new(responder));
        let recs = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let recs = recs.clone();
                let responder = responder.clone();
                std::thread::spawn(move || serve(stream, recs, responder));
            }
        });
        MockLlm {
            base_url: format!("http://{addr}/v1"),
            requests,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, recs: Arc<Mutex<Vec<Recorded>>>, responder: Arc<Mutex<Responder>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let rec = Recorded {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let reply = {
        let mut list = recs.lock().unwrap();
        list.push(rec.clone());
        let n = list.len();
        drop(list);
        (responder.lock().unwrap())(n, &rec)
    };
    if let Some(gate) = &reply.hold {
        gate.wait();
    }
    let mut out = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

const KEY_VAR: &str = "VIBER_TEST_KEY";

/// A unique, recognisable API key for one test.
fn secret(tag: &str) -> String {
    format!("sk-test-SECRET-{tag}-{}", uuid_ish())
}

fn uuid_ish() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

fn llm_config(server: &MockLlm, extra: &str) -> String {
    format!(
        "identity:\n  name: testbox-viber\n  persona: a careful site reliability engineer\nllm:\n  base_url: {}\n  model: test-model\n  api_key_env: {KEY_VAR}\n  price_per_mtok_in: 1.0\n  price_per_mtok_out: 2.0\n  timeout_secs: 30\n{extra}",
        server.base_url
    )
}

/// A gateway whose environment (and so its workers') holds the API key.
fn gateway_with_key(home: &TestHome, key: &str) -> GatewayProc {
    let child = home
        .std_viber()
        .env(KEY_VAR, key)
        .args(["gateway", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut gw = GatewayProc {
        pid: child.id(),
        child: Some(child),
        url: String::new(),
    };
    gw.url = wait_for("gateway.json", Duration::from_secs(20), || {
        home.gateway_json()
            .filter(|g| g.pid == gw.pid)
            .map(|g| g.url)
    });
    gw
}

fn workdir(home: &TestHome) -> PathBuf {
    let d = home.file("../work");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `viber run --goal GOAL --json` from `dir`, with no key in its environment.
fn run_goal(home: &TestHome, dir: &Path, goal: &str) -> Output {
    let out = home
        .viber()
        .current_dir(dir)
        .env_remove(KEY_VAR)
        .args(["run", "--goal", goal, "--json", "--no-autostart"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    if lines(&out)
        .last()
        .is_none_or(|l| l["schema"] != "viber.run/v1")
    {
        // Say what happened before the assertion that follows fails.
        eprintln!("run stderr: {}", String::from_utf8_lossy(&out.stderr));
        let runs = std::fs::read_dir(home.file("workspace"))
            .into_iter()
            .flatten();
        for e in runs.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            eprintln!(
                "worker.log of {id}: {}",
                std::fs::read_to_string(e.path().join("worker.log")).unwrap_or_default()
            );
            eprintln!(
                "session log of {id}: {}",
                std::fs::read_to_string(home.file(&format!("agents/default/sessions/{id}.jsonl")))
                    .unwrap_or_default()
            );
        }
    }
    out
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn last(out: &Output) -> Value {
    lines(out).pop().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn session_events(home: &TestHome, run_id: &str) -> Vec<Value> {
    std::fs::read_to_string(home.file(&format!("agents/default/sessions/{run_id}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `llm` summaries the worker wrote as `planner` events.
fn planner_entries(home: &TestHome, run_id: &str) -> Vec<Value> {
    session_events(home, run_id)
        .into_iter()
        .filter(|e| e["type"] == "planner" && e["payload"]["llm"].is_object())
        .map(|e| e["payload"]["llm"].clone())
        .collect()
}

/// The key is in no file under VIBER_HOME and in none of the given outputs.
fn assert_secret_kept(home: &TestHome, key: &str, outputs: &[&[u8]]) {
    fn walk(dir: &Path, key: &[u8], hits: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                walk(&p, key, hits);
            } else if ft.is_file()
                && let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(key.len()).any(|w| w == key)
            {
                hits.push(p);
            }
        }
    }
    let mut hits = Vec::new();
    walk(&home.path(), key.as_bytes(), &mut hits);
    assert!(hits.is_empty(), "the API key was written to {hits:?}");
    for (i, o) in outputs.iter().enumerate() {
        assert!(
            !o.windows(key.len()).any(|w| w == key.as_bytes()),
            "the API key appears in output #{i}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn the_model_does_real_work_in_tmux_and_usage_is_counted() {
    let server = MockLlm::scripted(vec![
        call(
            "call_1",
            "shell",
            json!({"command": "echo made-by-llm > made.txt && echo done-shell"}),
            100,
            20,
        ),
        // Two calls in one response: queued, run one per step.
        calls(
            &[
                ("call_2", "read_file", r#"{"path":"made.txt"}"#),
                (
                    "call_3",
                    "write_file",
                    r#"{"path":"notes/out.txt","content":"hello from write_file\n"}"#,
                ),
            ],
            200,
            30,
        ),
        call(
            "call_4",
            "finish",
            json!({"summary": "made the files", "claims": ["made.txt exists"]}),
            300,
            10,
        ),
    ]);
    let home = TestHome::new();
    home.write_config(&llm_config(&server, ""));
    std::fs::create_dir_all(home.file("memory")).unwrap();
    std::fs::write(home.file("memory/rules.md"), "Never touch /etc.\n").unwrap();
    std::fs::write(home.file("memory/habits.md"), "Prefer short commands.\n").unwrap();
    let key = secret("work");
    let mut gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);

    let out = run_goal(&home, &dir, "make made.txt and notes/out.txt");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "no checks: unverified. {err}");
    let run = last(&out);
    assert_eq!(run["status"], "unverified", "{run}");
    let run_id = run["runId"].as_str().unwrap().to_string();

    // Real work happened, in tmux, in the workdir.
    assert_eq!(
        std::fs::read_to_string(dir.join("made.txt")).unwrap(),
        "made-by-llm\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes/out.txt")).unwrap(),
        "hello from write_file\n"
    );
    let steps = run["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["command"]
            .as_str()
            .unwrap()
            .contains("echo made-by-llm > made.txt")
            && s["exitStatus"] == 0),
        "{run}"
    );

    // The requests: OpenAI-compatible, with tools, the key as a bearer token, the context.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "one request per decision");
    let first = &reqs[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert_eq!(first.body["model"], "test-model");
    assert_eq!(first.body["tool_choice"], "auto");
    let tools: Vec<&str> = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["shell", "write_file", "read_file", "finish"]);
    let system = first.messages()[0]["content"].as_str().unwrap();
    assert_eq!(first.messages()[0]["role"], "system");
    for needle in [
        "make made.txt and notes/out.txt",
        "testbox-viber",
        "a careful site reliability engineer",
        "Never touch /etc.",
        "Prefer short commands.",
        "agent-decides",
        "verifier",
    ] {
        assert!(
            system.contains(needle),
            "system prompt lacks {needle:?}:\n{system}"
        );
    }
    // Each call's result comes back as a tool message, with the terminal output.
    let shell_result = reqs[1].tool_result("call_1").expect("shell result");
    assert!(
        shell_result.contains("exit status 0") && shell_result.contains("done-shell"),
        "{shell_result}"
    );
    let read_result = reqs[2].tool_result("call_2").expect("read_file result");
    assert!(read_result.contains("made-by-llm"), "{read_result}");
    let write_result = reqs[2].tool_result("call_3").expect("write_file result");
    assert!(write_result.contains("wrote"), "{write_result}");
    // The assistant's calls are echoed back before their results.
    let echoed = reqs[2]
        .messages()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count();
    assert_eq!(echoed, 2);

    // Usage and cost from the API's figures: 600 in, 60 out at $1 / $2 per Mtok.
    let status = stdout_json(
        &home
            .viber()
            .args(["status", &run_id, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["usage"]["tokens"], 660, "{}", status["usage"]);
    let cost = status["usage"]["costUsd"].as_f64().unwrap();
    assert!((cost - 0.00072).abs() < 1e-9, "{cost}");
    assert_eq!(status["planner"], "llm");

    // The session log has a summary per request, without contents or headers.
    let entries = planner_entries(&home, &run_id);
    let responses: Vec<&Value> = entries.iter().filter(|e| e["httpStatus"] == 200).collect();
    assert_eq!(responses.len(), 3, "{entries:?}");
    assert_eq!(responses[0]["model"], "test-model");
    assert_eq!(responses[0]["usage"]["promptTokens"], 100);
    assert_eq!(
        responses[1]["toolCalls"],
        json!(["read_file", "write_file"])
    );
    assert_eq!(responses[2]["finishReason"], "tool_calls");
    let session =
        std::fs::read_to_string(home.file(&format!("agents/default/sessions/{run_id}.jsonl")))
            .unwrap();
    assert!(
        !session.contains("Never touch /etc."),
        "no message contents"
    );

    let (_, gw_err) = gw.stop();
    assert_secret_kept(&home, &key, &[&out.stdout, &out.stderr, gw_err.as_bytes()]);
}

#[test]
fn a_429_and_a_5xx_are_retried_and_the_log_shows_it() {
    let server = MockLlm::scripted(vec![
        Reply::json(
            429,
            json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
        )
        .header("retry-after", "0"),
        Reply::json(503, json!({"error": {"message": "overloaded"}})),
        call(
            "c1",
            "shell",
            json!({"command": "echo after-retry > retried.txt"}),
            50,
            5,
        ),
        finish("c2"),
    ]);
    let home = TestHome::new();
    home.write_config(&llm_config(&server, ""));
    let key = secret("retry");
    let _gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);
    let out = run_goal(&home, &dir, "survive rate limits");
    let run = last(&out);
    assert_eq!(run["status"], "unverified", "{run}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(dir.join("retried.txt")).unwrap(),
        "after-retry\n"
    );
    assert_eq!(server.requests().len(), 4);
    let run_id = run["runId"].as_str().unwrap();
    let entries = planner_entries(&home, run_id);
    let limited = entries
        .iter()
        .find(|e| e["httpStatus"] == 429)
        .expect("the 429 is logged");
    assert_eq!(limited["attempt"], 1);
    assert_eq!(limited["retry"]["inMs"], 0, "Retry-After: 0 honoured");
    assert!(
        limited["error"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached")
    );
    let failed = entries
        .iter()
        .find(|e| e["httpStatus"] == 503)
        .expect("the 503 is logged");
    assert_eq!(failed["attempt"], 2);
    assert!(failed["retry"]["inMs"].as_u64().unwrap() > 0, "a backoff");
    let ok = entries
        .iter()
        .find(|e| e["httpStatus"] == 200)
        .expect("then success");
    assert_eq!(ok["attempt"], 3);
    assert_eq!(
        ok["request"], limited["request"],
        "the same request, retried"
    );
    assert_secret_kept(&home, &key, &[&out.stdout, &out.stderr]);
}

#[test]
fn a_401_fails_the_run_with_the_providers_message_and_the_key_leaks_nowhere() {
    let key = secret("auth");
    // A provider that echoes the key it refused, as some do.
    let server = MockLlm::scripted(vec![Reply::json(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {key}. You can find your API key in your account settings."), "code": "invalid_api_key"}}),
    )]);
    let home = TestHome::new();
    home.write_config(&llm_config(&server, ""));
    let mut gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);
    let out = run_goal(&home, &dir, "anything");
    assert_eq!(out.status.code(), Some(1));
    let run = last(&out);
    assert_eq!(run["status"], "failed", "{run}");
    let reason = run["reason"].as_str().unwrap();
    assert!(
        reason.contains("401") && reason.contains("Incorrect API key provided"),
        "{reason}"
    );
    assert!(reason.contains("[redacted]"), "{reason}");
    assert_eq!(server.requests().len(), 1, "a 401 is not retried");
    let run_id = run["runId"].as_str().unwrap().to_string();
    // The human view of the same run, and its status, for good measure.
    let human = home.viber().args(["status", &run_id]).output().unwrap();
    let json_status = home
        .viber()
        .args(["status", &run_id, "--json"])
        .output()
        .unwrap();
    let watch = home
        .viber()
        .args(["watch", &run_id, "--json"])
        .output()
        .unwrap();
    let (_, gw_err) = gw.stop();
    assert_secret_kept(
        &home,
        &key,
        &[
            &out.stdout,
            &out.stderr,
            &human.stdout,
            &human.stderr,
            &json_status.stdout,
            &watch.stdout,
            &watch.stderr,
            gw_err.as_bytes(),
        ],
    );
}

#[test]
fn malformed_tool_calls_get_an_error_back_and_the_run_recovers_or_fails_after_three() {
    let server = MockLlm::scripted(vec![
        // Run 1: bad JSON, then an unknown tool, then a valid call: recovers.
        calls(&[("m1", "shell", r#"{"command": "echo oops"#)], 10, 5),
        calls(&[("m2", "launch_rockets", r#"{"count": 3}"#)], 10, 5),
        call(
            "m3",
            "shell",
            json!({"command": "echo recovered > recovered.txt"}),
            10,
            5,
        ),
        finish("m4"),
        // Run 2: three malformed calls in a row end it.
        calls(&[("x1", "shell", "{")], 10, 5),
        calls(&[("x2", "write_file", r#"{"path": "a"}"#)], 10, 5),
        calls(&[("x3", "shell", r#"{"command": 42}"#)], 10, 5),
        // Run 3: text instead of a tool call, twice, after one nudge.
        text("I think we should start by looking around."),
        text("Still thinking."),
    ]);
    let home = TestHome::new();
    home.write_config(&llm_config(&server, ""));
    let key = secret("malformed");
    let _gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);

    let out = run_goal(&home, &dir, "recover from mistakes");
    let run = last(&out);
    assert_eq!(run["status"], "unverified", "{run}");
    assert!(dir.join("recovered.txt").exists());
    let reqs = server.requests();
    let bad_json = reqs[1].tool_result("m1").expect("an error result for m1");
    assert!(bad_json.contains("not valid JSON"), "{bad_json}");
    let unknown = reqs[2].tool_result("m2").expect("an error result for m2");
    assert!(unknown.contains("unknown tool"), "{unknown}");
    assert!(
        run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s["command"].as_str().unwrap().contains("oops")),
        "a malformed call runs nothing"
    );

    let out = run_goal(&home, &dir, "keep failing");
    assert_eq!(out.status.code(), Some(1));
    let run = last(&out);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["reason"]
            .as_str()
            .unwrap()
            .contains("3 malformed tool calls"),
        "{run}"
    );

    let out = run_goal(&home, &dir, "just talk");
    let run = last(&out);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["reason"]
            .as_str()
            .unwrap()
            .contains("without a tool call"),
        "{run}"
    );
    let reqs = server.requests();
    let nudged = &reqs[reqs.len() - 1];
    assert!(
        nudged.has_user_message_containing("Use a tool or call finish"),
        "the model was nudged once"
    );
    assert_secret_kept(&home, &key, &[&out.stdout, &out.stderr]);
}

#[test]
fn a_token_budget_ends_the_run_budget_exhausted() {
    let server = MockLlm::scripted(vec![
        call("b1", "shell", json!({"command": "echo one"}), 400, 200),
        call("b2", "shell", json!({"command": "echo two"}), 400, 200),
        finish("b3"),
    ]);
    let home = TestHome::new();
    home.write_config(&llm_config(
        &server,
        "budget_policies:\n  default:\n    max_tokens: 500\n",
    ));
    let key = secret("budget");
    let _gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);
    let out = run_goal(&home, &dir, "spend tokens");
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = last(&out);
    assert_eq!(run["status"], "budget_exhausted", "{run}");
    assert!(
        run["reason"].as_str().unwrap().contains("max_tokens"),
        "{run}"
    );
    assert!(
        run["steps"].as_array().unwrap().is_empty(),
        "stopped before acting"
    );
    assert_eq!(run["usage"]["tokens"], 600);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_cost_budget_ends_the_run_budget_exhausted_with_the_figures() {
    // 400 tokens in at $1/Mtok + 200 out at $2/Mtok = $0.0008 per answer.
    let server = MockLlm::scripted(vec![
        call("c1", "shell", json!({"command": "echo one"}), 400, 200),
        call("c2", "shell", json!({"command": "echo two"}), 400, 200),
        finish("c3"),
    ]);
    let home = TestHome::new();
    home.write_config(&llm_config(
        &server,
        "budget_policies:\n  default:\n    max_cost_usd: 0.001\n",
    ));
    let key = secret("cost");
    let _gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);
    let out = run_goal(&home, &dir, "spend money");
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = last(&out);
    assert_eq!(run["status"], "budget_exhausted", "{run}");
    let reason = run["reason"].as_str().unwrap();
    assert!(
        reason.contains("max_cost_usd") && reason.contains("$0.0016"),
        "{run}"
    );
    assert_eq!(
        run["steps"].as_array().unwrap().len(),
        1,
        "the first answer was affordable"
    );
    assert_eq!(run["budget"]["max_cost_usd"], 0.001);
}

/// Starts a run whose first model response is held; while it is, runs `viber chat RUN
/// ARGS`, then releases it. The model keeps the run busy with harmless steps until a
/// request carries `needle`, then finishes. Returns the requests and the run's result.
fn steer_while_held(chat_args: &[&str], needle: &'static str) -> (Vec<Recorded>, Value) {
    let gate = Gate::default();
    let held_gate = gate.clone();
    let server = MockLlm::start(Box::new(move |n, req| {
        if n == 1 {
            return call("f1", "shell", json!({"command": "echo first-step"}), 10, 5)
                .held(&held_gate);
        }
        if req.has_user_message_containing(needle) || n > 40 {
            return finish("done");
        }
        call(&format!("w{n}"), "shell", json!({"command": "true"}), 10, 5)
    }));
    let home = TestHome::new();
    home.write_config(&llm_config(&server, ""));
    let key = secret("chat");
    let _gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);
    let run = home
        .std_viber()
        .current_dir(&dir)
        .args(["run", "--goal", "serve it", "--json", "--no-autostart"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first model request", Duration::from_secs(30), || {
        (!server.requests().is_empty()).then_some(())
    });
    let run_id = wait_for("the run to be listed", Duration::from_secs(30), || {
        let v = stdout_json(&home.viber().args(["runs", "--json"]).output().unwrap());
        v["runs"][0]["runId"].as_str().map(str::to_string)
    });
    let chat = home
        .viber()
        .arg("chat")
        .arg(&run_id)
        .args(chat_args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        chat.status.success(),
        "{}",
        String::from_utf8_lossy(&chat.stderr)
    );
    gate.open();
    let out = run.wait_with_output().unwrap();
    let run = last(&out);
    assert_eq!(run["status"], "unverified", "{run}");
    assert_secret_kept(&home, &key, &[&out.stdout, &out.stderr, &chat.stdout]);
    (server.requests(), run)
}

/// Where in a request's messages the first user message containing `needle` is.
fn user_message_at(req: &Recorded, needle: &str) -> usize {
    req.messages()
        .iter()
        .position(|m| m["role"] == "user" && m["content"].as_str().unwrap_or("").contains(needle))
        .unwrap()
}

#[test]
fn chat_feedback_reaches_the_model_before_its_next_decision() {
    let (reqs, _) = steer_while_held(&["use port 9090"], "use port 9090");
    let seen = reqs
        .iter()
        .position(|r| r.has_user_message_containing("use port 9090"))
        .expect("the feedback reached the model");
    assert_eq!(
        seen, 1,
        "it arrived with the request right after the held one"
    );
    // After the result of the step that was running.
    let msgs = reqs[seen].messages();
    let tool_at = msgs.iter().position(|m| m["tool_call_id"] == "f1").unwrap();
    assert!(tool_at < user_message_at(&reqs[seen], "use port 9090"));
}

#[test]
fn a_rescope_replaces_the_goal_and_the_model_re_plans() {
    let (reqs, run) = steer_while_held(
        &["--rescope", "write rescoped.txt instead"],
        "The operator changed the goal",
    );
    let seen = reqs
        .iter()
        .position(|r| r.has_user_message_containing("The operator changed the goal"))
        .expect("the rescope reached the model");
    assert_eq!(seen, 1);
    let req = &reqs[seen];
    let note = &req.messages()[user_message_at(req, "The operator changed the goal")];
    let note = note["content"].as_str().unwrap();
    assert!(
        note.contains("Old goal: serve it")
            && note.contains("New goal: write rescoped.txt instead")
            && note.contains("current state"),
        "{note}"
    );
    let system = req.messages()[0]["content"].as_str().unwrap();
    assert!(
        system.contains("Goal: write rescoped.txt instead") && !system.contains("Goal: serve it"),
        "{system}"
    );
    assert_eq!(run["goal"], "write rescoped.txt instead");
}

/// A real model, end to end. Set VIBER_TEST_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1
/// for Ollama), VIBER_TEST_LLM_MODEL and, if the endpoint needs a key,
/// VIBER_TEST_LLM_API_KEY_ENV (the name of the variable holding it).
#[test]
fn a_real_model_end_to_end_when_configured() {
    let Ok(base_url) = std::env::var("VIBER_TEST_LLM_BASE_URL") else {
        eprintln!(
            "skipped: set VIBER_TEST_LLM_BASE_URL (and VIBER_TEST_LLM_MODEL, VIBER_TEST_LLM_API_KEY_ENV) to run a real model"
        );
        return;
    };
    let model = std::env::var("VIBER_TEST_LLM_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
    let key_line = std::env::var("VIBER_TEST_LLM_API_KEY_ENV")
        .map(|v| format!("  api_key_env: {v}\n"))
        .unwrap_or_default();
    let home = TestHome::new();
    home.write_config(&format!(
        "autonomy:\n  default_mode: always-execute\n  approval_timeout_secs: 5\nbudget_policies:\n  default:\n    max_steps: 12\n    max_wall_secs: 300\n    max_tokens: 200000\nllm:\n  base_url: {base_url}\n  model: {model}\n{key_line}  timeout_secs: 120\n"
    ));
    let _gw = home.start_gateway();
    let dir = workdir(&home);
    let out = home
        .viber()
        .current_dir(&dir)
        .args([
            "run",
            "--goal",
            "Create a file named hello.txt in the working directory whose content is exactly the line: hello from viber. Then check it with cat and call finish.",
            "--json",
            "--no-autostart",
        ])
        .timeout(Duration::from_secs(400))
        .output()
        .unwrap();
    let run = last(&out);
    assert!(
        ["unverified", "succeeded"].contains(&run["status"].as_str().unwrap()),
        "{run}"
    );
    let hello = std::fs::read_to_string(dir.join("hello.txt")).unwrap();
    assert!(hello.contains("hello from viber"), "{hello}");
    assert!(run["usage"]["tokens"].as_u64().unwrap() > 0, "{run}");
}

#[test]
fn a_cancel_does_not_wait_for_the_models_answer() {
    let gate = Gate::default();
    let held_gate = gate.clone();
    let server = MockLlm::start(Box::new(move |_, _| {
        call("h1", "shell", json!({"command": "echo never"}), 10, 5).held(&held_gate)
    }));
    let home = TestHome::new();
    home.write_config(&llm_config(&server, ""));
    let key = secret("cancel");
    let _gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);
    let run = home
        .std_viber()
        .current_dir(&dir)
        .args(["run", "--goal", "think forever", "--json", "--no-autostart"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the model request", Duration::from_secs(30), || {
        (!server.requests().is_empty()).then_some(())
    });
    let run_id = wait_for("the run to be listed", Duration::from_secs(30), || {
        let v = stdout_json(&home.viber().args(["runs", "--json"]).output().unwrap());
        v["runs"][0]["runId"].as_str().map(str::to_string)
    });
    home.viber()
        .args(["chat", &run_id, "--cancel"])
        .assert()
        .success();
    // The reply is still held: the run must end without it.
    let out = run.wait_with_output().unwrap();
    gate.open();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = last(&out);
    assert_eq!(run["status"], "cancelled");
    assert!(run["steps"].as_array().unwrap().is_empty());
}

#[test]
fn steps_and_checks_never_see_the_api_key() {
    let server = MockLlm::scripted(vec![
        call("e1", "shell", json!({"command": "env | sort"}), 10, 5),
        finish("e2"),
    ]);
    let home = TestHome::new();
    home.write_config(&llm_config(&server, ""));
    let key = secret("env");
    let _gw = gateway_with_key(&home, &key);
    let dir = workdir(&home);
    let out = run_goal(&home, &dir, "show the environment");
    let run = last(&out);
    assert_eq!(run["steps"][0]["exitStatus"], 0, "{run}");
    let log = std::fs::read_to_string(
        Path::new(run["workspace"].as_str().unwrap()).join("evidence/terminal/1.log"),
    )
    .unwrap();
    assert!(
        log.contains("PATH="),
        "the step printed its environment: {log}"
    );
    assert!(
        !log.contains(KEY_VAR),
        "the variable itself is gone from panes: {log}"
    );
    assert_secret_kept(&home, &key, &[&out.stdout, &out.stderr]);
}
