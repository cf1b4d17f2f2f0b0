//! The LLM planner: an OpenAI-compatible chat-completions client with tool calls
//! (`shell`, `write_file`, `read_file`, `finish`).
//!
//! One request per decision: the model answers with tool calls, which are queued and handed
//! to the worker one per [`LlmPlanner::next`]; the worker's [`Observation`] of each comes
//! back as that call's `tool` message. `finish` only hands over to the verifier: the model
//! never decides that the work succeeded.
//!
//! Secrets: the API key is read from the environment variable that `llm.api_key_env` names,
//! sent only as the `Authorization` header (marked sensitive), and scrubbed from every
//! provider message before it reaches an error, a log entry or a report. The session log
//! gets a summary of each request and response (model, message count, finish reason, tool
//! names, usage, HTTP status, retries), never message contents and never headers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::planner::{Action, Observation, PlanError, PlanUsage};

/// Terminal output the model gets back from one shell action: the tail.
const OUTPUT_TAIL: usize = 4 * 1024;
/// A file's head for `read_file`.
const FILE_HEAD: usize = 16 * 1024;
/// Each of `memory/rules.md` and `memory/habits.md`, at most.
const MEMORY_MAX: usize = 8 * 1024;
/// Retries of one request (429, 5xx, timeouts, connection errors).
const MAX_RETRIES: u32 = 3;
/// The longest Retry-After honoured; a longer one is cut to this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);
/// First backoff for 5xx and transport errors; doubles per retry.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Malformed tool calls in a row before the run fails.
const MAX_MALFORMED: u32 = 3;
/// When the conversation grows past this many characters, the oldest tool outputs are
/// elided so a long run does not outgrow the model's context.
const HISTORY_BUDGET: usize = 160 * 1024;
/// Provider messages quoted in errors, at most.
const PROVIDER_MESSAGE_MAX: usize = 600;

const NUDGE: &str = "Use a tool or call finish: answer with exactly one tool call (shell, write_file, read_file or finish), not with text.";

/// The API key: never printed, never in Debug output.
struct ApiKey(Option<String>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ApiKey(<redacted>)"
        } else {
            "ApiKey(none)"
        })
    }
}

/// What the system prompt is built from; kept so a rescope can rebuild it.
struct Context {
    name: String,
    persona: Option<String>,
    mode: String,
    workdir: String,
    claims: Vec<String>,
    rules: Option<String>,
    habits: Option<String>,
}

pub struct LlmPlanner {
    http: Result<reqwest::Client, String>,
    endpoint: String,
    model: String,
    key: ApiKey,
    /// Set when `api_key_env` names a variable that is not set: the first request fails.
    key_missing: Option<String>,
    price_in: f64,
    price_out: f64,
    ctx: Context,
    goal: String,
    messages: Vec<Value>,
    /// Tool calls of the last response not yet handed out: (call id, action).
    queue: VecDeque<(String, Action)>,
    /// The call handed out by `next()` whose observation is due.
    awaiting: Option<String>,
    /// Queued calls dropped by feedback or a rescope, answered "not run" before the next
    /// request.
    skipped: Vec<(String, String)>,
    /// Chat from operators, added as user messages before the next request.
    pending_user: Vec<String>,
    nudged: bool,
    malformed: u32,
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    log: Vec<Value>,
}

impl std::fmt::Debug for LlmPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmPlanner")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("key", &self.key)
            .field("messages", &self.messages.len())
            .finish_non_exhaustive()
    }
}

/// A file from VIBER_HOME, bounded; `None` when absent or empty.
fn read_bounded(path: &std::path::Path, max: usize) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(if text.len() > max {
        format!("{}\n[... truncated]", head(text, max))
    } else {
        text.to_string()
    })
}

/// The first `max` bytes of `s`, cut at a character boundary.
fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Terminal bytes as plain text: ANSI escape sequences and control characters other than
/// newline and tab removed, carriage-return overwrites reduced to the final line.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.peek() {
                Some('[') => {
                    chars.next();
                    // CSI: parameters and intermediates, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    chars.next();
                    // OSC: until BEL or ST.
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    // A carriage return overwrites the line: keep what comes after it.
                    let line_start = out.rfind('\n').map(|i| i + 1).unwrap_or(0);
                    out.truncate(line_start);
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "shell",
            "description": "Run one shell command (bash) in a fresh tmux pane in the working directory. You get its exit status and the last 4 KiB of its output. Set background to true for servers and other long-running processes: they keep running for the rest of the run and you get no exit status.",
            "parameters": {"type": "object", "properties": {
                "command": {"type": "string", "description": "The command line; non-interactive (no editors, pagers or prompts)."},
                "background": {"type": "boolean", "description": "Keep it running in the background (default false)."}
            }, "required": ["command"]}
        }},
        {"type": "function", "function": {
            "name": "write_file",
            "description": "Create or replace a file with the given content. Relative paths are inside the working directory; `..` is not allowed.",
            "parameters": {"type": "object", "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"}
            }, "required": ["path", "content"]}
        }},
        {"type": "function", "function": {
            "name": "read_file",
            "description": "Read a file (the first 16 KiB). Relative paths are inside the working directory.",
            "parameters": {"type": "object", "properties": {
                "path": {"type": "string"}
            }, "required": ["path"]}
        }},
        {"type": "function", "function": {
            "name": "finish",
            "description": "Call when you believe the goal is met. This hands the work to an independent verifier, which runs the task's acceptance checks and decides the outcome; you do not decide success. Give a short summary and the concrete, checkable claims you believe now hold.",
            "parameters": {"type": "object", "properties": {
                "summary": {"type": "string"},
                "claims": {"type": "array", "items": {"type": "string"}}
            }, "required": ["summary"]}
        }}
    ])
}

fn mode_help(mode: &str) -> &'static str {
    match mode {
        "always-ask" => "a person approves every action before it runs",
        "always-execute" => {
            "actions run without asking, except where a policy rule says to ask; denied commands never run"
        }
        _ => {
            "actions run unless a policy rule says to ask or the command is risky (rm, sudo, curl, package installs ...), in which case a person is asked; denied commands never run"
        }
    }
}

/// The message a provider gave for an error, from the usual JSON shapes or the raw body.
fn provider_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let e = &v["error"];
        e["message"]
            .as_str()
            .or_else(|| e.as_str())
            .or_else(|| v["message"].as_str())
            .or_else(|| v["detail"].as_str())
            .map(str::to_string)
    });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    if text.is_empty() {
        return "(no message)".into();
    }
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() > PROVIDER_MESSAGE_MAX {
        format!("{}...", head(&one_line, PROVIDER_MESSAGE_MAX))
    } else {
        one_line
    }
}

/// Seconds from a Retry-After header (delta-seconds; an HTTP date is not honoured).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs).min(RETRY_AFTER_CAP))
}

/// What one request came to.
enum Outcome {
    Ok(Value),
    Retry { wait: Duration, why: String },
    Fail(String),
}

impl LlmPlanner {
    pub fn new(
        llm: &crate::store::config::LlmConfig,
        task: &crate::protocol::runs::Task,
        config: &crate::store::Config,
        home: &crate::store::Home,
    ) -> Self {
        let base = llm.base_url.trim().trim_end_matches('/');
        let endpoint = format!("{base}/chat/completions");
        let loopback = reqwest::Url::parse(&endpoint)
            .ok()
            .is_some_and(|u| u.host_str().is_some_and(crate::client::is_loopback_host));
        let timeout = Duration::from_secs(llm.timeout_secs.max(1));
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .user_agent(concat!("viber/", env!("CARGO_PKG_VERSION")));
        if loopback {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {}", crate::error::chain(&e)));

        let (key, key_missing) = match llm.api_key_env.as_deref().map(str::trim) {
            Some(var) if !var.is_empty() => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => (ApiKey(Some(k.trim().to_string())), None),
                _ => (
                    ApiKey(None),
                    Some(format!(
                        "the LLM API key is missing: the environment variable {var} (llm.api_key_env) is not set for the gateway"
                    )),
                ),
            },
            _ => (ApiKey(None), None),
        };

        let memory = home.memory();
        let mode = task
            .mode
            .unwrap_or(config.autonomy.default_mode)
            .as_str()
            .to_string();
        let ctx = Context {
            name: config
                .identity
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| "viber".into()),
            persona: config
                .identity
                .persona
                .clone()
                .filter(|p| !p.trim().is_empty()),
            mode,
            workdir: task.workdir.clone().unwrap_or_else(|| ".".into()),
            claims: task.accept.iter().map(|c| c.claim.clone()).collect(),
            rules: read_bounded(&memory.join("rules.md"), MEMORY_MAX),
            habits: read_bounded(&memory.join("habits.md"), MEMORY_MAX),
        };
        let mut p = LlmPlanner {
            http,
            endpoint,
            model: llm.model.clone(),
            key,
            key_missing,
            price_in: llm.price_per_mtok_in,
            price_out: llm.price_per_mtok_out,
            ctx,
            goal: task.goal.clone(),
            messages: Vec::new(),
            queue: VecDeque::new(),
            awaiting: None,
            skipped: Vec::new(),
            pending_user: Vec::new(),
            nudged: false,
            malformed: 0,
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            log: Vec::new(),
        };
        p.messages
            .push(json!({"role": "system", "content": p.system_prompt()}));
        p.messages.push(json!({"role": "user", "content": format!(
            "Goal: {}\n\nDecide the first action and call the tool for it.",
            p.goal
        )}));
        p
    }

    fn system_prompt(&self) -> String {
        let c = &self.ctx;
        let mut s = format!(
            "You are {}, a viber: an agent that does real work on a real machine for a person, one tool call at a time.\n",
            c.name
        );
        if let Some(p) = &c.persona {
            s.push_str(&format!("\nPersona: {p}\n"));
        }
        s.push_str(&format!(
            "\nGoal: {}\n\nWorking directory: {}\nMode: {} ({}).\n",
            self.goal,
            c.workdir,
            c.mode,
            mode_help(&c.mode)
        ));
        s.push_str(
            "\nHow to work:\n\
             - Use the tools: shell (runs in a tmux pane in the working directory; you get the exit status and the last 4 KiB of output), write_file, read_file, finish.\n\
             - Commands must be non-interactive: no editors, pagers or prompts (use -y, --no-pager and the like). Start servers with background: true.\n\
             - Look at each result before the next step; if something failed, find out why and fix it.\n\
             - Messages from the operator may arrive while you work: follow them.\n\
             - When you believe the goal is met, call finish with a summary and the claims you believe hold. finish hands the work to an independent verifier that runs the task's acceptance checks: you never decide success yourself, so make your claims concrete and checkable.\n",
        );
        if !c.claims.is_empty() {
            s.push_str("\nThe verifier will check these claims:\n");
            for claim in &c.claims {
                s.push_str(&format!("- {claim}\n"));
            }
        }
        if let Some(r) = &c.rules {
            s.push_str(&format!(
                "\nRules from the operator (memory/rules.md), always follow them:\n{r}\n"
            ));
        }
        if let Some(h) = &c.habits {
            s.push_str(&format!("\nHabits (memory/habits.md):\n{h}\n"));
        }
        s
    }

    /// Removes the API key from text that came from outside (provider messages, errors).
    fn scrub(&self, text: &str) -> String {
        match &self.key.0 {
            Some(k) if k.len() >= 4 => text.replace(k.as_str(), "[redacted]"),
            _ => text.to_string(),
        }
    }

    /// The next action: a queued tool call, or a new request to the model.
    pub async fn next(&mut self) -> Result<Option<Action>, PlanError> {
        if let Some(id) = self.awaiting.take() {
            // The worker moved on without reporting: the model still needs an answer.
            self.push_tool_result(&id, "(no result was recorded for this call)".into());
        }
        loop {
            if let Some((id, action)) = self.queue.pop_front() {
                if !matches!(action, Action::Finish { .. }) {
                    self.awaiting = Some(id);
                }
                return Ok(Some(action));
            }
            for (id, why) in std::mem::take(&mut self.skipped) {
                self.push_tool_result(&id, why);
            }
            for text in std::mem::take(&mut self.pending_user) {
                self.messages.push(json!({"role": "user", "content": text}));
            }
            let response = self.complete().await?;
            self.take_response(response)?;
        }
    }

    /// Turns one response into queued actions (or a nudge, or error results).
    fn take_response(&mut self, response: Value) -> Result<(), PlanError> {
        let choice = &response["choices"][0];
        let message = &choice["message"];
        let finish_reason = choice["finish_reason"].as_str().map(str::to_string);
        let raw_calls = message["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let content = message["content"].as_str().unwrap_or("");

        let mut summary = json!({
            "request": self.requests,
            "finishReason": finish_reason,
            "toolCalls": raw_calls.iter().map(|c| c["function"]["name"].clone()).collect::<Vec<_>>(),
        });

        if raw_calls.is_empty() {
            self.messages
                .push(json!({"role": "assistant", "content": content}));
            if self.nudged {
                summary["event"] = json!("no_tool_call");
                self.log.push(summary);
                return Err(PlanError::Failed(format!(
                    "the model answered twice without a tool call (finish_reason {})",
                    finish_reason.as_deref().unwrap_or("none")
                )));
            }
            self.nudged = true;
            summary["event"] = json!("nudged");
            self.log.push(summary);
            self.messages
                .push(json!({"role": "user", "content": NUDGE}));
            return Ok(());
        }
        self.nudged = false;

        // Echo the assistant's calls into the history, with an id for each.
        let mut calls = Vec::with_capacity(raw_calls.len());
        for (i, c) in raw_calls.iter().enumerate() {
            let id = c["id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("call_{}_{}", self.requests, i));
            let arguments = match &c["function"]["arguments"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let name = c["function"]["name"].as_str().unwrap_or("").to_string();
            calls.push((id, name, arguments));
        }
        let echoed: Vec<Value> = calls
            .iter()
            .map(|(id, name, arguments)| {
                json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        let mut assistant = json!({"role": "assistant", "tool_calls": echoed});
        assistant["content"] = if content.is_empty() {
            Value::Null
        } else {
            json!(content)
        };
        self.messages.push(assistant);

        let mut malformed = Vec::new();
        let mut failure = None;
        for (id, name, arguments) in calls {
            match parse_call(&name, &arguments) {
                Ok(action) => {
                    self.malformed = 0;
                    self.queue.push_back((id, action));
                }
                Err(why) => {
                    self.malformed += 1;
                    self.push_tool_result(
                        &id,
                        format!("error: {why}. Nothing was run. Call one of shell, write_file, read_file or finish with JSON arguments that match its schema."),
                    );
                    malformed.push(json!(why));
                    if self.malformed >= MAX_MALFORMED && failure.is_none() {
                        failure = Some(format!(
                            "the model sent {MAX_MALFORMED} malformed tool calls in a row; the last: {why}"
                        ));
                    }
                }
            }
        }
        if !malformed.is_empty() {
            summary["malformed"] = json!(malformed);
        }
        summary["event"] = json!("actions");
        self.log.push(summary);
        match failure {
            Some(msg) => {
                self.queue.clear();
                Err(PlanError::Failed(msg))
            }
            None => Ok(()),
        }
    }

    fn push_tool_result(&mut self, id: &str, content: String) {
        self.messages
            .push(json!({"role": "tool", "tool_call_id": id, "content": content}));
    }

    /// Drops every queued call so the model re-plans from here; each gets a "not run"
    /// result before the next request (after the result of the call in progress, if any).
    fn drop_queue(&mut self, why: &str) {
        for (id, _) in self.queue.drain(..) {
            self.skipped.push((id, format!("not run: {why}")));
        }
    }

    /// One chat-completions request, with retries where they make sense.
    async fn complete(&mut self) -> Result<Value, PlanError> {
        if let Some(msg) = &self.key_missing {
            return Err(PlanError::Failed(msg.clone()));
        }
        let client = match &self.http {
            Ok(c) => c.clone(),
            Err(e) => return Err(PlanError::Failed(e.clone())),
        };
        self.compact();
        self.requests += 1;
        let body = json!({
            "model": self.model,
            "messages": self.messages,
            "tools": tools(),
            "tool_choice": "auto",
        });
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            let mut entry = json!({
                "request": self.requests,
                "attempt": attempt,
                "model": self.model,
                "messages": self.messages.len(),
            });
            let mut req = client.post(&self.endpoint).json(&body);
            if let Some(k) = &self.key.0 {
                req = req.bearer_auth(k);
            }
            let outcome = match req.send().await {
                Err(e) => {
                    let why = if e.is_timeout() {
                        "the request timed out".to_string()
                    } else {
                        format!("cannot reach the LLM endpoint: {}", crate::error::chain(&e))
                    };
                    Outcome::Retry {
                        wait: BACKOFF_BASE * 2u32.pow(attempt - 1),
                        why: self.scrub(&why),
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    entry["httpStatus"] = json!(status.as_u16());
                    let wait_hint = retry_after(&resp);
                    let text = match resp.text().await {
                        Ok(t) => Ok(t),
                        Err(e) => Err(if e.is_timeout() {
                            "the response timed out".to_string()
                        } else {
                            format!("the response broke off: {}", crate::error::chain(&e))
                        }),
                    };
                    self.classify(status, wait_hint, text, attempt)
                }
            };
            entry["elapsedMs"] = json!(started.elapsed().as_millis() as u64);
            match outcome {
                Outcome::Ok(v) => {
                    let pt = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                    let ct = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                    self.prompt_tokens += pt;
                    self.completion_tokens += ct;
                    entry["usage"] = json!({"promptTokens": pt, "completionTokens": ct});
                    entry["finishReason"] = v["choices"][0]["finish_reason"].clone();
                    entry["toolCalls"] = json!(
                        v["choices"][0]["message"]["tool_calls"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .map(|c| c["function"]["name"].clone())
                                .collect::<Vec<_>>())
                            .unwrap_or_default()
                    );
                    entry["totals"] = json!({
                        "tokens": self.prompt_tokens + self.completion_tokens,
                        "costUsd": self.usage().cost_usd,
                    });
                    self.log.push(entry);
                    return Ok(v);
                }
                Outcome::Fail(msg) => {
                    let msg = self.scrub(&msg);
                    entry["error"] = json!(msg);
                    self.log.push(entry);
                    return Err(PlanError::Failed(msg));
                }
                Outcome::Retry { wait, why } => {
                    let why = self.scrub(&why);
                    entry["error"] = json!(why);
                    if attempt > MAX_RETRIES {
                        entry["retry"] = json!({"givenUp": true, "retries": MAX_RETRIES});
                        self.log.push(entry);
                        return Err(PlanError::Failed(format!(
                            "the LLM endpoint failed after {MAX_RETRIES} retries: {why}"
                        )));
                    }
                    entry["retry"] = json!({"inMs": wait.as_millis() as u64, "next": attempt + 1});
                    self.log.push(entry);
                    tracing::info!(
                        "LLM request {} attempt {attempt}: {why}; retrying in {wait:?}",
                        self.requests
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn classify(
        &self,
        status: reqwest::StatusCode,
        retry_after: Option<Duration>,
        text: Result<String, String>,
        attempt: u32,
    ) -> Outcome {
        let backoff = BACKOFF_BASE * 2u32.pow(attempt - 1);
        let code = status.as_u16();
        let text = match text {
            Ok(t) => t,
            Err(why) => return Outcome::Retry { wait: backoff, why },
        };
        if status.is_success() {
            return match serde_json::from_str::<Value>(&text) {
                Ok(v) if v["choices"][0]["message"].is_object() => Outcome::Ok(v),
                Ok(v) if v.get("error").is_some() => Outcome::Fail(format!(
                    "the LLM provider answered with an error: {}",
                    provider_message(&text)
                )),
                Ok(_) => Outcome::Retry {
                    wait: backoff,
                    why: "the response has no choices[0].message".into(),
                },
                Err(e) => Outcome::Retry {
                    wait: backoff,
                    why: format!("the response is not JSON: {e}"),
                },
            };
        }
        let message = provider_message(&text);
        match code {
            401 | 403 => Outcome::Fail(format!(
                "the LLM provider refused the request (HTTP {code}): {message}"
            )),
            429 => Outcome::Retry {
                wait: retry_after.unwrap_or(backoff),
                why: format!("rate limited (HTTP 429): {message}"),
            },
            408 | 500..=599 => Outcome::Retry {
                wait: retry_after.unwrap_or(backoff),
                why: format!("the LLM provider failed (HTTP {code}): {message}"),
            },
            _ => Outcome::Fail(format!(
                "the LLM provider rejected the request (HTTP {code}): {message}"
            )),
        }
    }

    /// Elides the oldest tool outputs once the history outgrows its budget.
    fn compact(&mut self) {
        let size = |m: &Value| {
            let calls: usize = m["tool_calls"].as_array().map_or(0, |calls| {
                calls
                    .iter()
                    .map(|c| c["function"]["arguments"].as_str().map_or(0, str::len))
                    .sum()
            });
            m["content"].as_str().map_or(0, str::len) + calls + 64
        };
        let mut total: usize = self.messages.iter().map(size).sum();
        if total <= HISTORY_BUDGET {
            return;
        }
        // Keep the last 8 messages whole: they are the model's working memory.
        let keep_from = self.messages.len().saturating_sub(8);
        for m in self.messages[..keep_from].iter_mut() {
            if total <= HISTORY_BUDGET {
                break;
            }
            if m["role"] == "tool" && m["content"].as_str().is_some_and(|c| c.len() > 200) {
                let before = m["content"].as_str().map_or(0, str::len);
                let short = format!(
                    "{}\n[... older output elided]",
                    head(m["content"].as_str().unwrap_or(""), 120)
                );
                total = total - before + short.len();
                m["content"] = json!(short);
            }
        }
    }

    /// The worker's result of the action last handed out.
    pub fn observe(&mut self, obs: Observation) {
        let Some(id) = self.awaiting.take() else {
            return;
        };
        let text = plain(&obs.output);
        let content = match &obs.action {
            Action::Shell {
                background: true, ..
            } if obs.exit.is_none() => {
                format!(
                    "started in the background; it keeps running. {}",
                    text.trim()
                )
            }
            Action::Shell { .. } => {
                let status = obs
                    .exit
                    .map(|c| format!("exit status {c}"))
                    .unwrap_or_else(|| "no exit status".into());
                let out = tail(&text, OUTPUT_TAIL);
                if out.trim().is_empty() {
                    format!("{status}\n(no output)")
                } else if out.len() < text.len() {
                    format!("{status}\nlast {} bytes of output:\n{out}", out.len())
                } else {
                    format!("{status}\noutput:\n{out}")
                }
            }
            Action::ReadFile { .. } => {
                let h = head(&text, FILE_HEAD);
                if h.len() < text.len() {
                    format!("{h}\n[... truncated at {FILE_HEAD} bytes]")
                } else {
                    h.to_string()
                }
            }
            _ => head(&text, OUTPUT_TAIL).to_string(),
        };
        self.push_tool_result(&id, content);
    }

    /// Chat from a person: it reaches the model before its next decision. Calls the
    /// model queued earlier are not run, so it re-plans with the message in mind.
    pub fn feedback(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.drop_queue("the operator sent a message first; re-plan with it in mind");
        self.pending_user
            .push(format!("Message from the operator: {text}"));
        self.log
            .push(json!({"event": "feedback", "chars": text.chars().count()}));
    }

    /// A new goal: the plan is redone from the current state.
    pub fn rescope(&mut self, goal: &str) {
        let goal = goal.trim();
        if goal.is_empty() {
            return;
        }
        self.drop_queue("the goal changed");
        let old = std::mem::replace(&mut self.goal, goal.to_string());
        let system = self.system_prompt();
        if let Some(first) = self.messages.first_mut() {
            first["content"] = json!(system);
        }
        self.pending_user.push(format!(
            "The operator changed the goal.\nOld goal: {old}\nNew goal: {goal}\nRe-plan from the current state of the machine: what is already done stays done; do what the new goal still needs."
        ));
        self.log.push(json!({"event": "rescoped"}));
    }

    pub fn usage(&self) -> PlanUsage {
        PlanUsage {
            tokens: self.prompt_tokens + self.completion_tokens,
            cost_usd: (self.prompt_tokens as f64 * self.price_in
                + self.completion_tokens as f64 * self.price_out)
                / 1e6,
        }
    }

    pub fn drain_log(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.log)
    }
}

/// One tool call as an action, or why it cannot be one.
fn parse_call(name: &str, arguments: &str) -> Result<Action, String> {
    let args: Value = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(arguments)
            .map_err(|e| format!("the arguments of {name:?} are not valid JSON ({e})"))?
    };
    if !args.is_object() {
        return Err(format!("the arguments of {name:?} must be a JSON object"));
    }
    let string = |field: &str| -> Result<String, String> {
        match &args[field] {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Err(format!("{name}: missing the string field {field:?}")),
            _ => Err(format!("{name}: {field:?} must be a string")),
        }
    };
    match name {
        "shell" => {
            let command = string("command")?;
            if command.trim().is_empty() {
                return Err("shell: \"command\" is empty".into());
            }
            let background = match &args["background"] {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) if s == "true" || s == "false" => s == "true",
                _ => return Err("shell: \"background\" must be true or false".into()),
            };
            Ok(Action::Shell {
                command,
                background,
                name: None,
            })
        }
        "write_file" => {
            let path = string("path")?;
            if path.trim().is_empty() {
                return Err("write_file: \"path\" is empty".into());
            }
            Ok(Action::WriteFile {
                path,
                content: string("content")?,
            })
        }
        "read_file" => {
            let path = string("path")?;
            if path.trim().is_empty() {
                return Err("read_file: \"path\" is empty".into());
            }
            Ok(Action::ReadFile { path })
        }
        "finish" => {
            let summary = match &args["summary"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                _ => return Err("finish: \"summary\" must be a string".into()),
            };
            let claims = match &args["claims"] {
                Value::Null => Vec::new(),
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .map(|c| match c {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err("finish: \"claims\" must be a list of strings".to_string()),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err("finish: \"claims\" must be a list of strings".into()),
            };
            Ok(Action::Finish { summary, claims })
        }
        "" => Err("the tool call has no function name".into()),
        other => Err(format!(
            "unknown tool {other:?} (the tools are shell, write_file, read_file and finish)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_parse_and_malformed_ones_say_why() {
        assert_eq!(
            parse_call("shell", r#"{"command":"ls -la","background":true}"#).unwrap(),
            Action::Shell {
                command: "ls -la".into(),
                background: true,
                name: None
            }
        );
        assert_eq!(
            parse_call("finish", r#"{"summary":"s","claims":["a","b"]}"#).unwrap(),
            Action::Finish {
                summary: "s".into(),
                claims: vec!["a".into(), "b".into()]
            }
        );
        assert!(
            parse_call("shell", "{not json")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            parse_call("rm_rf", "{}")
                .unwrap_err()
                .contains("unknown tool")
        );
        assert!(
            parse_call("write_file", r#"{"path":"a"}"#)
                .unwrap_err()
                .contains("content")
        );
        assert!(
            parse_call("shell", r#"{"command":5}"#)
                .unwrap_err()
                .contains("string")
        );
    }

    #[test]
    fn terminal_text_is_plain_and_bounded() {
        assert_eq!(plain("\x1b[31mred\x1b[0m\r\nok\rdone\n"), "red\ndone\n");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(head("éa", 1), "");
        assert_eq!(tail("abcdef", 3), "def");
    }

    fn planner(dir: &std::path::Path) -> LlmPlanner {
        let llm = crate::store::config::LlmConfig {
            base_url: "http://127.0.0.1:9/v1/".into(),
            model: "m".into(),
            api_key_env: None,
            price_per_mtok_in: 1.0,
            price_per_mtok_out: 2.0,
            timeout_secs: 5,
        };
        let task = crate::agent::task::from_goal("old goal").unwrap();
        let home = crate::store::Home::new(dir);
        LlmPlanner::new(&llm, &task, &crate::store::Config::default(), &home)
    }

    fn response(calls: &[(&str, &str, &str)]) -> Value {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
        json!({"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": calls}}]})
    }

    #[tokio::test]
    async fn queued_calls_are_handed_out_in_order_and_feedback_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = planner(dir.path());
        assert_eq!(p.endpoint, "http://127.0.0.1:9/v1/chat/completions");
        p.take_response(response(&[
            ("a", "shell", r#"{"command":"ls"}"#),
            ("b", "shell", r#"{"command":"pwd"}"#),
            ("c", "read_file", r#"{"path":"x"}"#),
        ]))
        .unwrap();
        let first = p.next().await.unwrap().unwrap();
        assert_eq!(first.policy_command(), "ls");
        p.observe(Observation {
            action: first,
            exit: Some(0),
            output: "\x1b[1mfile\x1b[0m\r\n".into(),
        });
        let second = p.next().await.unwrap().unwrap();
        assert_eq!(second.policy_command(), "pwd");
        // Feedback while `pwd` runs: `c` will not run; `b`'s result still comes first.
        p.feedback("stop listing");
        p.observe(Observation {
            action: second,
            exit: Some(0),
            output: "/w\n".into(),
        });
        assert!(p.queue.is_empty());
        let tools: Vec<(&str, &str)> = p
            .messages
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| {
                (
                    m["tool_call_id"].as_str().unwrap(),
                    m["content"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            tools,
            [
                ("a", "exit status 0\noutput:\nfile\n"),
                ("b", "exit status 0\noutput:\n/w\n")
            ]
        );
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].0, "c");
        assert_eq!(p.pending_user, ["Message from the operator: stop listing"]);
    }

    #[test]
    fn a_rescope_rewrites_the_system_prompt_and_usage_is_priced() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = planner(dir.path());
        p.rescope("new goal");
        let system = p.messages[0]["content"].as_str().unwrap();
        assert!(system.contains("Goal: new goal") && !system.contains("old goal"));
        assert!(p.pending_user[0].contains("Old goal: old goal"));
        p.prompt_tokens = 1_000_000;
        p.completion_tokens = 500_000;
        let u = p.usage();
        assert_eq!(u.tokens, 1_500_000);
        assert!((u.cost_usd - 2.0).abs() < 1e-9);
    }

    #[test]
    fn two_answers_without_a_tool_call_fail_and_three_malformed_calls_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = planner(dir.path());
        let talk = json!({"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "hm"}}]});
        p.take_response(talk.clone()).unwrap();
        assert_eq!(p.messages.last().unwrap()["content"], NUDGE);
        assert!(p.take_response(talk).is_err());

        let mut p = planner(dir.path());
        p.take_response(response(&[("x", "shell", "{"), ("y", "nope", "{}")]))
            .unwrap();
        p.take_response(response(&[("z", "shell", r#"{"command":"ok"}"#)]))
            .unwrap();
        assert_eq!(p.malformed, 0, "a valid call resets the streak");
        p.queue.clear();
        p.take_response(response(&[("x", "shell", "{"), ("y", "nope", "{}")]))
            .unwrap();
        let e = p
            .take_response(response(&[("w", "finish", "[]")]))
            .unwrap_err();
        assert!(e.to_string().contains("3 malformed"), "{e}");
    }

    #[test]
    fn provider_messages_come_from_the_usual_shapes() {
        assert_eq!(
            provider_message(r#"{"error":{"message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(
            provider_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(provider_message("  plain\n text "), "plain text");
        assert_eq!(provider_message(""), "(no message)");
    }
}
