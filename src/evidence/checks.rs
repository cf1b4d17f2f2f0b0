//! Acceptance checks: refusing malformed ones before a run starts, running them, keeping
//! what they saw as evidence files, and judging a verdict from those files alone.
//!
//! Running and judging are split on purpose: [`run`] only observes and writes evidence,
//! [`judge`] only reads evidence. `viber verify` calls the same [`judge`] on the files it
//! finds on disk, so a verdict that does not follow from its evidence cannot pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::report::{ClaimEntry, EvidenceRef};
use super::{screenshot, sh_quote};
use crate::protocol::runs::{Check, RunStatus};
use crate::store::{StoreError, fsutil};

/// How much of any one output, body or file is kept as evidence. Beyond this the
/// evidence says it was cut, and a verdict that needed the rest is `unproven`.
pub const CAP: usize = 16 * 1024 * 1024;
/// Default time limit of a command check.
pub const COMMAND_TIMEOUT_SECS: u64 = 120;
/// Default time limit of an HTTP check (and of its screenshot).
pub const HTTP_TIMEOUT_SECS: u64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Proven,
    Failed,
    Unproven,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Proven => "proven",
            Verdict::Failed => "failed",
            Verdict::Unproven => "unproven",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so `{:<9}` aligns columns.
        f.pad(self.as_str())
    }
}

/// Evidence of one claim, by label: the bytes a verdict is judged from.
pub type EvidenceSet = BTreeMap<String, Vec<u8>>;

/// The file each evidence label is kept in, inside the claim's directory.
pub fn file_name(label: &str) -> &'static str {
    match label {
        "observed" => "observed.json",
        "stdout" => "stdout.txt",
        "stderr" => "stderr.txt",
        "content" => "content",
        "head" => "response-head.txt",
        "body" => "response-body",
        "screenshot" => "screenshot.png",
        "terminal" => "terminal.log",
        _ => "other",
    }
}

/// Relative directory of claim `index`'s evidence inside a workspace.
pub fn claim_dir(index: u32) -> String {
    format!("evidence/claims/{index}")
}

/// Which fields each kind of check understands: anything else is a mistake in the task
/// file, refused before the run starts rather than silently ignored.
fn allowed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "command" => &[
            "expect_exit",
            "stdout_contains",
            "stdout_regex",
            "stderr_contains",
            "stderr_regex",
            "timeout_secs",
        ],
        "file" => &["sha256", "contains", "regex"],
        "http" => &[
            "expect_status",
            "body_contains",
            "screenshot",
            "timeout_secs",
        ],
        "terminal" => &["contains", "regex"],
        _ => &[],
    }
}

fn present_fields(c: &Check) -> Vec<&'static str> {
    [
        ("expect_exit", c.expect_exit.is_some()),
        ("stdout_contains", c.stdout_contains.is_some()),
        ("stdout_regex", c.stdout_regex.is_some()),
        ("stderr_contains", c.stderr_contains.is_some()),
        ("stderr_regex", c.stderr_regex.is_some()),
        ("sha256", c.sha256.is_some()),
        ("expect_status", c.expect_status.is_some()),
        ("body_contains", c.body_contains.is_some()),
        ("screenshot", c.screenshot),
        ("contains", c.contains.is_some()),
        ("regex", c.regex.is_some()),
        ("timeout_secs", c.timeout_secs.is_some()),
    ]
    .into_iter()
    .filter(|(_, p)| *p)
    .map(|(n, _)| n)
    .collect()
}

/// Checks what serde and [`Check::kind`] cannot: fields that do not belong to the check's
/// kind, regexes that do not compile, a malformed sha256, a URL that is not http(s).
pub fn validate(accept: &[Check]) -> Result<(), String> {
    for (i, c) in accept.iter().enumerate() {
        let at = format!("accept[{i}] ({:?})", c.claim);
        if c.claim.trim().is_empty() {
            return Err(format!("accept[{i}].claim must not be empty"));
        }
        let kind = c.kind()?;
        let allowed = allowed_fields(kind);
        for f in present_fields(c) {
            if !allowed.contains(&f) {
                return Err(format!(
                    "{at}: `{f}` does not apply to a {kind} check (it takes: {})",
                    allowed.join(", ")
                ));
            }
        }
        for (name, re) in [
            ("stdout_regex", &c.stdout_regex),
            ("stderr_regex", &c.stderr_regex),
            ("regex", &c.regex),
        ] {
            if let Some(re) = re {
                regex::bytes::Regex::new(re)
                    .map_err(|e| format!("{at}: {name} does not compile: {e}"))?;
            }
        }
        if let Some(h) = &c.sha256
            && (h.len() != 64 || !h.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            return Err(format!("{at}: sha256 must be 64 hex digits"));
        }
        if let Some(url) = &c.http {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("{at}: http: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("{at}: http must be an http:// or https:// URL"));
            }
        }
        if c.timeout_secs == Some(0) {
            return Err(format!("{at}: timeout_secs must be at least 1"));
        }
        if let Some(t) = &c.terminal
            && t.trim().is_empty()
        {
            return Err(format!(
                "{at}: terminal must name a step (its name or 1-based index)"
            ));
        }
    }
    Ok(())
}

/// A step as a terminal check refers to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRef {
    pub index: u32,
    pub name: String,
}

/// Where a check runs and where its evidence goes.
pub struct Env<'a> {
    /// Evidence paths are relative to this: the run's workspace (a scratch dir on rerun).
    pub root: &'a Path,
    /// Where commands run and relative file paths resolve.
    pub workdir: &'a Path,
    /// The run's workspace, where the steps' pane logs are.
    pub logs: &'a Path,
    pub steps: &'a [StepRef],
    /// Environment variables a check's command must not see (the LLM API key).
    pub scrub: &'a [String],
}

/// Resolves a terminal check's step: its name first, then a 1-based index.
pub fn resolve_step<'s>(steps: &'s [StepRef], wanted: &str) -> Option<&'s StepRef> {
    steps.iter().find(|s| s.name == wanted).or_else(|| {
        let i: u32 = wanted.trim().parse().ok()?;
        steps.iter().find(|s| s.index == i)
    })
}

/// The command that reproduces a check by hand, without viber.
pub fn reproduce(check: &Check, env: &Env<'_>) -> String {
    match check.kind() {
        Ok("command") => format!(
            "cd {} && sh -c {}; echo \"exit status $?\"",
            sh_quote(&env.workdir.display().to_string()),
            sh_quote(check.command.as_deref().unwrap_or(""))
        ),
        Ok("file") => {
            let path = resolve_path(env.workdir, check.file.as_deref().unwrap_or(""));
            let p = sh_quote(&path.display().to_string());
            let mut s = format!("sha256sum {p}");
            if let Some(c) = &check.contains {
                s.push_str(&format!(" && grep -cF -- {} {p}", sh_quote(c)));
            }
            if let Some(r) = &check.regex {
                s.push_str(&format!(" && grep -cP -- {} {p}", sh_quote(r)));
            }
            s
        }
        Ok("http") => {
            let url = check.http.as_deref().unwrap_or("");
            let t = check.timeout_secs.unwrap_or(HTTP_TIMEOUT_SECS);
            let mut s = format!("curl -sS -i --max-time {t} {}", sh_quote(url));
            if check.screenshot {
                s.push_str(&format!(
                    " && {}",
                    screenshot::command_line("chromium", Path::new("screenshot.png"), url)
                ));
            }
            s
        }
        Ok("terminal") => {
            let wanted = check.terminal.as_deref().unwrap_or("");
            let log = resolve_step(env.steps, wanted)
                .map(|s| env.logs.join(crate::agent::session::step_log(s.index)))
                .unwrap_or_else(|| env.logs.join("evidence/terminal/?.log"));
            let l = sh_quote(&log.display().to_string());
            match (&check.contains, &check.regex) {
                (Some(c), _) => format!("grep -cF -- {} {l}", sh_quote(c)),
                (None, Some(r)) => format!("grep -cP -- {} {l}", sh_quote(r)),
                (None, None) => format!("cat {l}"),
            }
        }
        _ => String::new(),
    }
}

fn resolve_path(workdir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        workdir.join(p)
    }
}

/// Runs one check, writes its evidence under `root/evidence/claims/{index}/` and judges it.
pub async fn run(check: &Check, index: u32, env: &Env<'_>) -> ClaimEntry {
    let kind = check.kind().unwrap_or("invalid");
    let mut ev = EvidenceSet::new();
    let observed = match kind {
        "command" => observe_command(check, env, &mut ev).await,
        "file" => observe_file(check, env, &mut ev).await,
        "http" => observe_http(check, &mut ev).await,
        "terminal" => observe_terminal(check, env, &mut ev),
        _ => json!({"error": check.kind().err().unwrap_or_default()}),
    };
    ev.insert(
        "observed".into(),
        serde_json::to_vec_pretty(&observed).expect("serializes"),
    );
    let (verdict, reason, evidence) = match write_evidence(env.root, index, &ev) {
        Ok(refs) => {
            let (v, r) = judge(check, &ev);
            (v, r, refs)
        }
        Err(e) => (
            Verdict::Unproven,
            format!("the evidence could not be kept: {e}"),
            Vec::new(),
        ),
    };
    ClaimEntry {
        index,
        claim: check.claim.clone(),
        kind: kind.to_string(),
        check: check.clone(),
        verdict,
        reason,
        checked: true,
        evidence,
        reproduce: reproduce(check, env),
        observed,
    }
}

/// A claim that was never checked (the run ended before the verifier ran).
pub fn unchecked(check: &Check, index: u32, why: &str, env: &Env<'_>) -> ClaimEntry {
    ClaimEntry {
        index,
        claim: check.claim.clone(),
        kind: check.kind().unwrap_or("invalid").to_string(),
        check: check.clone(),
        verdict: Verdict::Unproven,
        reason: format!("not checked: {why}"),
        checked: false,
        evidence: Vec::new(),
        reproduce: reproduce(check, env),
        observed: Value::Null,
    }
}

fn write_evidence(
    root: &Path,
    index: u32,
    ev: &EvidenceSet,
) -> Result<Vec<EvidenceRef>, StoreError> {
    let rel_dir = claim_dir(index);
    let dir = root.join(&rel_dir);
    // A fresh directory: evidence from an earlier attempt must not mix with this one.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| StoreError::io("cannot clear evidence directory", &dir, e))?;
    }
    fsutil::ensure_private_dir(&dir)?;
    let mut refs = Vec::new();
    for (label, bytes) in ev {
        let name = file_name(label);
        fsutil::write_atomic(&dir.join(name), bytes, 0o600)?;
        refs.push(EvidenceRef {
            label: label.clone(),
            path: format!("{rel_dir}/{name}"),
            sha256: super::sha256_hex(bytes),
            bytes: bytes.len() as u64,
        });
    }
    Ok(refs)
}

/// What has been read from a stream so far: the kept bytes and the total count.
type Captured = Arc<Mutex<(Vec<u8>, u64)>>;

/// Reads a child's stream into a shared buffer, keeping at most [`CAP`] bytes and counting
/// the rest, so a chatty command cannot exhaust memory and a stuck one can be abandoned.
fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut r: R,
) -> (Captured, tokio::task::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new((Vec::new(), 0u64)));
    let b = buf.clone();
    let task = tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut g = b.lock().unwrap_or_else(|e| e.into_inner());
                    g.1 += n as u64;
                    let room = CAP.saturating_sub(g.0.len()).min(n);
                    g.0.extend_from_slice(&chunk[..room]);
                }
            }
        }
    });
    (buf, task)
}

fn take(buf: &Captured) -> (Vec<u8>, u64) {
    std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()))
}

async fn observe_command(check: &Check, env: &Env<'_>, ev: &mut EvidenceSet) -> Value {
    let command = check.command.clone().unwrap_or_default();
    let timeout = Duration::from_secs(check.timeout_secs.unwrap_or(COMMAND_TIMEOUT_SECS));
    let started = Instant::now();
    let mut obs = json!({
        "command": command,
        "workdir": env.workdir,
        "timeoutSecs": timeout.as_secs(),
    });
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&command)
        .current_dir(env.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout ends everything the command started.
        .process_group(0)
        .kill_on_drop(true);
    for var in env.scrub {
        cmd.env_remove(var);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            obs["error"] = json!(format!(
                "cannot start `sh -c` in {}: {e}",
                env.workdir.display()
            ));
            return obs;
        }
    };
    let pgid = child.id();
    let (out, out_task) = drain(child.stdout.take().expect("piped"));
    let (err, err_task) = drain(child.stderr.take().expect("piped"));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => s.ok(),
        Err(_) => {
            obs["timedOut"] = json!(true);
            None
        }
    };
    if let Some(pid) = pgid {
        // Whatever the command left behind (or all of it, on a timeout).
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait().await;
    // A grandchild that escaped the group may hold the pipes open: do not wait forever.
    for t in [out_task, err_task] {
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let (stdout, stdout_total) = take(&out);
    let (stderr, stderr_total) = take(&err);
    if let Some(s) = status {
        use std::os::unix::process::ExitStatusExt;
        obs["exitCode"] = json!(s.code());
        obs["signal"] = json!(s.signal());
    }
    obs["durationMs"] = json!(started.elapsed().as_millis() as u64);
    obs["stdoutBytes"] = json!(stdout_total);
    obs["stderrBytes"] = json!(stderr_total);
    obs["stdoutTruncated"] = json!(stdout_total > stdout.len() as u64);
    obs["stderrTruncated"] = json!(stderr_total > stderr.len() as u64);
    ev.insert("stdout".into(), stdout);
    ev.insert("stderr".into(), stderr);
    obs
}

async fn observe_file(check: &Check, env: &Env<'_>, ev: &mut EvidenceSet) -> Value {
    let path = resolve_path(env.workdir, check.file.as_deref().unwrap_or(""));
    let mut obs = json!({"path": path, "exists": false});
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return obs,
        Err(e) => {
            obs["error"] = json!(format!("cannot stat {}: {e}", path.display()));
            return obs;
        }
    };
    obs["exists"] = json!(true);
    obs["isFile"] = json!(meta.is_file());
    if !meta.is_file() {
        return obs;
    }
    obs["size"] = json!(meta.len());
    if meta.len() as usize <= CAP {
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                obs["sha256"] = json!(super::sha256_hex(&bytes));
                obs["contentKept"] = json!(true);
                ev.insert("content".into(), bytes);
            }
            Err(e) => obs["error"] = json!(format!("cannot read {}: {e}", path.display())),
        }
    } else {
        let p = path.clone();
        match tokio::task::spawn_blocking(move || super::sha256_file(&p)).await {
            Ok(Ok(h)) => {
                obs["sha256"] = json!(h);
                obs["contentKept"] = json!(false);
            }
            Ok(Err(e)) => obs["error"] = json!(format!("cannot read {}: {e}", path.display())),
            Err(e) => obs["error"] = json!(format!("hashing failed: {e}")),
        }
    }
    obs
}

async fn observe_http(check: &Check, ev: &mut EvidenceSet) -> Value {
    let url = check.http.clone().unwrap_or_default();
    let timeout = Duration::from_secs(check.timeout_secs.unwrap_or(HTTP_TIMEOUT_SECS));
    let mut obs = json!({"url": url, "method": "GET", "timeoutSecs": timeout.as_secs()});
    let loopback = reqwest::Url::parse(&url)
        .ok()
        .is_some_and(|u| u.host_str().is_some_and(crate::client::is_loopback_host));
    let mut builder = reqwest::Client::builder()
        // Like `curl` without -L: the evidence is this URL's own answer, and the
        // reproduce command gives the same one.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("viber-verifier/", env!("CARGO_PKG_VERSION")));
    if loopback {
        // A proxy from the environment must not stand between us and this machine.
        builder = builder.no_proxy();
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            obs["error"] = json!(crate::error::chain(&e));
            return obs;
        }
    };
    let mut resp = match client.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            obs["error"] = json!(crate::error::chain(&e));
            return obs;
        }
    };
    let status = resp.status();
    let status_line = format!(
        "{:?} {} {}",
        resp.version(),
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string();
    let mut head = format!("{status_line}\r\n");
    for (name, value) in resp.headers() {
        head.push_str(&format!(
            "{}: {}\r\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    obs["status"] = json!(status.as_u16());
    obs["statusLine"] = json!(status_line);
    ev.insert("head".into(), head.into_bytes());
    let mut body = Vec::new();
    let mut total = 0u64;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                total += c.len() as u64;
                let room = CAP.saturating_sub(body.len()).min(c.len());
                body.extend_from_slice(&c[..room]);
            }
            Ok(None) => break,
            Err(e) => {
                obs["bodyError"] = json!(crate::error::chain(&e));
                break;
            }
        }
    }
    obs["bodyBytes"] = json!(total);
    obs["bodyTruncated"] = json!(total > body.len() as u64);
    ev.insert("body".into(), body);
    if check.screenshot {
        match screenshot::capture(&url, timeout.max(Duration::from_secs(30))).await {
            Ok(shot) => {
                obs["screenshot"] = json!({"taken": true, "width": shot.width, "height": shot.height, "browser": shot.browser});
                ev.insert("screenshot".into(), shot.png);
            }
            Err(why) => obs["screenshot"] = json!({"taken": false, "why": why}),
        }
    }
    obs
}

fn observe_terminal(check: &Check, env: &Env<'_>, ev: &mut EvidenceSet) -> Value {
    let wanted = check.terminal.clone().unwrap_or_default();
    let Some(step) = resolve_step(env.steps, &wanted) else {
        let names: Vec<String> = env
            .steps
            .iter()
            .map(|s| format!("{} ({})", s.index, s.name))
            .collect();
        return json!({"step": wanted, "error": format!(
            "no step named or numbered {wanted:?} (steps: {})",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        )});
    };
    let rel = crate::agent::session::step_log(step.index);
    let path = env.logs.join(&rel);
    let mut obs = json!({"step": step.index, "name": step.name, "log": rel});
    match std::fs::read(&path) {
        Ok(mut bytes) => {
            obs["bytes"] = json!(bytes.len());
            obs["truncated"] = json!(bytes.len() > CAP);
            bytes.truncate(CAP);
            // A snapshot: a background step's log keeps growing after this moment.
            ev.insert("terminal".into(), bytes);
        }
        Err(e) => {
            obs["error"] = json!(format!(
                "cannot read step {}'s pane log {}: {e}",
                step.index,
                path.display()
            ))
        }
    }
    obs
}

/// Collects what a claim's evidence shows: failures win over gaps, gaps over proof.
#[derive(Default)]
struct Findings {
    ok: Vec<String>,
    failed: Vec<String>,
    unproven: Vec<String>,
}

impl Findings {
    fn verdict(self) -> (Verdict, String) {
        if !self.failed.is_empty() {
            (Verdict::Failed, self.failed.join("; "))
        } else if !self.unproven.is_empty() {
            (Verdict::Unproven, self.unproven.join("; "))
        } else {
            (Verdict::Proven, self.ok.join("; "))
        }
    }

    /// `needle` in `hay`, where `cut` says `hay` is only the start of the real thing.
    fn contains(&mut self, what: &str, hay: &[u8], needle: &str, cut: bool) {
        if find(hay, needle.as_bytes()) {
            self.ok.push(format!("{what} contains {needle:?}"));
        } else if cut {
            self.unproven.push(format!(
                "{what} does not contain {needle:?} in the part kept as evidence (it was cut at {CAP} bytes)"
            ));
        } else {
            self.failed
                .push(format!("{what} does not contain {needle:?}"));
        }
    }

    fn matches(&mut self, what: &str, hay: &[u8], re: &str, cut: bool) {
        match regex::bytes::Regex::new(re) {
            Err(e) => self
                .unproven
                .push(format!("the regex {re:?} does not compile: {e}")),
            Ok(r) if r.is_match(hay) => self.ok.push(format!("{what} matches /{re}/")),
            Ok(_) if cut => self.unproven.push(format!(
                "{what} does not match /{re}/ in the part kept as evidence (it was cut at {CAP} bytes)"
            )),
            Ok(_) => self.failed.push(format!("{what} does not match /{re}/")),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The verdict that a claim's evidence supports, and why. A pure function of the check
/// and the evidence bytes: the run and `viber verify` call it alike.
pub fn judge(check: &Check, ev: &EvidenceSet) -> (Verdict, String) {
    let obs: Value = ev
        .get("observed")
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null);
    if obs.is_null() {
        return (
            Verdict::Unproven,
            "no observation was recorded for this claim".into(),
        );
    }
    let empty = Vec::new();
    let get = |label: &str| ev.get(label).unwrap_or(&empty);
    let mut f = Findings::default();
    match check.kind() {
        Err(e) => f.unproven.push(e),
        Ok("command") => {
            if let Some(e) = obs["error"].as_str() {
                f.unproven.push(format!("the command could not run: {e}"));
            } else if obs["timedOut"] == true {
                f.failed.push(format!(
                    "the command did not finish within {} s",
                    obs["timeoutSecs"]
                ));
            } else {
                let expect = check.expect_exit.unwrap_or(0);
                match (obs["exitCode"].as_i64(), obs["signal"].as_i64()) {
                    (Some(code), _) if code == expect as i64 => {
                        f.ok.push(format!("exited with status {code} as expected"))
                    }
                    (Some(code), _) => f
                        .failed
                        .push(format!("exited with status {code}, expected {expect}")),
                    (None, Some(sig)) => f.failed.push(format!(
                        "was killed by signal {sig}, expected exit status {expect}"
                    )),
                    (None, None) => f.unproven.push("no exit status was recorded".into()),
                }
                let out_cut = obs["stdoutTruncated"] == true;
                let err_cut = obs["stderrTruncated"] == true;
                if let Some(n) = &check.stdout_contains {
                    f.contains("stdout", get("stdout"), n, out_cut);
                }
                if let Some(r) = &check.stdout_regex {
                    f.matches("stdout", get("stdout"), r, out_cut);
                }
                if let Some(n) = &check.stderr_contains {
                    f.contains("stderr", get("stderr"), n, err_cut);
                }
                if let Some(r) = &check.stderr_regex {
                    f.matches("stderr", get("stderr"), r, err_cut);
                }
            }
        }
        Ok("file") => {
            let path = obs["path"].as_str().unwrap_or("?").to_string();
            if let Some(e) = obs["error"].as_str() {
                f.unproven.push(e.to_string());
            } else if obs["exists"] != true {
                f.failed.push(format!("{path} does not exist"));
            } else if obs["isFile"] != true {
                f.failed.push(format!("{path} is not a regular file"));
            } else {
                let recorded = obs["sha256"].as_str().unwrap_or("");
                let content = ev.get("content");
                if let Some(c) = content
                    && super::sha256_hex(c) != recorded
                {
                    f.unproven.push(format!(
                        "the kept content of {path} does not hash to the recorded sha256"
                    ));
                }
                f.ok.push(format!("{path} exists (sha256 {recorded})"));
                if let Some(want) = &check.sha256 {
                    if want.eq_ignore_ascii_case(recorded) {
                        f.ok.push("its sha256 is as expected".into());
                    } else {
                        f.failed.push(format!(
                            "{path} has sha256 {recorded}, expected {}",
                            want.to_lowercase()
                        ));
                    }
                }
                if check.contains.is_some() || check.regex.is_some() {
                    match content {
                        None => f.unproven.push(format!(
                            "{path} is larger than {CAP} bytes: its content was not kept, so it cannot be searched as evidence"
                        )),
                        Some(c) => {
                            if let Some(n) = &check.contains {
                                f.contains(&path, c, n, false);
                            }
                            if let Some(r) = &check.regex {
                                f.matches(&path, c, r, false);
                            }
                        }
                    }
                }
            }
        }
        Ok("http") => {
            let url = obs["url"].as_str().unwrap_or("?");
            if let Some(e) = obs["error"].as_str() {
                f.failed.push(format!("GET {url} failed: {e}"));
            } else {
                let status = obs["status"].as_u64().unwrap_or(0);
                match check.expect_status {
                    Some(want) if status == want as u64 => {
                        f.ok.push(format!("GET {url} answered {status} as expected"))
                    }
                    Some(want) => f
                        .failed
                        .push(format!("GET {url} answered {status}, expected {want}")),
                    None if (200..300).contains(&status) => {
                        f.ok.push(format!("GET {url} answered {status}"))
                    }
                    None => f.failed.push(format!(
                        "GET {url} answered {status}, expected a 2xx status"
                    )),
                }
                if let Some(n) = &check.body_contains {
                    if let Some(e) = obs["bodyError"].as_str() {
                        f.unproven
                            .push(format!("the body could not be read completely: {e}"));
                    }
                    f.contains("the body", get("body"), n, obs["bodyTruncated"] == true);
                }
                if check.screenshot {
                    match ev.get("screenshot") {
                        Some(png) => match screenshot::png_size(png) {
                            Some((w, h)) => f.ok.push(format!("screenshot taken ({w}x{h})")),
                            None => f.unproven.push("the screenshot is not a PNG".into()),
                        },
                        None => f.unproven.push(format!(
                            "no screenshot: {}",
                            obs["screenshot"]["why"]
                                .as_str()
                                .unwrap_or("none was taken")
                        )),
                    }
                }
            }
        }
        Ok("terminal") => {
            if let Some(e) = obs["error"].as_str() {
                f.unproven.push(e.to_string());
            } else {
                let what = format!("step {}'s pane log", obs["step"]);
                let log = get("terminal");
                let cut = obs["truncated"] == true;
                if let Some(n) = &check.contains {
                    f.contains(&what, log, n, cut);
                }
                if let Some(r) = &check.regex {
                    f.matches(&what, log, r, cut);
                }
                if check.contains.is_none() && check.regex.is_none() {
                    f.ok.push(format!("{what} was kept ({} bytes)", log.len()));
                }
            }
        }
        Ok(other) => f.unproven.push(format!("unknown check type {other}")),
    }
    f.verdict()
}

/// The run's outcome from its claims: every claim proven is the only way to succeed.
pub fn outcome(claims: &[ClaimEntry]) -> (RunStatus, String) {
    if claims.is_empty() {
        return (
            RunStatus::Unverified,
            "the task has no accept checks: nothing proved the work".into(),
        );
    }
    let n = claims.len();
    let proven = claims
        .iter()
        .filter(|c| c.verdict == Verdict::Proven)
        .count();
    let first = |v: Verdict| claims.iter().find(|c| c.verdict == v);
    if let Some(c) = first(Verdict::Failed) {
        (
            RunStatus::Failed,
            format!(
                "{proven} of {n} claims proven; claim {} ({:?}) failed: {}",
                c.index, c.claim, c.reason
            ),
        )
    } else if let Some(c) = first(Verdict::Unproven) {
        (
            RunStatus::Unverified,
            format!(
                "{proven} of {n} claims proven; claim {} ({:?}) is unproven: {}",
                c.index, c.claim, c.reason
            ),
        )
    } else {
        (
            RunStatus::Succeeded,
            format!(
                "all {n} claim{} proven by evidence",
                if n == 1 { "" } else { "s" }
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Check {
        serde_norway::from_str(yaml).unwrap()
    }

    fn ev(obs: Value, extra: &[(&str, &[u8])]) -> EvidenceSet {
        let mut e = EvidenceSet::new();
        e.insert("observed".into(), serde_json::to_vec(&obs).unwrap());
        for (k, v) in extra {
            e.insert(k.to_string(), v.to_vec());
        }
        e
    }

    #[test]
    fn stray_fields_and_bad_regexes_are_refused() {
        let ok = check("claim: c\ncommand: true\nstdout_regex: '^a+$'\n");
        validate(&[ok]).unwrap();
        let e = validate(&[check("claim: c\nfile: x\nexpect_status: 200\n")]).unwrap_err();
        assert!(e.contains("expect_status") && e.contains("file"), "{e}");
        let e = validate(&[check("claim: c\nterminal: '1'\nregex: '('\n")]).unwrap_err();
        assert!(e.contains("regex"), "{e}");
        let e = validate(&[check("claim: c\nfile: x\nsha256: abc\n")]).unwrap_err();
        assert!(e.contains("sha256"), "{e}");
        let e = validate(&[check("claim: c\nhttp: ftp://x/\n")]).unwrap_err();
        assert!(e.contains("http"), "{e}");
    }

    #[test]
    fn command_verdicts_follow_the_evidence() {
        let c = check("claim: c\ncommand: x\nstdout_contains: ok\n");
        let (v, _) = judge(
            &c,
            &ev(
                json!({"exitCode": 0}),
                &[("stdout", b"all ok\n"), ("stderr", b"")],
            ),
        );
        assert_eq!(v, Verdict::Proven);
        let (v, why) = judge(&c, &ev(json!({"exitCode": 0}), &[("stdout", b"nope")]));
        assert_eq!(v, Verdict::Failed);
        assert!(why.contains("does not contain"), "{why}");
        let (v, _) = judge(&c, &ev(json!({"exitCode": 2}), &[("stdout", b"ok")]));
        assert_eq!(v, Verdict::Failed);
        let (v, _) = judge(&c, &ev(json!({"error": "no sh"}), &[]));
        assert_eq!(v, Verdict::Unproven);
        let (v, _) = judge(&c, &EvidenceSet::new());
        assert_eq!(v, Verdict::Unproven);
    }

    #[test]
    fn http_failures_beat_a_missing_screenshot() {
        let c = check("claim: c\nhttp: http://x/\nscreenshot: true\n");
        let (v, why) = judge(
            &c,
            &ev(json!({"url": "http://x/", "error": "refused"}), &[]),
        );
        assert_eq!(v, Verdict::Failed);
        assert!(why.contains("refused"));
        let (v, why) = judge(
            &c,
            &ev(
                json!({"url": "u", "status": 200, "screenshot": {"taken": false, "why": "no chromium"}}),
                &[],
            ),
        );
        assert_eq!(v, Verdict::Unproven);
        assert!(why.contains("no chromium"));
    }

    #[test]
    fn outcome_needs_every_claim() {
        assert_eq!(outcome(&[]).0, RunStatus::Unverified);
    }
}
